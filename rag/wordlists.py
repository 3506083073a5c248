"""Word lists kept as plain data files, read once at import.

A list is a ``.txt`` file inside a package: one entry a line (a word, a phrase, or a
``key value`` pair), with ``#`` lines at the top saying why the list exists. Kept as data so
that extending one is an edit to a list, not to code.
"""

from __future__ import annotations

from importlib import resources

__all__ = ["read_entries", "word_map", "word_set"]


def read_entries(package: str, name: str) -> list[str]:
    """The entries of ``name`` (a path inside ``package``), in order, without comments."""
    text = resources.files(package).joinpath(name).read_text(encoding="utf-8")
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def word_set(package: str, *names: str) -> frozenset[str]:
    """The words of one or more lists, as one set."""
    return frozenset(entry for name in names for entry in read_entries(package, name))


def word_map(package: str, name: str) -> dict[str, str]:
    """A list of ``key value`` pairs as a dict, in file order."""
    pairs: dict[str, str] = {}
    for entry in read_entries(package, name):
        key, value = entry.split()
        pairs[key] = value
    return pairs
