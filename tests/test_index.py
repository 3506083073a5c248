"""The vector index picks exact or IVF search by size, and both behave the same to callers.

Behaviour only (which index, which ids, which scores, recall against exact
search); speed is measured by benchmarks/search.py, never asserted here.
"""

from __future__ import annotations

import json
from pathlib import Path

import bm25s
import numpy as np
import pytest
from conftest import QUESTION, SHARED

from rag import RAG
from rag import index as index_mod
from rag.index import VectorIndex, ivf_lists, ivf_probes
from rag.lexical import LexicalIndex, LexicalScores, tokenize
from rag.stores import published

SQUAD = SHARED / "data" / "squad" / "squad-v1.1-dev-tune.json"


@pytest.fixture(scope="module")
def questions() -> tuple[np.ndarray, np.ndarray]:
    """Real vectors: 2,000 SQuAD questions to index and 100 others to ask, embedded."""
    if not SQUAD.exists():
        pytest.skip("../shared/data/squad is not beside the checkout")
    from rag.embed import Embedder

    data = json.loads(SQUAD.read_text())["data"]
    texts = [q["question"] for a in data for p in a["paragraphs"] for q in p["qas"]]
    vectors = Embedder().embed(texts[::2][:2100], batch_size=64)
    return vectors[:2000], vectors[2000:]


def _ids(n: int) -> np.ndarray:
    """Sparse ids, as a store's passage ids become after removals."""
    return np.arange(n, dtype=np.int64) * 3 + 11


def test_exact_up_to_the_threshold_ivf_above(questions: tuple[np.ndarray, np.ndarray]) -> None:
    vectors, _ = questions
    exact = VectorIndex.build(_ids(500), vectors[:500], exact_max=500)
    assert exact.exact and "IndexFlatIP" in exact.kind
    ivf = VectorIndex.build(_ids(2000), vectors, exact_max=500)
    assert not ivf.exact and len(ivf) == 2000
    lists = ivf_lists(2000)
    assert f"{lists:,} lists, {ivf_probes(lists)} searched" in ivf.kind
    # The default threshold applies when none is given.
    assert VectorIndex.build(_ids(2000), vectors).exact


def test_list_counts_grow_with_the_collection() -> None:
    assert ivf_lists(100_000) == 1024 and ivf_lists(1_000_000) == 4096
    assert ivf_lists(2000) * 39 <= 2000  # k-means gets enough vectors per list
    assert all(1 <= ivf_probes(ivf_lists(n)) <= ivf_lists(n) for n in (1, 100, 10**4, 10**7))


def test_ivf_recall_against_exact_search(questions: tuple[np.ndarray, np.ndarray]) -> None:
    vectors, queries = questions
    ids = _ids(2000)
    exact = VectorIndex.build(ids, vectors)
    ivf = VectorIndex.build(ids, vectors, exact_max=0)
    hits = 0
    for query in queries:
        expected, _ = exact.search(query, 10)
        found, scores = ivf.search(query, 10)
        assert len(found) == 10 and np.all(np.diff(scores) <= 1e-6)
        hits += len(np.intersect1d(found, expected))
    assert hits / (10 * len(queries)) > 0.95


def test_ivf_filters_scores_and_gives_back_vectors(
    questions: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    vectors, queries = questions
    ids = _ids(2000)
    ivf = VectorIndex.build(ids, vectors, exact_max=0)
    # Every id is there once, and the stored vectors come back exactly.
    assert np.array_equal(np.sort(ivf.ids()), ids)
    picked = ids[[5, 17, 1999]]
    assert np.array_equal(ivf.vectors(picked), vectors[[5, 17, 1999]])
    assert np.allclose(ivf.scores_for(queries[0], picked), vectors[[5, 17, 1999]] @ queries[0])
    with pytest.raises(KeyError):
        ivf.vectors(np.array([12], dtype=np.int64))  # not an id of the index
    # A filter returns only allowed ids; a small one is searched in full, so exactly.
    allowed = ids[::50]
    found, scores = ivf.search(queries[0], 5, allowed=allowed)
    expected = allowed[np.argsort(-(vectors[::50] @ queries[0]))[:5]]
    assert np.array_equal(found, expected)
    assert np.allclose(scores, ivf.scores_for(queries[0], found), atol=1e-5)
    found, _ = ivf.search(queries[1], 100, allowed=ids[:1500])
    assert len(found) == 100 and np.isin(found, ids[:1500]).all()
    assert len(ivf.search(queries[1], 5, allowed=np.zeros(0, dtype=np.int64))[0]) == 0
    # It survives a save and a load as the same kind of index.
    ivf.save(tmp_path / "v.faiss")
    again = VectorIndex.load(tmp_path / "v.faiss")
    assert again.kind == ivf.kind
    assert np.array_equal(again.search(queries[2], 10)[0], ivf.search(queries[2], 10)[0])
    assert np.array_equal(again.vectors(picked), vectors[[5, 17, 1999]])


def test_rag_on_an_ivf_index_searches_filters_and_checks(
    tmp_path: Path, articles: Path, bbc_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index_mod, "EXACT_MAX_VECTORS", 10)
    for name in ("004.txt", "005.txt", "006.txt", "007.txt", "008.txt"):
        (articles / "business" / name).write_bytes((bbc_dir / "business" / name).read_bytes())
    folder = tmp_path / "index"
    with RAG(folder, progress=False) as rag:
        rag.ingest(articles)
        assert "IndexIVFFlat" in rag.info().vector_index
        assert rag.search(QUESTION, k=1)[0].paragraph == 10
        hits = rag.search("profits", k=3, source="business/*")
        assert hits and all("/business/" in h.source for h in hits)
        report = rag.check()
        assert report.ok, report.checks
    # A vector missing from the IVF index is found by check, and repaired.
    with RAG(folder, progress=False) as rag:
        derived = published.load_published(folder, rag.store.db)
        assert derived is not None and not derived.vectors.exact
        ids = np.sort(derived.vectors.ids())
        short = VectorIndex.build(ids[1:], derived.vectors.vectors(ids[1:]), exact_max=0)
        short.save(published.derived_folder(folder, derived.generation) / published.VECTORS_FILE)
        failed = {c.name: c.detail for c in rag.check().checks if not c.ok}
        assert "1 passage missing" in failed["vectors"]
        assert rag.check(repair=True).ok


def test_bm25_scores_match_bm25s_and_are_read_twice(tmp_path: Path) -> None:
    texts = [
        "Microsoft invested 10 billion dollars in OpenAI.",
        "Investors cheered the investment; the bank invests too.",
        "Rain fell on the city all week.",
        "The bank reported record profits for the year.",
    ]
    ids = np.array([4, 9, 12, 30], dtype=np.int64)
    index = LexicalIndex.build(ids, texts)
    query = "bank investment bank profits"
    tokens = [t for t in tokenize([query])[0] if t in index.retriever.vocab_dict]
    assert isinstance(index.retriever, bm25s.BM25)
    expected = index.retriever.get_scores(tokens)
    scores = index.scores(query)
    assert np.array_equal(scores.values, expected)
    top_ids, top_scores = scores.top(2)
    assert list(top_ids) == [30, 9] and np.all(np.diff(top_scores) <= 0)
    assert list(scores.top(5, allowed=np.array([9, 12, 99]))[0]) == [9]  # 12 scores 0
    assert np.allclose(scores.of(np.array([12, 30, 99])), [0.0, expected[3], 0.0])
    # The same through the one-shot methods, and after a save and load.
    index.save(tmp_path / "lex")
    again = LexicalIndex.load(tmp_path / "lex")
    assert np.array_equal(again.search(query, 2)[0], top_ids)
    assert np.allclose(again.scores_for(query, np.array([9])), [expected[1]])


def test_bm25_top_k_from_the_rarest_words_equals_ranking_every_row() -> None:
    if not SQUAD.exists():
        pytest.skip("../shared/data/squad is not beside the checkout")
    data = json.loads(SQUAD.read_text())["data"]
    texts = [p["context"] for a in data for p in a["paragraphs"]][:400]
    questions = [q["question"] for a in data for p in a["paragraphs"] for q in p["qas"]][:60]
    index = LexicalIndex.build(_ids(len(texts)), texts)
    for question in questions:
        scores = index.scores(question)
        every_row = LexicalScores(index, scores.values)  # no tokens: ranks all scored rows
        for k in (1, 10, 100):
            found, found_scores = scores.top(k)
            expected, expected_scores = every_row.top(k)
            assert np.array_equal(found, expected) and np.array_equal(found_scores, expected_scores)
