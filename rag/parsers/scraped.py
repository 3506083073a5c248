"""Parser for the scraped-article ``.txt`` format of the sample corpus.

Such a file is a list of headers (``Author:``, ``Place of Publish:``, ``Published on:``,
optional ``Title:``, then ``Body:``); each value may continue on the following
(indented) lines until the next header, and everything after ``Body:`` is the article.
"""

from __future__ import annotations

import re
from pathlib import Path

from rag.parsers.common import (
    fold_whitespace,
    normalize_date,
    path_text,
    resolved,
    split_paragraphs,
)
from rag.types import Document

NAME = "scraped"
SUFFIXES = frozenset({".txt"})

# Headers start at the left margin; continuation lines of a value are indented.
_HEADER = re.compile(
    r"(?P<name>Author|Place of Publish|Published on|Title|URL|Body)[ \t]*:[ \t]*",
    re.IGNORECASE,
)
# "© 2023 Cable News Network. A Warner Bros. Discovery Company…" -> "Cable News Network".
_COPYRIGHT = re.compile(
    r"(?:©|\(c\)|copyright)\s*(?:\d{4}(?:\s*[-–]\s*\d{4})?\s*,?\s*)?(?P<owner>.+?)(?:\.(?:\s|$)|$)",
    re.IGNORECASE,
)
_BY = re.compile(r"^by\s+", re.IGNORECASE)


def detect(text: str) -> bool:
    """Whether ``text`` is a scraped article: it opens with a known header and has a body.

    Requiring ``Body:`` as well keeps a plain article whose headline happens to
    start with "Title:" from being read as this format.
    """
    first = next((line for line in text.splitlines() if line.strip()), "")
    if not _HEADER.match(first.lstrip()):
        return False
    return any(
        (m := _HEADER.match(line)) is not None and m["name"].lower() == "body"
        for line in text.splitlines()
    )


def _headers(text: str) -> tuple[dict[str, str], int]:
    """Header values (folded) by lower-cased name, and the offset where the body starts."""
    values: dict[str, list[str]] = {}
    current: str | None = None
    pos = 0
    for line in text.splitlines(keepends=True):
        match = _HEADER.match(line)
        if match is not None:
            current = match["name"].lower()
            if current == "body":
                return _fold(values), pos + match.end()
            values.setdefault(current, []).append(line[match.end() :])
        elif current is not None:
            values[current].append(line)
        pos += len(line)
    raise ValueError("scraped article has no 'Body:' header")


def _fold(values: dict[str, list[str]]) -> dict[str, str]:
    return {name: fold_whitespace(" ".join(parts)) for name, parts in values.items()}


def publisher_from(text: str) -> str | None:
    """The copyright owner of a ``© 2023 Owner. …`` line, or the text itself if it has none."""
    text = fold_whitespace(text)
    if not text:
        return None
    match = _COPYRIGHT.search(text)
    if match is not None and match["owner"].strip():
        return match["owner"].strip()
    return text


def parse(path: Path, text: str) -> Document:
    """Read one scraped article; its paragraph offsets point into the decoded file ``text``."""
    headers, body_start = _headers(text)
    paragraphs = split_paragraphs(text, start=body_start)
    if not paragraphs:
        raise ValueError("scraped article has an empty body")
    author = _BY.sub("", headers.get("author", "")) or None
    published = headers.get("published on", "")
    return Document(
        source=resolved(path),
        path=resolved(path),
        title=headers.get("title") or path_text(path.stem),
        paragraphs=paragraphs,
        author=author,
        publisher=publisher_from(headers.get("place of publish", "")),
        published=normalize_date(published) if published else None,
        url=headers.get("url") or None,
        format=NAME,
    )
