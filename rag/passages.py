"""Split paragraphs into passages short enough for the embedder.

all-MiniLM-L6-v2 reads at most 256 word pieces and silently drops the rest, so a
longer paragraph would be indexed by its beginning only. Such a paragraph is cut
into passages at sentence boundaries (:mod:`rag.sentences`, falling back to word, then character,
boundaries for a sentence that is itself too long). Every passage is a slice of
the paragraph and only whitespace lies between consecutive passages, so no text
is lost: for a whitespace-folded paragraph ``" ".join(passages) == text``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from rag.sentences import sentence_spans

__all__ = ["split_passages"]

_WORD = re.compile(r"\S+")


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

    sentences = sentence_spans(text)
    return [text[a:b] for a, b in _pack(sentences, fits, by_words)]
