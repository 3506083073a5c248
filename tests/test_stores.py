"""One suite for every store: the folder index and a Milvus Lite collection, through RAG.

Ingest, re-ingest of unchanged and changed files, removal, filters, an interrupted ingest,
``rag check``, and search end to end with the real embedder, each fusion ranking the answer
first. The Milvus side uses Milvus Lite in a temporary folder (the ``milvus`` extra); it is
skipped, saying so, where pymilvus or milvus-lite is not installed.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import QUESTION, SAMPLE_NAME
from typer.testing import CliRunner

from rag import RAG, RagError
from rag import ingest as ingest_mod
from rag.cli import app
from rag.errors import NoIndex

TINY = "smollm2-135m"
HAVE_MILVUS = all(importlib.util.find_spec(m) for m in ("pymilvus", "milvus_lite"))
needs_milvus = pytest.mark.skipif(
    not HAVE_MILVUS, reason="pymilvus and milvus-lite are not installed (pip install '.[milvus]')"
)
STORES = ["folder", pytest.param("milvus", marks=needs_milvus)]


def store_settings(kind: str, tmp_path: Path) -> dict[str, Any]:
    """The settings that put an index in ``tmp_path`` with store ``kind``."""
    if kind == "milvus":
        return {"store": "milvus", "milvus_uri": str(tmp_path / "milvus.db")}
    return {"index": tmp_path / "index"}


def cli_options(kind: str, tmp_path: Path) -> list[str]:
    if kind == "milvus":
        return ["--store", "milvus", "--milvus-uri", str(tmp_path / "milvus.db")]
    return ["--index", str(tmp_path / "index")]


@pytest.fixture(params=STORES)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def rag(kind: str, tmp_path: Path) -> RAG:
    return RAG(progress=False, **store_settings(kind, tmp_path))


def test_ingest_and_search_find_the_microsoft_paragraph(rag: RAG, articles: Path) -> None:
    report = rag.ingest(articles)
    assert (report.added, report.updated, report.unchanged) == (4, 0, 0)
    assert report.failed == [] and report.paragraphs > 0 and report.embedded > 0
    passages = rag.search(QUESTION, k=3)
    top = passages[0]
    assert "In 2019, Microsoft invested $1 billion" in top.text
    assert top.source == str((articles / SAMPLE_NAME).resolve())
    assert (top.paragraph, top.author) == (10, "Brian Fung, CNN")
    assert top.published == "2023-09-25T09:55:00-04:00"
    assert len(passages) == 3 and passages[0].score >= passages[1].score >= passages[2].score
    info = rag.info()
    assert (info.articles, info.paragraphs) == (4, report.paragraphs)
    assert info.embedder == "all-MiniLM-L6-v2" and info.embedder_dimension == 384
    # The article behind a hit, whole and in order.
    article = rag.article(top.article_id)
    assert article.source == top.source
    assert [p.number for p in article.paragraphs] == list(range(1, len(article.paragraphs) + 1))
    assert article.paragraphs[9].text == top.text


@pytest.mark.parametrize("fusion", ["weighted", "rrf", "dense", "lexical"])
def test_every_fusion_ranks_the_answer_first(rag: RAG, articles: Path, fusion: str) -> None:
    rag.ingest(articles)
    top = rag.search(QUESTION, k=3, fusion=fusion)
    assert top[0].paragraph == 10 and top[0].source.endswith(SAMPLE_NAME), fusion


def test_hybrid_ranking_is_sane(rag: RAG, articles: Path) -> None:
    """A blend leaning all one way ranks as that side does; a word only BM25 can place
    (a rare name) is found by the blend too; every score of a blend lies in [0, 1]."""
    rag.ingest(articles)
    for question in (QUESTION, "Anthropic Amazon investment", "company profits rose"):
        dense = rag.search(question, k=3, fusion="dense")
        lexical = rag.search(question, k=3, fusion="lexical")
        assert rag.search(question, k=1, dense_weight=1.0)[0].paragraph_id == dense[0].paragraph_id
        all_lexical = rag.search(question, k=1, dense_weight=0.0)
        assert all_lexical[0].paragraph_id == lexical[0].paragraph_id
        blended = rag.search(question, k=5)
        assert all(0.0 <= p.score <= 1.0 + 1e-6 for p in blended)
        assert blended[0].paragraph_id in {dense[0].paragraph_id, lexical[0].paragraph_id}
    assert "Anthropic" in rag.search("Anthropic", k=1)[0].text


def test_reingest_is_incremental(rag: RAG, articles: Path) -> None:
    first = rag.ingest(articles)
    assert first.embedded > 0
    again = rag.ingest(articles)
    assert (again.added, again.updated, again.unchanged, again.embedded) == (0, 0, 4, 0)
    numbers = [p.paragraph for p in rag.search(QUESTION, k=5)]
    # A changed file replaces its old paragraphs, and only the new text is embedded.
    story = articles / "business" / "001.txt"
    story.write_text(story.read_text() + "\n\nA brand new closing paragraph about tea.\n")
    changed = rag.ingest(articles)
    assert (changed.added, changed.updated, changed.unchanged) == (0, 1, 3)
    assert changed.embedded == 1
    hits = rag.search("closing paragraph about tea", k=1)
    assert hits[0].source == str(story.resolve())
    assert [p.paragraph for p in rag.search(QUESTION, k=5)] == numbers
    assert rag.info().paragraphs == first.paragraphs + 1  # the old version's are gone
    assert rag.check().ok


def test_duplicate_text_is_not_embedded_twice(rag: RAG, articles: Path, tmp_path: Path) -> None:
    rag.ingest(articles)
    copy = tmp_path / "copy" / "same-story.txt"
    copy.parent.mkdir()
    shutil.copy(articles / "business" / "002.txt", copy)
    report = rag.ingest(copy)
    assert (report.added, report.embedded) == (1, 0)
    assert {p.source for p in rag.search("same-story", k=20, source="copy/*")} == {
        str(copy.resolve())
    }


def test_remove(rag: RAG, articles: Path) -> None:
    rag.ingest(articles)
    removed = rag.remove(articles / SAMPLE_NAME)
    assert removed == [str((articles / SAMPLE_NAME).resolve())]
    assert rag.info().articles == 3
    assert all("000_" not in p.source for p in rag.search(QUESTION))
    with pytest.raises(RagError, match="No article"):
        rag.remove(articles / SAMPLE_NAME)
    assert rag.ingest(articles).added == 1  # the file record went with it
    assert [s for s in rag.remove(f"{articles}/business/00[12].txt")] == [
        str((articles / "business" / name).resolve()) for name in ("001.txt", "002.txt")
    ]
    assert rag.info().articles == 2 and rag.check().ok


def test_filters(rag: RAG, articles: Path, tmp_path: Path) -> None:
    rag.ingest(articles)
    only_bbc = rag.search(QUESTION, k=5, source="business/*")
    assert only_bbc and all("/business/" in p.source for p in only_bbc)
    one = rag.search(QUESTION, k=5, source="business/00?.txt")
    assert one and all("/business/" in p.source for p in one)
    sets = rag.search(QUESTION, k=5, source="business/00[13].txt")
    assert sets and {Path(p.source).name for p in sets} <= {"001.txt", "003.txt"}
    others = rag.search(QUESTION, k=5, source="business/00[^13].txt", fusion="dense")
    assert others and {Path(p.source).name for p in others} == {"002.txt"}
    assert rag.search(QUESTION, k=5, source="nothing/*") == []
    dated = rag.search(QUESTION, k=5, since="2023-01-01", until="2023-12-31")
    assert dated and all(p.published.startswith("2023") for p in dated)
    assert rag.search(QUESTION, k=5, since="2024-01-01") == []
    assert rag.search(QUESTION, k=5, until="2023-09-24") == []
    feed = tmp_path / "feed.jsonl"
    rows = [
        {"id": f"a{n}", "title": "Rain", "text": f"Rainfall records fell in {year}."}
        | {"published": f"{year}-05-01"}
        for n, year in ((1, 2004), (2, 2024))
    ]
    feed.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rag.ingest(feed)
    feed_only = {"k": 5, "source": "feed.jsonl#*"}
    assert [h.source for h in rag.search("rainfall records", since="2020-01-01", **feed_only)] == [
        f"{feed.resolve()}#a2"
    ]
    assert [h.source for h in rag.search("rainfall records", until="2005-01-01", **feed_only)] == [
        f"{feed.resolve()}#a1"
    ]


def test_an_interrupted_ingest_keeps_its_batches_and_a_rerun_completes_it(
    rag: RAG, articles: Path, monkeypatch: pytest.MonkeyPatch, kind: str, tmp_path: Path
) -> None:
    monkeypatch.setattr(ingest_mod, "COMMIT_EVERY", 1)  # one batch per file
    rag.ingest(articles / "business" / "001.txt")
    store_type = type(rag.store)
    real = store_type.write
    calls = {"n": 0}

    def failing(self: Any, batch: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        real(self, batch)

    monkeypatch.setattr(store_type, "write", failing)
    with pytest.raises(KeyboardInterrupt):
        rag.ingest(articles)  # three files to add: the first is written, then a kill
    monkeypatch.setattr(store_type, "write", real)
    again = RAG(progress=False, **store_settings(kind, tmp_path))
    assert again.info().articles == 2
    report = again.ingest(articles)
    assert (report.added, report.unchanged) == (2, 2)
    assert again.info().articles == 4 and again.check().ok
    assert again.search(QUESTION, k=1)[0].paragraph == 10


def test_check_passes_and_counts_agree(rag: RAG, articles: Path) -> None:
    report = rag.ingest(articles)
    checked = rag.check()
    assert checked.ok, checked.to_dict()
    assert checked.to_dict()["ok"] and len(checked.checks) >= 4
    info = rag.info()
    assert info.paragraphs == report.paragraphs and info.passages >= info.paragraphs
    assert rag.check(repair=True).ok


def test_reading_a_missing_index_creates_nothing(kind: str, tmp_path: Path) -> None:
    settings = store_settings(kind, tmp_path / "typo")
    reader = RAG(progress=False, **settings)
    with pytest.raises(NoIndex, match="rag ingest PATH"):
        reader.search(QUESTION)
    with pytest.raises(NoIndex):
        reader.info()
    assert not (tmp_path / "typo").exists()


@needs_milvus
def test_milvus_and_the_folder_index_rank_alike(articles: Path, tmp_path: Path) -> None:
    """The same articles in both stores: the same counts, and the same best paragraph for
    each question and fusion (the order below the top may differ: BENCHMARKS.md)."""
    folder = RAG(progress=False, **store_settings("folder", tmp_path))
    milvus = RAG(progress=False, **store_settings("milvus", tmp_path))
    assert folder.ingest(articles).paragraphs == milvus.ingest(articles).paragraphs
    for field in ("articles", "paragraphs", "passages"):
        assert getattr(folder.info(), field) == getattr(milvus.info(), field), field
    questions = [QUESTION, "Who leads Anthropic?", "profits of the company", "Amazon"]
    for question in questions:
        for fusion in ("dense", "lexical", "weighted", "rrf"):
            one = folder.search(question, k=1, fusion=fusion)[0]
            other = milvus.search(question, k=1, fusion=fusion)[0]
            assert (one.source, one.paragraph, one.text) == (
                other.source,
                other.paragraph,
                other.text,
            ), (question, fusion)


@needs_milvus
def test_rag_ask_on_milvus_gives_the_folder_index_answer(
    tmp_path: Path, sample_article: Path
) -> None:
    """`rag ingest` then `rag ask` with --store milvus: the cited answer of the folder index."""
    runner = CliRunner(env={"RAG_MODEL": TINY, "RAG_MAX_NEW_TOKENS": "32", "COLUMNS": "200"})
    answers = {}
    for kind in ("folder", "milvus"):
        where = cli_options(kind, tmp_path)
        result = runner.invoke(app, ["ingest", str(sample_article), "--no-progress", *where])
        assert result.exit_code == 0, result.output
        result = runner.invoke(app, ["ask", QUESTION, "--json", "--no-progress", *where])
        assert result.exit_code == 0, result.output
        answers[kind] = json.loads(result.stdout)
    folder, milvus = answers["folder"], answers["milvus"]
    assert milvus["text"] == folder["text"]

    def cited(answer: dict[str, Any]) -> list[tuple[str, int]]:
        return [(c["passage"]["source"], c["passage"]["paragraph"]) for c in answer["citations"]]

    assert cited(milvus) == cited(folder)
    assert milvus["passages"][0]["paragraph"] == 10


@needs_milvus
def test_a_milvus_lite_file_in_a_new_folder_is_made_on_ingest(
    tmp_path: Path, articles: Path
) -> None:
    """As the folder index makes its folder, an ingest makes the folder of a new Lite file."""
    rag = RAG(progress=False, store="milvus", milvus_uri=str(tmp_path / "new" / "m.db"))
    assert rag.ingest(articles / SAMPLE_NAME).added == 1
    assert (tmp_path / "new" / "m.db").exists()
