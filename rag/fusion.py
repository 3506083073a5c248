"""Fusing a dense and a BM25 ranking of the same passages into one.

Fusion methods (compared on SQuAD in BENCHMARKS.md): ``weighted`` blends
min-max-normalised scores over the union of candidates, with every candidate
scored by both retrievers; ``rrf`` is reciprocal rank fusion, which only sees
ranks and so cannot tell a near-tie from a landslide. The folder index fuses with
these; a Milvus collection fuses on the server, with its rankers of the same names.
"""

from __future__ import annotations

import numpy as np

from rag.settings import default


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
