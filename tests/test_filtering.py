"""Filters read from memory (rag.filtering) give the store's answer, and a filtered search
gives what an exact search among the allowed passages gives, also after the store changed."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import QUESTION

from rag import RAG
from rag import index as index_mod
from rag.filtering import ArticleTable, select
from rag.fusion import weighted
from rag.index import VectorIndex
from rag.lexical import LexicalIndex
from rag.retrieve import Retriever, SearchOptions
from rag.store import Store
from rag.stores import published
from rag.stores.base import StoredFile, document_hash, text_hash
from rag.stores.folder import FolderSearch
from rag.stores.published import ARTICLES_FILE, Derived, build_derived, derived_folder
from rag.types import Document, Filters, Paragraph, Passage

DIMENSION = 16
WORDS = (
    "market",
    "shares",
    "profit",
    "bank",
    "rate",
    "election",
    "vote",
    "minister",
    "match",
    "goal",
    "player",
    "season",
    "phone",
    "software",
    "chip",
    "court",
    "ruling",
    "storm",
    "rain",
    "record",
    "price",
    "oil",
    "growth",
    "budget",
    "tax",
    "film",
    "award",
)
SECTIONS = ("business", "tech", "sport", "politics", "économie")
# Publication dates as parsers leave them, and some no parser would: the store compares the
# first ten characters as text, and memory must agree on every one.
DATES = (
    "2023-09-25T09:55:00-04:00",
    "2005-01-02",
    None,
    "",
    "2020",
    "2020-13-45",
    "2021-06-30",
    "1999-12-31 23:59",
    "２０２０-01-01",
    "2021-06-30T00:00:00Z",
)
FILTERS = [
    Filters(source="business/*"),
    Filters(source="*/tech/*"),
    Filters(source="tech/0?.txt"),
    Filters(source="[bs]*/*"),
    Filters(source="/news/sport/01.txt"),
    Filters(source="politics/1*"),
    Filters(source="économie/*"),
    Filters(source="*mie/0?.txt"),
    Filters(source="s*t/*"),
    Filters(source="ch/0"),
    Filters(source="*1.txt"),
    Filters(since="2020-01-01"),
    Filters(until="2005-01-02"),
    Filters(since="2005-01-02", until="2021-06-30"),
    Filters(source="business/*", since="2000-01-01"),
    Filters(source="*/sport/*", until="2021-06-30"),
    Filters(source="nothing/*"),
    Filters(since="2030-01-01"),
]


def _text(rng: np.random.Generator, words: int) -> str:
    return " ".join(rng.choice(WORDS, size=words)) + "."


def _document(number: int, rng: np.random.Generator, section: str | None = None) -> Document:
    section = section or SECTIONS[number % len(SECTIONS)]
    source = f"/news/{section}/{number:02d}.txt"
    paragraphs = [
        Paragraph(i, _text(rng, int(rng.integers(4, 12))), 0, 1)
        for i in range(1, int(rng.integers(1, 4)) + 1)
    ]
    return Document(
        source=source,
        path=source,
        title=_text(rng, 2),
        paragraphs=paragraphs,
        published=DATES[number % len(DATES)],
    )


def _write(store: Store, doc: Document, rng: np.random.Generator) -> None:
    """Store ``doc`` with a random vector per passage; a paragraph of more than six words
    is two passages, as a long paragraph is."""
    pieces = []
    for paragraph in doc.paragraphs:
        words = paragraph.text.split()
        pieces.append([paragraph.text] if len(words) <= 6 else [" ".join(words[:6]), *words[6:7]])
    with store.transaction():
        hashes = sorted({text_hash(p) for parts in pieces for p in parts})
        missing = sorted(store.missing_embeddings(hashes))
        vectors = rng.normal(size=(len(missing), DIMENSION)).astype(np.float32)
        store.put_embeddings(missing, vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
        store.write_article(doc, document_hash(doc), pieces)
        store.put_file(StoredFile(doc.path, "h", 1, "text"))
        store.bump_generation()


@pytest.fixture
def collection(tmp_path: Path) -> tuple[Path, Store, Derived]:
    """Forty articles in four sections with every kind of date, indexed."""
    rng = np.random.default_rng(7)
    store = Store(tmp_path / "index" / "rag.sqlite")
    for number in range(40):
        _write(store, _document(number, rng), rng)
    return tmp_path / "index", store, build_derived(tmp_path / "index", store, DIMENSION)


def _store_answer(store: Store, filters: Filters) -> np.ndarray:
    return np.sort(
        store.filtered_passage_ids(
            filters.source,
            filters.since.isoformat() if filters.since else None,
            filters.until.isoformat() if filters.until else None,
        )
    )


def _query_vector(query: str) -> np.ndarray:
    seed = int(text_hash(query)[:8], 16)
    vector = np.random.default_rng(seed).normal(size=DIMENSION).astype(np.float32)
    return vector / np.linalg.norm(vector)


def _retriever(store: Store, derived: Derived, memory: bool = True) -> Retriever:
    return Retriever(
        FolderSearch(store, derived.vectors, derived.lexical, derived.articles if memory else None),
        _query_vector,
    )


def exact_search(
    store: Store, derived: Derived, query: str, options: SearchOptions, filters: Filters
) -> list[tuple[int | None, float]]:
    """(paragraph id, score) of the top paragraphs, from scratch: the store's allowed
    passages, every one of their vectors and BM25 scores, weighted fusion, then the
    folding into paragraphs that search does."""
    allowed = _store_answer(store, filters)
    ids, vectors = store.passage_vectors(DIMENSION)
    vectors = vectors[np.isin(ids, allowed)]
    ids = ids[np.isin(ids, allowed)]
    vector = _query_vector(query)
    dense = vectors @ vector
    n = options.candidates
    dense_top = ids[np.lexsort((ids, -dense))][:n]
    bm25 = derived.lexical.scores(query).values[derived.lexical.rows(ids)]
    positive = bm25 > 0
    lexical_top = ids[positive][np.lexsort((ids[positive], -bm25[positive]))][:n]
    union = np.unique(np.concatenate([dense_top, lexical_top]))
    at = np.searchsorted(ids, union)
    fused = weighted(union, dense[at], bm25[at], options.dense_weight)
    paragraph_of = store.passage_paragraphs(list(fused))
    best: dict[int, float] = {}
    for pid, score in fused.items():
        best[paragraph_of[pid]] = max(best.get(paragraph_of[pid], -np.inf), score)
    ranked = sorted(best, key=lambda p: (-best[p], p))
    rows = store.paragraphs(ranked)
    results: list[tuple[int | None, float]] = []
    seen: set[str] = set()
    for paragraph in ranked:
        if rows[paragraph].text not in seen and len(results) < options.k:
            seen.add(rows[paragraph].text)
            results.append((paragraph, round(best[paragraph], 6)))
    return results


def _found(passages: list[Passage]) -> list[tuple[int | None, float]]:
    return [(p.paragraph_id, p.score) for p in passages]


QUERIES = ["market shares profit", "election vote", "storm rain record", "chip", "goal"]


def test_filters_from_memory_give_the_stores_answer(
    collection: tuple[Path, Store, Derived],
) -> None:
    _, store, derived = collection
    assert derived.articles is not None
    for filters in FILTERS:
        # The in-memory path answers (it gives up only when the store has moved on).
        assert derived.articles.articles(filters, store) is not None
        selection = select(filters, store, derived.lexical, derived.articles)
        expected = _store_answer(store, filters)
        assert np.array_equal(np.sort(selection.ids), expected), filters
        assert np.array_equal(derived.lexical.ids[selection.rows], selection.ids)
    assert len(select(FILTERS[0], store, derived.lexical, derived.articles).ids) > 0
    assert len(select(Filters(source="nothing/*"), store, derived.lexical, None).ids) == 0


def test_filtered_search_equals_an_exact_search(collection: tuple[Path, Store, Derived]) -> None:
    _, store, derived = collection
    options = SearchOptions(k=5, candidates=6)
    # The same with an IVF index: a filter this narrow is searched exactly among its vectors.
    ids, vectors = store.passage_vectors(DIMENSION)
    ivf = Derived(
        VectorIndex.build(ids, vectors, exact_max=0), derived.lexical, 0, derived.articles
    )
    assert not ivf.vectors.exact
    compared = 0
    for filters in FILTERS:
        for query in QUERIES:
            expected = exact_search(store, derived, query, options, filters)
            for index in (derived, ivf):
                assert _found(_retriever(store, index).search(query, options, filters)) == expected
            assert _found(_retriever(store, derived, False).search(query, options, filters)) == (
                expected
            )
            compared += bool(expected)
            for fusion in ("rrf", "dense", "lexical"):
                other = SearchOptions(k=5, candidates=6, fusion=fusion)
                assert _retriever(store, derived).search(query, other, filters) == (
                    _retriever(store, derived, False).search(query, other, filters)
                )
    assert compared > 30


def test_an_article_written_or_removed_since_the_table(
    collection: tuple[Path, Store, Derived],
) -> None:
    """The table describes the generation the indexes were built from; once the store has
    moved on (another process ingesting), the store answers, and a rebuild catches up."""
    folder, store, derived = collection
    retriever = _retriever(store, derived)
    business = Filters(source="business/*")
    options = SearchOptions(k=5, candidates=6)
    before = retriever.search("market shares profit", options, business)  # the glob is cached
    assert before
    removed = before[0].source
    rng = np.random.default_rng(3)
    _write(store, _document(90, rng, "business"), rng)
    with store.transaction():
        store.delete_article(removed)
        store.bump_generation()
    assert derived.articles is not None
    for filters in (business, Filters(since="2000-01-01")):
        assert derived.articles.articles(filters, store) is None  # stale: not used
        selection = select(filters, store, derived.lexical, derived.articles)
        assert np.array_equal(np.sort(selection.ids), _store_answer(store, filters))
    after = retriever.search("market shares profit", options, business)
    assert all(p.source != removed for p in after)
    assert _found(after) == _found(
        _retriever(store, derived, False).search("market shares profit", options, business)
    )
    rebuilt = build_derived(folder, store, DIMENSION)
    assert rebuilt.articles is not None and rebuilt.articles.generation == store.generation
    for filters in FILTERS:
        assert rebuilt.articles.articles(filters, store) is not None
        selection = select(filters, store, rebuilt.lexical, rebuilt.articles)
        assert np.array_equal(np.sort(selection.ids), _store_answer(store, filters))
    found = _retriever(store, rebuilt).search("market shares profit", options, business)
    assert found == _retriever(store, rebuilt, False).search(
        "market shares profit", options, business
    )
    assert "/news/business/90.txt" in {
        p.source
        for p in _retriever(store, rebuilt).search(
            "market shares profit", SearchOptions(k=50, candidates=50), business
        )
    }


def test_a_missing_or_unreadable_table_leaves_filters_to_the_store(
    collection: tuple[Path, Store, Derived],
) -> None:
    folder, store, derived = collection
    path = derived_folder(folder, derived.generation) / ARTICLES_FILE
    assert path.exists()
    options = SearchOptions(k=5, candidates=6)
    expected = _found(_retriever(store, derived).search("goal", options, FILTERS[1]))
    for damage in ("remove", "garbage", "other passages"):
        if damage == "remove":
            path.unlink()
        elif damage == "garbage":
            path.write_bytes(b"not a table")
        else:
            assert derived.articles is not None
            table = derived.articles
            ArticleTable(
                0,
                table.article_row[1:],
                table.article_ids,
                table.published,
                table.dated,
                table.sources,
                table.starts,
            ).save(path)
        loaded = published.load_published(folder, store)
        assert loaded is not None and loaded.articles is None
        assert _found(_retriever(store, loaded).search("goal", options, FILTERS[1])) == expected


def test_glob_answers_are_kept_for_a_few_patterns(
    collection: tuple[Path, Store, Derived], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, store, derived = collection
    table = derived.articles
    assert table is not None
    asked: list[str | None] = []
    real = store.filtered_article_ids

    def counting(source: str | None = None, **_: object) -> np.ndarray:
        asked.append(source)
        return real(source=source)

    monkeypatch.setattr(store, "filtered_article_ids", counting)
    monkeypatch.setattr("rag.filtering.GLOB_CACHE", 2)
    for pattern in ("business/*", "tech/*", "business/*", "sport/*", "tech/*"):
        table.articles(Filters(source=pattern), store)
    # tech/* was dropped for sport/* (business/* had been used since).
    assert asked == ["business/*", "tech/*", "sport/*", "tech/*"]


def test_lexical_mask_gives_the_same_top_as_ids() -> None:
    rng = np.random.default_rng(1)
    texts = [_text(rng, int(rng.integers(3, 10))) for _ in range(300)]
    ids = np.arange(300, dtype=np.int64) * 2 + 5
    index = LexicalIndex.build(ids, texts)
    for query in QUERIES:
        scores = index.scores(query)
        for share in (0.0, 0.05, 0.5, 1.0):
            mask = rng.random(300) < share
            for k in (1, 10, 400):
                by_ids = scores.top(k, ids[mask])
                by_mask = scores.top(k, mask=mask)
                assert np.array_equal(by_ids[0], by_mask[0])
                assert np.array_equal(by_ids[1], by_mask[1])


def test_a_narrow_filter_is_searched_exactly_on_an_ivf_index(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(4000, DIMENSION)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(4000, dtype=np.int64) * 3 + 1
    index = VectorIndex.build(ids, vectors, exact_max=0)
    assert not index.exact
    exact = VectorIndex.build(ids, vectors)
    for n in (1, 20, 60):
        allowed = np.sort(rng.choice(ids, n, replace=False))
        for query in vectors[:20]:
            found = index.search(query, 10, allowed)
            assert np.array_equal(found[0], exact.search(query, 10, allowed)[0])
            # An id the index does not hold is skipped, as FAISS's selector skips it.
            with_unknown = index.search(query, 10, np.append(allowed, 10**9))
            assert np.array_equal(with_unknown[0], found[0])
    # Exactly what the IVF search visiting every list gives (the way taken without it).
    allowed = np.sort(rng.choice(ids, 40, replace=False))
    narrow = [index.search(q, 10, allowed) for q in vectors[:20]]
    monkeypatch.setattr(index_mod, "EXACT_AMONG_MAX", 0)
    for query, (found_ids, found_scores) in zip(vectors[:20], narrow, strict=True):
        scanned_ids, scanned_scores = index.search(query, 10, allowed)
        assert np.array_equal(found_ids, scanned_ids)
        assert np.allclose(found_scores, scanned_scores, atol=1e-6)


def test_filters_follow_ingests_and_removals_of_another_process(
    tmp_path: Path, articles: Path
) -> None:
    """A reader keeps its indexes (and their table) until another process publishes new ones;
    then its filtered searches see the new articles and no longer the removed ones."""
    folder = tmp_path / "index"
    reader = RAG(folder, progress=False)
    reader.ingest(articles)
    assert reader.store.current().articles is not None
    business = reader.search(QUESTION, k=10, source="business/*")
    assert business and all("/business/" in p.source for p in business)
    extra = tmp_path / "more" / "business"
    extra.mkdir(parents=True)
    shutil.copy(articles / "business" / "001.txt", extra / "101.txt")
    (extra / "102.txt").write_text("Microsoft buys OpenAI shares\n\nMicrosoft invested again.\n")
    writer = RAG(folder, progress=False)
    writer.ingest(tmp_path / "more")
    found = {p.source for p in reader.search(QUESTION, k=10, source="business/1*")}
    assert found == {str((extra / "101.txt").resolve()), str((extra / "102.txt").resolve())}
    writer.remove(extra / "102.txt")
    found = {p.source for p in reader.search(QUESTION, k=10, source="business/1*")}
    assert found == {str((extra / "101.txt").resolve())}
    dated = reader.search(QUESTION, k=10, since="2023-01-01", until="2023-12-31")
    assert dated and all(p.published and p.published.startswith("2023") for p in dated)
    assert reader.search(QUESTION, k=10, source="business/1*", since="2023-01-01") == []


def test_a_new_glob_with_rare_text_is_matched_among_the_sources_holding_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store still decides every match; memory only narrows which articles it reads,
    which must never leave out one that matches."""
    store = Store(tmp_path / "index" / "rag.sqlite")
    rng = np.random.default_rng(5)
    sources = [
        "/a/news/news/1.txt",
        "/a/newsnews/2.txt",
        "/b/ünïcode/ß.txt",
        "/b/ünïcode/ßß.txt",
        "/c/x.jsonl#id-1",
        "/c/x.jsonl#id-12",
        "/c/x.jsonl#[odd]*id",
        "/d/tech/01.txt",
        "/d/tech/10.txt",
        *(f"/e/filler/{n:03d}.txt" for n in range(200)),
    ]
    for number, source in enumerate(sources):
        doc = _document(number, rng)
        doc.source = doc.path = source
        _write(store, doc, rng)
    derived = build_derived(tmp_path / "index", store, DIMENSION)
    table = derived.articles
    assert table is not None
    narrowed: list[int | None] = []
    real = store.filtered_article_ids

    def recording(source: str | None = None, among: np.ndarray | None = None) -> np.ndarray:
        narrowed.append(None if among is None else len(among))
        return real(source=source, among=among)

    monkeypatch.setattr(store, "filtered_article_ids", recording)
    patterns = [
        "news/*",
        "*news/news*",
        "ünïcode/ß*",
        "*/ß.txt",
        "x.jsonl#id-1*",
        "x.jsonl#id-1",
        "*#[[]odd]*",
        "x.jsonl#[[]odd][*]id",
        "tech/?1.txt",
        "*/tech/1*",
        "filler/1*",
        "*.txt",
        "x*",
        "/d/tech/*",
        "nowhere/*",
    ]
    for pattern in patterns:
        chosen = table.articles(Filters(source=pattern), store)
        assert chosen is not None
        expected = real(source=pattern)
        assert np.array_equal(np.sort(table.article_ids[chosen]), np.sort(expected)), pattern
    among = dict(zip(patterns, narrowed, strict=True))
    # Text in too many sources, or too short, narrows nothing: the store reads them all.
    assert [p for p, n in among.items() if n is None] == ["*#[[]odd]*", "filler/1*", "*.txt", "x*"]
    assert among["news/*"] == 2 and among["x.jsonl#id-1"] == 2 and among["nowhere/*"] == 0
