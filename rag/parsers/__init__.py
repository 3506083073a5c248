"""Read article files into :class:`~rag.types.Document` objects.

One parser per format, each in its own module, chosen by file extension and,
for ``.txt``, by content (scraped articles with ``Author:``/``Body:`` headers
versus plain headline-and-paragraphs text)::

    for path in iter_files(["corpus/"]):
        try:
            documents, failures = read_file(path)
        except UnsupportedFile as why:   # skip it, tell the user str(why)
            ...
        except ValueError as why:        # the file could not be read at all
            ...
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from rag.parsers import html, jsonl, markdown, scraped, text
from rag.parsers.common import decode_bytes
from rag.types import Document, FileFailure

__all__ = [
    "UnreadableFile",
    "UnsupportedFile",
    "iter_files",
    "read_file",
    "supported_suffixes",
]


class UnsupportedFile(Exception):
    """The file is of a kind no parser reads; ``str(e)`` is the reason shown to users.

    Deliberately not a ValueError: callers report these files as skipped, not failed.
    """


class UnreadableFile(ValueError):
    """The file could not be opened or read (permissions, a folder, a vanished file)."""


_SUFFIXES: frozenset[str] = (
    scraped.SUFFIXES | text.SUFFIXES | markdown.SUFFIXES | html.SUFFIXES | jsonl.SUFFIXES
)
# A NUL byte in the first block means an image, archive or other binary under a text name.
_SNIFF_BYTES = 8192


def supported_suffixes() -> set[str]:
    """File extensions (lower case, with the dot) that :func:`read_file` can read."""
    return set(_SUFFIXES)


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def iter_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Yield the files to read: files as given, folders recursively.

    Folder contents come in sorted order (so ingest order, and thus any output, is
    reproducible), with hidden files and folders (names starting with ``.``)
    skipped. A file reached twice (given twice, or also inside a given folder) is
    yielded once. If any path does not exist, :class:`FileNotFoundError` is raised
    before any file is yielded, so a typo does not leave an ingest half done.
    """
    given_paths = [Path(p) for p in paths]
    for path in given_paths:
        if not path.exists():
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
    seen: set[Path] = set()
    for path in given_paths:
        found = _walk(path) if path.is_dir() else [path]
        for file in found:
            key = file.resolve()
            if key not in seen:
                seen.add(key)
                yield file


def _walk(folder: Path) -> list[Path]:
    """The non-hidden files under ``folder``, sorted by their path components."""
    files: list[Path] = []
    for root, dirs, names in os.walk(folder):
        # Pruning in place stops os.walk from descending into .git, .venv and the like.
        dirs[:] = [d for d in dirs if not _is_hidden(d)]
        base = Path(root)
        files.extend(base / name for name in names if not _is_hidden(name))
    return sorted((f for f in files if f.is_file()), key=lambda f: f.parts)


def read_file(path: Path) -> tuple[list[Document], list[FileFailure]]:
    """Read one file into documents, plus per-article failures (JSONL lines only).

    Raises :class:`UnsupportedFile` for a kind no parser reads and :class:`ValueError`
    (:class:`UnreadableFile` for I/O errors) with a clear reason when the file as a
    whole can't be read.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _SUFFIXES:
        kind = f"'{path.suffix}'" if path.suffix else "(no extension)"
        raise UnsupportedFile(f"unsupported file type {kind}")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UnreadableFile(f"cannot read file: {error.strerror or error}") from error
    if b"\x00" in data[:_SNIFF_BYTES] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ValueError(f"binary content in a '{path.suffix}' file")

    if suffix in jsonl.SUFFIXES:
        return jsonl.parse(path, decode_bytes(data))
    if suffix in html.SUFFIXES:
        return [html.parse(path, html.decode(data))], []
    content = decode_bytes(data)
    if suffix in markdown.SUFFIXES:
        return [markdown.parse(path, content)], []
    if scraped.detect(content):
        return [scraped.parse(path, content)], []
    return [text.parse(path, content)], []
