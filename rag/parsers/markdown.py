"""Parser for Markdown articles (``.md``, ``.markdown``), built on markdown-it-py.

The title is the front-matter ``title``, else the first level-1 heading, else the
file name. Paragraphs are the text of paragraph blocks, including those inside
list items and block quotes, with inline markup removed; headings, code blocks and
raw HTML are not article prose and are dropped.
"""

from __future__ import annotations

import re
from pathlib import Path

from markdown_it import MarkdownIt
from markdown_it.token import Token

from rag.parsers.common import (
    build_paragraphs,
    fold_whitespace,
    normalize_date,
    path_text,
    resolved,
    strip_span,
)
from rag.types import Document

NAME = "markdown"
SUFFIXES = frozenset({".md", ".markdown"})

_FRONT_MATTER = re.compile(
    r"\A---[ \t]*\r?\n(?P<body>.*?)(?:\r?\n)?^(?:---|\.\.\.)[ \t]*(?:\r?\n|\Z)",
    re.DOTALL | re.MULTILINE,
)
_KEY_VALUE = re.compile(r"^(?P<key>[A-Za-z_][\w-]*)[ \t]*:[ \t]*(?P<value>.*?)[ \t]*$")
# markdown-it normalises every line break to "\n" before it counts lines.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")

_PARSER = MarkdownIt("commonmark")


def _front_matter(text: str) -> tuple[dict[str, str], int]:
    """Simple ``key: value`` pairs of a leading ``---`` block and where the Markdown starts.

    Only flat scalar keys are read (no YAML library is needed for title/author/date);
    surrounding quotes are removed and keys are lower-cased.
    """
    match = _FRONT_MATTER.match(text)
    if match is None:
        return {}, 0
    values: dict[str, str] = {}
    for line in match["body"].splitlines():
        pair = _KEY_VALUE.match(line)
        if pair is None:
            continue
        value = pair["value"]
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[pair["key"].lower()] = value.strip()
    return values, match.end()


def _inline_text(token: Token) -> str:
    """Plain text of an inline token: markup dropped, link and code text kept, images dropped."""
    parts: list[str] = []
    for child in token.children or []:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        # Images, raw inline HTML and the open/close markers of emphasis and links add no text.
    return fold_whitespace("".join(parts))


def _line_offsets(text: str, start: int) -> list[int]:
    """Offset in ``text`` of each line of ``text[start:]``, plus the end as a final entry."""
    offsets = [start]
    offsets.extend(m.end() for m in _LINE_BREAK.finditer(text, start))
    offsets.append(len(text))
    return offsets


def parse(path: Path, text: str) -> Document:
    """Read one Markdown article; paragraph offsets point into the decoded file ``text``."""
    meta, body_start = _front_matter(text)
    tokens = _PARSER.parse(text[body_start:])
    lines = _line_offsets(text, body_start)

    heading_title: str | None = None
    blocks: list[tuple[int, int, str]] = []
    for index, token in enumerate(tokens):
        if token.type != "inline" or index == 0:
            continue
        opener = tokens[index - 1]
        if opener.type == "heading_open":
            if opener.tag == "h1" and heading_title is None:
                heading_title = _inline_text(token) or None
            continue
        if opener.type != "paragraph_open" or opener.map is None:
            continue
        first, last = opener.map
        start, end = strip_span(text, lines[first], lines[min(last, len(lines) - 1)])
        blocks.append((start, end, _inline_text(token)))

    paragraphs = build_paragraphs(text, blocks)
    if not paragraphs:
        raise ValueError("no paragraphs found")

    published = meta.get("date") or meta.get("published")
    return Document(
        source=resolved(path),
        path=resolved(path),
        title=meta.get("title") or heading_title or path_text(path.stem),
        paragraphs=paragraphs,
        author=meta.get("author") or None,
        publisher=meta.get("publisher") or meta.get("site") or None,
        published=normalize_date(published) if published else None,
        url=meta.get("url") or None,
        format=NAME,
    )
