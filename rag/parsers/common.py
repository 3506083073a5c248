"""Helpers shared by the parsers: decoding, paragraph splitting, datelines and dates.

Paragraphs are the unit of citation, so every parser turns its article body into
:class:`~rag.types.Paragraph` objects through :func:`build_paragraphs`: the same
folding, dateline removal and numbering rules apply whatever the file format.
"""

from __future__ import annotations

import codecs
import os
import re
import warnings
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path

from dateutil import parser as date_parser

from rag.types import Paragraph

__all__ = [
    "block_spans",
    "build_paragraphs",
    "decode_bytes",
    "fold_whitespace",
    "line_spans",
    "normalize_date",
    "path_text",
    "resolved",
    "split_paragraphs",
    "strip_span",
]

# --------------------------------------------------------------------------- decoding


def decode_bytes(data: bytes) -> str:
    """Decode file bytes to text: UTF-8 (BOM stripped), else cp1252, else latin-1.

    News corpora are mostly UTF-8, but older ones hold the odd Windows-1252 file
    (the BBC corpus has one with a raw ``£`` byte). cp1252 is tried before latin-1
    because it maps the 0x80-0x9F range to the curly quotes and dashes such files
    actually mean; latin-1 never fails, so decoding always succeeds.
    """
    # A UTF-16 file is unambiguous only with its BOM; without one it would decode as noise.
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            pass
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def path_text(path: str | os.PathLike[str]) -> str:
    """``path`` as text that SQLite can store and a terminal or JSON can print.

    A Linux file name is bytes, and Python keeps the bytes that are not UTF-8 (an
    old Latin-1 name such as ``caf\xe9.txt``) as lone surrogates, which cannot be
    encoded again: storing or printing them raises. They become ``\\xNN`` escapes
    here, so such a file is still read, stored and named; valid names are unchanged.
    """
    text = os.fspath(path)
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no file system produces: keep it visible
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def resolved(path: Path) -> str:
    """The absolute path used as ``Document.path`` (and as the source of single-article files)."""
    return path_text(path.resolve())


# --------------------------------------------------------------------------- whitespace


def fold_whitespace(text: str) -> str:
    """Collapse every run of whitespace (including no-break spaces) to one space and strip."""
    # str.split() without arguments splits on all Unicode whitespace, NBSP included.
    return " ".join(text.split())


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _lines(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    """Yield ``(line_start, line_end)`` for each line of ``text[start:end]`` (no line break)."""
    pos = start
    for match in _LINE_BREAK.finditer(text, start, end):
        yield pos, match.start()
        pos = match.end()
    if pos < end:
        yield pos, end


def strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    """Shrink ``[start, end)`` so that it neither starts nor ends with whitespace."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def block_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Spans of the blank-line separated blocks of ``text[start:end]``, each stripped.

    A line holding only whitespace counts as blank, since scraped pages are full
    of indented empty lines.
    """
    stop = len(text) if end is None else end
    spans: list[tuple[int, int]] = []
    block_start: int | None = None
    block_end = start
    for line_start, line_end in _lines(text, start, stop):
        if text[line_start:line_end].strip():
            if block_start is None:
                block_start = line_start
            block_end = line_end
        elif block_start is not None:
            spans.append(strip_span(text, block_start, block_end))
            block_start = None
    if block_start is not None:
        spans.append(strip_span(text, block_start, block_end))
    return spans


def line_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Spans of the non-blank lines of ``text[start:end]``, each stripped."""
    stop = len(text) if end is None else end
    return [strip_span(text, a, b) for a, b in _lines(text, start, stop) if text[a:b].strip()]


# --------------------------------------------------------------------------- datelines

# A capitalised word of a place or news source ("New", "YORK", "St.", "Reuters").
_CAP_WORD = r"[A-Z][\w.'’&-]*"
# An all-capitals word of two or more letters ("CNN", "WASHINGTON", "U.S.").
_CAPS_WORD = r"[A-Z][A-Z.'’&-]+(?!\w)"
# The agency in brackets: "(CNN)", "(Reuters)", "(AP)".
_SOURCE = r"\([A-Z][\w .,&'’-]{0,30}\)"
_PLACE = rf"{_CAP_WORD}(?:,?\s+{_CAP_WORD}){{0,5}}"
# For the prefix form the place must end in capitals ("NEW YORK", "Hong Kong CNN") unless a
# bracketed source follows, so that "Amazon — the retailer — said" keeps its first word.
_CAPS_PLACE = rf"(?:{_CAP_WORD},?\s+){{0,4}}{_CAPS_WORD}"

_DATELINE_BLOCK = re.compile(rf"{_PLACE}(?:\s*{_SOURCE})?\s*[-–—]+")
# The article proper then opens like a sentence; "NATO — the alliance said" is no dateline.
_DATELINE_PREFIX = re.compile(
    rf"(?:{_CAPS_PLACE}(?:\s*{_SOURCE})?|{_PLACE}\s*{_SOURCE})\s*[–—]\s*(?=[\"'“‘(]*[A-Z0-9])"
)
_MAX_DATELINE = 80


def _is_dateline(block: str) -> bool:
    """Whether the whole block is a dateline such as ``CNN —`` or ``WASHINGTON (Reuters) -``."""
    return len(block) <= _MAX_DATELINE and _DATELINE_BLOCK.fullmatch(block) is not None


def _dateline_prefix_length(block: str) -> int:
    """Length of a leading ``NEW YORK (CNN) — `` dateline of ``block``, or 0 if it has none.

    Only an em or en dash counts here: a hyphen after a capitalised word is far too
    common in ordinary sentences to be taken for a dateline.
    """
    match = _DATELINE_PREFIX.match(block)
    if match is None or match.end() > _MAX_DATELINE or match.end() >= len(block):
        return 0
    return match.end()


# --------------------------------------------------------------------------- paragraphs


def build_paragraphs(text: str, blocks: Iterable[tuple[int, int, str]]) -> list[Paragraph]:
    """Turn blocks ``(start, end, content)`` of ``text`` into numbered paragraphs.

    ``start``/``end`` is the stripped span of the raw block in ``text`` and ``content``
    its readable text (the raw block itself for plain formats, markup-free text for
    Markdown). Whitespace is folded, empty and dateline-only blocks are dropped, and
    a dateline prefix is cut from the first kept paragraph only: datelines open
    articles, and looking for them further down would just produce false positives.
    When the raw block starts with the cut prefix, ``start`` moves past it so the
    span still matches the text. Numbers are 1-based and consecutive over the kept
    paragraphs, so the same text always gets the same numbers.
    """
    paragraphs: list[Paragraph] = []
    for start, end, content in blocks:
        folded = fold_whitespace(content)
        if not folded or _is_dateline(folded):
            continue
        if not paragraphs and (cut := _dateline_prefix_length(folded)):
            prefix, folded = folded[:cut].strip(), folded[cut:]
            raw = _DATELINE_PREFIX.match(text, start, end)
            if raw is not None and fold_whitespace(raw.group()) == prefix:
                start, end = strip_span(text, raw.end(), end)
        paragraphs.append(Paragraph(len(paragraphs) + 1, folded, start, end))
    return paragraphs


def split_paragraphs(body: str, *, start: int = 0, end: int | None = None) -> list[Paragraph]:
    """Split ``body`` (or its ``[start:end]`` region) into paragraphs at blank lines.

    Offsets are always into ``body`` itself, which lets a parser hand over the whole
    decoded file and a region after its headers, so that offsets point into the file text.
    """
    spans = block_spans(body, start, end)
    return build_paragraphs(body, ((a, b, body[a:b]) for a, b in spans))


# --------------------------------------------------------------------------- dates

_HOUR = 3600
# dateutil knows only UTC/GMT by itself; news sites print US and UK zone abbreviations.
_TZINFOS: dict[str, int] = {
    "UTC": 0,
    "GMT": 0,
    "Z": 0,
    "BST": 1 * _HOUR,
    "CET": 1 * _HOUR,
    "CEST": 2 * _HOUR,
    "EST": -5 * _HOUR,
    "EDT": -4 * _HOUR,
    "CST": -6 * _HOUR,
    "CDT": -5 * _HOUR,
    "MST": -7 * _HOUR,
    "MDT": -6 * _HOUR,
    "PST": -8 * _HOUR,
    "PDT": -7 * _HOUR,
}

_DATE_LABEL = re.compile(
    r"\b(?:last\s+updated|updated|first\s+published|published|posted|modified|date)\b"
    r"(?:\s+on\b)?\s*:?",
    re.IGNORECASE,
)

# Two defaults that differ in every field: a field that comes out different from the
# two parses was not in the text (dateutil silently fills missing fields from the default).
_DEFAULT_A = datetime(2000, 1, 1, 0, 0, 0)
_DEFAULT_B = datetime(2001, 2, 2, 1, 0, 0)


def _parse(text: str, default: datetime, fuzzy: bool) -> datetime:
    with warnings.catch_warnings():
        # An unknown zone name yields a naive time plus a warning; the naive time is what we want.
        warnings.simplefilter("ignore")
        parsed: datetime = date_parser.parse(text, default=default, fuzzy=fuzzy, tzinfos=_TZINFOS)
        return parsed


def normalize_date(text: str) -> str | None:
    """Convert a human date like ``Updated 9:55 AM EDT, Mon September 25, 2023`` to ISO 8601.

    Returns ``2023-09-25T09:55:00-04:00`` when a zone is given, a naive
    ``YYYY-MM-DDTHH:MM:SS`` without one, ``YYYY-MM-DD`` for a date without a time,
    and ``None`` when the text holds no complete date (year, month and day).
    """
    cleaned = fold_whitespace(_DATE_LABEL.sub(" ", text)).strip(" ,;:-–—|")
    if not cleaned:
        return None
    for fuzzy in (False, True):
        try:
            first = _parse(cleaned, _DEFAULT_A, fuzzy)
            second = _parse(cleaned, _DEFAULT_B, fuzzy)
        except (ValueError, OverflowError, TypeError):
            continue
        if (first.year, first.month, first.day) != (second.year, second.month, second.day):
            return None
        if first.hour != second.hour:
            return first.date().isoformat()
        return first.isoformat()
    return None
