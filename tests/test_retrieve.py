"""Fusion logic (unit) and the FAISS / BM25 backends on real data structures."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rag.fusion import rrf, weighted
from rag.index import VectorIndex
from rag.lexical import LexicalIndex


def test_rrf_rewards_agreement() -> None:
    fused = rrf([np.array([1, 2, 3]), np.array([3, 1, 4])], k=60)
    assert max(fused, key=fused.get) == 1
    assert fused[3] > fused[2]
    assert set(fused) == {1, 2, 3, 4}


def test_weighted_blend_uses_scores_not_ranks() -> None:
    ids = np.array([10, 11, 12])
    dense = np.array([0.80, 0.79, 0.10])
    lexical = np.array([1.0, 9.0, 0.0])
    fused = weighted(ids, dense, lexical, dense_weight=0.5)
    assert max(fused, key=fused.get) == 11  # a near-tie on dense, a landslide on BM25
    only_dense = weighted(ids, dense, lexical, dense_weight=1.0)
    assert max(only_dense, key=only_dense.get) == 10


def test_vector_index_filters_and_persists(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(100, 150, dtype=np.int64)
    index = VectorIndex.build(ids, vectors)
    found, scores = index.search(vectors[7], 3)
    assert found[0] == 107 and scores[0] > 0.99
    found, _ = index.search(vectors[7], 3, allowed=np.array([120, 121], dtype=np.int64))
    assert set(found) <= {120, 121}
    index.save(tmp_path / "v.faiss")
    assert not (tmp_path / "v.faiss.tmp").exists()
    again = VectorIndex.load(tmp_path / "v.faiss")
    assert len(again) == 50
    assert np.allclose(again.scores_for(vectors[7], np.array([107])), [1.0], atol=1e-5)


def test_lexical_index_ranks_stems_and_filters(tmp_path: Path) -> None:
    texts = [
        "Microsoft invested $1 billion in OpenAI in 2019.",
        "Amazon is investing up to $4 billion in Anthropic.",
        "The weather in London was rainy.",
    ]
    index = LexicalIndex.build(np.array([5, 6, 7]), texts)
    ids, _ = index.search("How much did Microsoft invest?", 2)
    assert ids[0] == 5  # "invest" matches "invested" through stemming
    ids, _ = index.search("investing", 3, allowed=np.array([6, 7]))
    assert list(ids) == [6]
    index.save(tmp_path / "lex")
    again = LexicalIndex.load(tmp_path / "lex")
    assert list(again.search("rainy London", 1)[0]) == [7]
    assert list(again.search("zzzz unknown words", 3)[0]) == []
