"""Hybrid retrieval: dense and BM25 candidates, fused, folded into paragraphs.

Both retrievers rank passages (a long paragraph is several passages); the
fused ranking is folded into paragraphs, each scored by its best passage,
because the paragraph is what a user reads and cites.

Fusion methods (compared on SQuAD in BENCHMARKS.md): ``weighted`` blends
min-max-normalised scores over the union of candidates, with every candidate
scored by both retrievers; ``rrf`` is reciprocal rank fusion, which only sees
ranks and so cannot tell a near-tie from a landslide.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rag.filtering import ArticleTable, Selection, select
from rag.index import VectorIndex
from rag.lexical import LexicalIndex
from rag.settings import FusionMethod, Settings, default
from rag.store import Store
from rag.types import Filters, Passage


@dataclass(frozen=True)
class SearchOptions:
    """How one search ranks: the retrieval settings of the same names."""

    k: int = default("k")
    fusion: FusionMethod = default("fusion")
    dense_weight: float = default("dense_weight")
    rrf_k: int = default("rrf_k")
    candidates: int = default("candidates")

    @classmethod
    def of(cls, settings: Settings) -> SearchOptions:
        # Fusion needs at least k candidates from each side to return k paragraphs.
        return cls(
            k=settings.k,
            fusion=settings.fusion,
            dense_weight=settings.dense_weight,
            rrf_k=settings.rrf_k,
            candidates=max(settings.candidates, settings.k),
        )


def rrf(rankings: list[np.ndarray], k: int = default("rrf_k")) -> dict[int, float]:
    """Reciprocal rank fusion: sum of 1 / (k + rank) over the rankings an id appears in."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, pid in enumerate(ranking, start=1):
            fused[int(pid)] = fused.get(int(pid), 0.0) + 1.0 / (k + rank)
    return fused


def _minmax(scores: np.ndarray) -> np.ndarray:
    if len(scores) == 0:
        return scores
    low, high = float(scores.min()), float(scores.max())
    if high - low < 1e-9:
        return np.ones_like(scores) if high > 0 else np.zeros_like(scores)
    return (scores - low) / (high - low)


def weighted(
    ids: np.ndarray, dense: np.ndarray, lexical: np.ndarray, dense_weight: float
) -> dict[int, float]:
    """Convex blend of min-max-normalised dense and BM25 scores of the same candidates."""
    blended = dense_weight * _minmax(dense) + (1.0 - dense_weight) * _minmax(lexical)
    return {int(i): float(s) for i, s in zip(ids, blended, strict=True)}


class Retriever:
    """Finds the paragraphs that best match a question."""

    def __init__(
        self,
        store: Store,
        vectors: VectorIndex,
        lexical: LexicalIndex,
        embed_query: Callable[[str], np.ndarray],
        articles: ArticleTable | None = None,
    ) -> None:
        self.store = store
        self.vectors = vectors
        self.lexical = lexical
        self.embed_query = embed_query
        self.articles = articles

    def passage_scores(
        self, query: str, options: SearchOptions, allowed: Selection | None = None
    ) -> dict[int, float]:
        """Fused score of each candidate passage id."""
        n = options.candidates
        ids_in = None if allowed is None else allowed.ids
        mask = None if allowed is None else allowed.rows
        if options.fusion == "lexical":
            ids, scores = self.lexical.scores(query).top(n, mask=mask)
            return {int(i): float(s) for i, s in zip(ids, scores, strict=True)}
        vector = self.embed_query(query)
        dense_ids, dense_scores = self.vectors.search(vector, n, ids_in)
        if options.fusion == "dense":
            return {int(i): float(s) for i, s in zip(dense_ids, dense_scores, strict=True)}
        lexical = self.lexical.scores(query)
        lexical_ids, _ = lexical.top(n, mask=mask)
        if options.fusion == "rrf":
            return rrf([dense_ids, lexical_ids], options.rrf_k)
        ids = np.unique(np.concatenate([dense_ids, lexical_ids]))
        dense_all = self.vectors.scores_for(vector, ids)
        lexical_all = lexical.of(ids)
        return weighted(ids, dense_all, lexical_all, options.dense_weight)

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
        allowed = None
        if filters is not None and filters.active:
            allowed = select(filters, self.store, self.lexical, self.articles)
            if len(allowed.ids) == 0:
                return []  # nothing to rank: not even the question needs embedding
        scores = self.passage_scores(query, options, allowed)
        if not scores:
            return []
        # While another process ingests, the indexes searched are the last published
        # ones, and a passage of an article it has since replaced or removed is no longer
        # in the store: such candidates are skipped, the rest is the index as it was.
        paragraph_of = self.store.passage_paragraphs(list(scores))
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
        rows = self.store.paragraphs(wanted)
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
