"""Split paragraphs into passages short enough for the embedder.

all-MiniLM-L6-v2 reads at most 256 word pieces and silently drops the rest, so a
longer paragraph would be indexed by its beginning only. Such a paragraph is cut
into passages at sentence boundaries (falling back to word, then character,
boundaries for a sentence that is itself too long). Every passage is a slice of
the paragraph and only whitespace lies between consecutive passages, so no text
is lost: for a whitespace-folded paragraph ``" ".join(passages) == text``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

__all__ = ["split_passages", "split_sentences"]


def _word_set(words: str) -> frozenset[str]:
    """The whitespace-separated words of ``words`` (keeps long word lists compact)."""
    return frozenset(words.split())


# Words that end in a period without ending the sentence. Compared case-insensitively,
# without the final period; dotted forms like "U.S" and "e.g" are caught by _DOTTED.
_ABBREVIATIONS = _word_set(
    """
    mr mrs ms mx dr prof sr jr st mt ft gen gov sen rep rev lt col capt cmdr sgt maj adm
    pres supt insp det hon messrs mme mlle
    inc ltd co corp bros plc llc dept univ assn est approx vs etc al cf ca
    jan feb mar apr jun jul aug sep sept oct nov dec
    mon tue tues thu thur thurs fri
    ed eds ave blvd rd hwy
    """
)
# Abbreviations that are also everyday words ("said no."), so they count only before a number.
_NUMBER_ABBREVIATIONS = _word_set("no nos vol fig figs pp para ch art sec op")
# Dotted abbreviations and initials: "U.S", "e.g", "i.e", "a.m", "Ph.D"; also single letters.
_DOTTED = re.compile(r"(?:[A-Za-z]{1,2}\.)+[A-Za-z]{1,2}|[A-Za-z]")

# A sentence ends with . ! ? or … (possibly repeated), then any closing quotes or brackets.
_END = re.compile(r"(?:[.!?]+|…)[\"'”’)\]]*")
# The next sentence must open like one: a capital, a digit or an opening quote/bracket.
_NEXT_START = re.compile(r"\s+(?=[\"'“‘(\[]*[A-Z0-9])")
_WORD_BEFORE = re.compile(r"([\w.]+)$")
_WORD = re.compile(r"\S+")


def _is_abbreviation(text: str, period: int, next_start: int) -> bool:
    """Whether the period at ``text[period]`` closes an abbreviation or initial, not a sentence.

    ``next_start`` is where the following word begins (to tell "No. 10" from "said no.").
    """
    match = _WORD_BEFORE.search(text, 0, period)
    if match is None:
        return False
    word = match.group(1).rstrip(".").lower()
    if word in _NUMBER_ABBREVIATIONS:
        return text[next_start : next_start + 1].isdigit()
    return word in _ABBREVIATIONS or _DOTTED.fullmatch(word) is not None


def _sentence_spans(text: str) -> list[tuple[int, int]]:
    """Stripped ``(start, end)`` spans of the sentences of ``text``, covering all its words."""
    spans: list[tuple[int, int]] = []
    start = len(text) - len(text.lstrip())
    for match in _END.finditer(text):
        end = match.end()
        gap = _NEXT_START.match(text, end)
        if gap is None:
            continue
        # Only a lone period can close an abbreviation ("Mr." yes, "wow!" or "so..." no).
        lone_period = match.group().startswith(".") and not match.group().startswith("..")
        if lone_period and _is_abbreviation(text, match.start(), gap.end()):
            continue
        if end > start:
            spans.append((start, end))
        start = gap.end()
    end = len(text.rstrip())
    if end > start:
        spans.append((start, end))
    return spans


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into sentences with regular expressions (no model or data download).

    A boundary is end punctuation, optional closing quotes, whitespace, then a
    capital, digit or opening quote. Periods of common abbreviations (Mr., Dr.,
    Inc., Jan., No.), dotted forms (U.S., e.g.) and initials (J. K.) are not
    boundaries; decimals like $1.5bn never are, as no space follows their period.
    When unsure it does not split: a missed boundary only makes a passage longer.
    """
    return [text[a:b] for a, b in _sentence_spans(text)]


def _pack(
    units: Sequence[tuple[int, int]],
    fits: Callable[[int, int], bool],
    too_long: Callable[[int, int], list[tuple[int, int]]],
) -> list[tuple[int, int]]:
    """Greedily join consecutive unit spans into the longest pieces that ``fits`` accepts.

    A unit that does not fit on its own is handed to ``too_long`` to be cut finer.
    The longest fitting run is found by binary search, which assumes (as holds for
    tokenizers) that adding text never lowers the token count.
    """
    pieces: list[tuple[int, int]] = []
    i = 0
    while i < len(units):
        start = units[i][0]
        if not fits(start, units[i][1]):
            pieces.extend(too_long(*units[i]))
            i += 1
            continue
        lo, hi = i, len(units) - 1  # units[i..lo] fit; find the largest such lo
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if fits(start, units[mid][1]):
                lo = mid
            else:
                hi = mid - 1
        pieces.append((start, units[lo][1]))
        i = lo + 1
    return pieces


def split_passages(
    text: str, count_tokens: Callable[[str], int], max_tokens: int = 256
) -> list[str]:
    """Cut ``text`` into passages of at most ``max_tokens`` tokens each, by ``count_tokens``.

    Returns ``[text]`` when it fits. Otherwise whole sentences are packed greedily;
    a sentence longer than the limit is cut at word boundaries (and a single
    overlong "word", such as a huge URL, at characters). ``count_tokens`` should be
    the embedder's word-piece count including its special tokens. Deterministic.
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be at least 1")
    if count_tokens(text) <= max_tokens:
        return [text]

    def fits(start: int, end: int) -> bool:
        return count_tokens(text[start:end]) <= max_tokens

    def by_characters(start: int, end: int) -> list[tuple[int, int]]:
        chars = [(k, k + 1) for k in range(start, end)]
        # If not even one character fits, the limit is below the special-token overhead;
        # emit characters one by one rather than loop forever or drop text.
        return _pack(chars, fits, lambda a, b: [(a, b)])

    def by_words(start: int, end: int) -> list[tuple[int, int]]:
        words = [m.span() for m in _WORD.finditer(text, start, end)]
        return _pack(words, fits, by_characters)

    sentences = _sentence_spans(text)
    return [text[a:b] for a, b in _pack(sentences, fits, by_words)]
