"""Retrieval: a store's ranked passages folded into the paragraphs a user reads.

The store ranks passages (a long paragraph is several), densely, lexically, or both
fused (``rag.stores.base.SearchIndex``); the ranking is folded into paragraphs, each
scored by its best passage, because the paragraph is what a user reads and cites.
Whichever store it is, the folding and the removal of near-copies happen here.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from rag.stores.base import Hits, SearchIndex, SearchOptions
from rag.types import Filters, Passage

__all__ = ["Retriever", "SearchOptions"]


class Retriever:
    """Finds the paragraphs that best match a question, in any :class:`SearchIndex`."""

    def __init__(self, index: SearchIndex, embed_query: Callable[[str], np.ndarray]) -> None:
        self.index = index
        self.embed_query = embed_query

    def passage_scores(
        self, query: str, options: SearchOptions, filters: Filters | None = None
    ) -> dict[int, float]:
        """Fused score of each candidate passage id."""
        n = options.candidates
        hits: Hits
        if options.fusion == "lexical":
            hits = self.index.lexical_search(query, n, filters)
        elif options.fusion == "dense":
            hits = self.index.dense_search(self.embed_query(query), n, filters)
        else:
            hits = self.index.hybrid_search(query, self.embed_query(query), options, filters)
        ids, scores = hits
        return {int(i): float(s) for i, s in zip(ids, scores, strict=True)}

    def search(
        self,
        query: str,
        options: SearchOptions,
        filters: Filters | None = None,
    ) -> list[Passage]:
        """The top ``options.k`` paragraphs, best first, each once, among ``filters``' articles.

        Paragraphs with the same text, or nearly (an article stored twice, once with a word
        changed), are shown once, under the better-ranked copy: several copies of one paragraph
        would take the room of the passages that answer other parts of a question.
        """
        if filters is not None and not filters.active:
            filters = None
        if filters is not None and not self.index.allows_any(filters):
            return []  # nothing to rank: not even the question needs embedding
        scores = self.passage_scores(query, options, filters)
        if not scores:
            return []
        # While another process ingests, the indexes searched are the last published
        # ones, and a passage of an article it has since replaced or removed is no longer
        # in the store: such candidates are skipped, the rest is the index as it was.
        paragraph_of = self.index.passage_paragraphs(list(scores))
        best: dict[int, float] = {}
        for pid, score in scores.items():
            paragraph = paragraph_of.get(pid)
            if paragraph is None:
                continue
            if score > best.get(paragraph, -np.inf):
                best[paragraph] = score
        ranked = sorted(best, key=lambda p: (-best[p], p))
        # Fetch a few extra in case duplicates are folded away.
        wanted = ranked[: options.k * 3]
        rows = self.index.paragraphs(wanted)
        results: list[Passage] = []
        seen: list[frozenset[str]] = []
        for paragraph in wanted:
            passage = rows.get(paragraph)
            if passage is None:
                continue
            words = _words(passage.text)
            if any(_near_copy(words, other) for other in seen):
                continue
            seen.append(words)
            passage.score = round(best[paragraph], 6)
            results.append(passage)
            if len(results) == options.k:
                break
        return results


# Paragraphs sharing this share of their words are copies of one another (the BBC corpus holds
# the same story twice, with a word changed): one of them is shown, the better ranked.
NEAR_COPY = 0.8
_WORD_RE = re.compile(r"\w+")


def _words(text: str) -> frozenset[str]:
    return frozenset(_WORD_RE.findall(text.lower()))


def _near_copy(a: frozenset[str], b: frozenset[str]) -> bool:
    """Whether two paragraphs' word sets overlap so much that one is a copy of the other."""
    if not a or not b:
        return a == b
    return len(a & b) / len(a | b) >= NEAR_COPY
