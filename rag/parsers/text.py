"""Parser for plain ``.txt`` articles: a headline line, then paragraphs separated by blank lines.

This is the layout of the BBC News corpus; any text file that is not a scraped
article (see :mod:`rag.parsers.scraped`) is read this way.
"""

from __future__ import annotations

from pathlib import Path

from rag.parsers.common import fold_whitespace, line_spans, resolved, split_paragraphs
from rag.types import Document

NAME = "text"
SUFFIXES = frozenset({".txt"})


def parse(path: Path, text: str) -> Document:
    """Read one plain-text article; paragraph offsets point into the decoded file ``text``."""
    lines = line_spans(text)
    if not lines:
        raise ValueError("empty file")
    title_start, title_end = lines[0]
    paragraphs = split_paragraphs(text, start=title_end)
    if not paragraphs:
        raise ValueError("no text after the title line")
    return Document(
        source=resolved(path),
        path=resolved(path),
        title=fold_whitespace(text[title_start:title_end]),
        paragraphs=paragraphs,
        format=NAME,
    )
