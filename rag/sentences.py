"""Sentence boundaries in news prose: the one splitter for passages and for answers.

A boundary is end punctuation (``. ! ? …``, possibly repeated, then any closing quotes or
brackets), whitespace, then something that opens a sentence: a capital, a digit, an opening quote
or bracket, a currency sign or markdown emphasis. Periods that close an abbreviation are not
boundaries; the abbreviations are three word lists in ``rag/data``:

* titles and Latin forms that never end a sentence ("Mr.", "Gen.", "e.g.");
* abbreviations that may end one ("Inc.", "Jan.", dotted forms like "U.S." and initials like
  "J."): a boundary only when a common sentence opener follows ("Amazon Inc. The deal");
* everyday words that are abbreviations only before a number ("No. 10", but "She said no.").

Decimals ("$1.5 billion") and glued forms ("U.S.-based") never split, as no space follows their
period. When unsure it does not split: a missed boundary only makes a passage or a checked sentence
longer. The lines of the text are not special (a paragraph's line breaks are whitespace).

Why not a library: pysbd, sentencex, syntok, blingfire, spaCy's sentencizer and
sentence-splitter (Moses) were tried on the cases of ``tests/test_passages.py`` and
``tests/test_cite.py`` and on the news corpus. Each failed cases this project depends on ("She
said no. Fine.", "based in the U.S. It employs", "Amazon Inc. The deal", "No. 10"), broke quoted
speech of two sentences, or returned text that is not a slice of the input.
"""

from __future__ import annotations

import re

from rag.wordlists import word_set

__all__ = ["sentence_spans", "split_sentences"]

NEVER_FINAL = word_set("rag", "data/abbreviations-titles.txt")
MAY_END = word_set("rag", "data/abbreviations-may-end.txt")
BEFORE_NUMBERS = word_set("rag", "data/abbreviations-before-numbers.txt")
SENTENCE_STARTERS = word_set("rag", "data/sentence-starters.txt")

_END_PUNCT_RE = re.compile(r"[.!?…]+[\"'”’)\]]*")
_DOTTED_ACRONYM_RE = re.compile(r"(?:[A-Za-z]\.){2,}$")
_WORD_BEFORE_RE = re.compile(r"(\S+)$")
_JOINER_RE = re.compile(r"[-‐‑–—/]")
_OPENERS = "\"'“‘([*$€£_"


def _is_sentence_start(ch: str) -> bool:
    return ch.isupper() or ch.isdigit() or ch in _OPENERS


def _boundary_allowed(text: str, punct_start: int, next_text: str) -> bool:
    """Whether the punctuation at ``punct_start`` ends a sentence (abbreviations do not)."""
    if text[punct_start] != ".":
        return True
    before = _WORD_BEFORE_RE.search(text, 0, punct_start)
    if not before:
        return True
    word = before.group(1).lstrip("\"'“‘(*[").lower()
    # "Trinity-St. Paul's": a listed abbreviation may end a hyphenated word ("Jay-Z" is no initial).
    last = _JOINER_RE.split(word)[-1]
    if last in NEVER_FINAL or last in MAY_END or last in BEFORE_NUMBERS:
        word = last
    next_word = next_text.split(maxsplit=1)[0].strip("\"'“‘(*").lower() if next_text else ""
    if word in BEFORE_NUMBERS:
        return not next_word[:1].isdigit()
    if word in NEVER_FINAL:
        return False
    dotted = _DOTTED_ACRONYM_RE.match(before.group(1) + ".") is not None
    initial = len(word) == 1 and word.isalpha()
    if dotted or initial or word in MAY_END:
        return next_word in SENTENCE_STARTERS
    return True


def sentence_spans(text: str, attached: re.Pattern[str] | None = None) -> list[tuple[int, int]]:
    """``(start, end)`` of each sentence of ``text``, without surrounding whitespace.

    Consecutive spans have only whitespace between them, so together they cover all of
    ``text``'s words. ``attached`` matches what belongs to the sentence before it although it
    follows the end punctuation: the citation check passes its markers, so that in
    ``"...in 2019. [1] It added"`` the ``[1]`` stays with 2019.
    """
    spans: list[tuple[int, int]] = []
    start = 0
    end_of_text = len(text.rstrip())
    for punct in _END_PUNCT_RE.finditer(text):
        if punct.start() < start:
            continue
        stop = punct.end()
        trailing = attached.match(text, stop) if attached else None
        if trailing:
            stop = trailing.end()
        if stop >= end_of_text:
            break
        rest = text[stop:]
        stripped = rest.lstrip()
        gap = len(rest) - len(stripped)
        if not stripped or not _is_sentence_start(stripped[0]):
            continue
        if gap == 0 and not trailing:
            continue  # "$1.5", "U.S.-based": no space, no sentence break
        if not _boundary_allowed(text, punct.start(), stripped):
            continue
        spans.append((start, stop))
        start = stop
    spans.append((start, len(text)))
    return [_strip(text, a, b) for a, b in spans if text[a:b].strip()]


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    piece = text[start:end]
    return start + len(piece) - len(piece.lstrip()), end - len(piece) + len(piece.rstrip())


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text`` (see :func:`sentence_spans`), as slices of it."""
    return [text[a:b] for a, b in sentence_spans(text)]
