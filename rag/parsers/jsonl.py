"""Parser for JSON Lines collections (``.jsonl``, ``.ndjson``): one article per line.

Each line is an object with ``text`` (or ``body``) and optional ``title``, ``id``,
``url``, ``author``, ``published`` (or ``date``) and ``publisher``. A bad line is
reported as a :class:`~rag.types.FileFailure` (``file.jsonl:LINE``) and does not
stop the rest of the file from being read.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from rag.parsers.common import (
    fold_whitespace,
    normalize_date,
    path_text,
    resolved,
    split_paragraphs,
)
from rag.types import Document, FileFailure

NAME = "jsonl"
SUFFIXES = frozenset({".jsonl", ".ndjson"})


# JSON may spell a lone UTF-16 surrogate ("\ud800"); json.loads keeps it, and such a
# string cannot be encoded to UTF-8, so hashing or storing it would fail.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _clean(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD (the replacement character)."""
    return _LONE_SURROGATE.sub("\ufffd", text)


def _string(value: Any) -> str | None:
    """A metadata value as folded text: lists (several authors) are joined with commas."""
    if value is None or isinstance(value, dict):
        return None
    if isinstance(value, list):
        text = ", ".join(fold_whitespace(str(v)) for v in value if v is not None)
    else:
        text = fold_whitespace(str(value))
    return _clean(text) or None


def _article(path: Path, line: str, number: int, seen: dict[str, int]) -> Document:
    """Read one line into a document; raises ValueError with the reason when it can't."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"invalid JSON: {error.msg} (column {error.colno})") from None
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    text = record.get("text")
    if text is None:
        text = record.get("body")
    if text is None:
        raise ValueError("missing 'text' (or 'body')")
    if not isinstance(text, str):
        raise ValueError(f"'text' must be a string, got {type(text).__name__}")
    paragraphs = split_paragraphs(_clean(text))
    if not paragraphs:
        raise ValueError("'text' is empty")

    ident = _string(record.get("id")) or str(number)
    # The id names the article in the store; a repeat would silently overwrite the first one.
    if ident in seen:
        raise ValueError(f"duplicate id {ident!r} (first on line {seen[ident]})")
    seen[ident] = number

    published = _string(record.get("published") or record.get("date"))
    return Document(
        source=f"{resolved(path)}#{ident}",
        path=resolved(path),
        title=_string(record.get("title")) or f"{path_text(path.stem)} #{ident}",
        paragraphs=paragraphs,
        author=_string(record.get("author")),
        publisher=_string(record.get("publisher")),
        published=normalize_date(published) if published else None,
        url=_string(record.get("url")),
        format=NAME,
    )


def parse(path: Path, text: str) -> tuple[list[Document], list[FileFailure]]:
    """Read every line of a JSON Lines file; blank lines are skipped.

    Paragraph offsets point into each line's ``text`` value.
    """
    documents: list[Document] = []
    failures: list[FileFailure] = []
    seen: dict[str, int] = {}
    # split("\n") rather than splitlines(): JSON strings may hold U+2028 and friends raw.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            documents.append(_article(path, line, number, seen))
        except ValueError as error:
            failures.append(FileFailure(f"{resolved(path)}:{number}", str(error)))
    return documents, failures
