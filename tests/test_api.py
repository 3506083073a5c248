"""RAG end to end with the real embedder, real files, real SQLite and FAISS."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import QUESTION, SAMPLE_NAME

from rag import RAG, EmbedderMismatch, EmptyIndex, RagError
from rag.embed import Embedder, resolve_embedder_path
from rag.lexical import FORMAT as LEXICAL_FORMAT
from rag.stores.published import derived_folder


@pytest.fixture
def rag(tmp_path: Path) -> RAG:
    return RAG(tmp_path / "index", progress=False)


def test_search_finds_the_microsoft_paragraph(rag: RAG, articles: Path) -> None:
    report = rag.ingest([articles])
    assert (report.added, report.updated, report.unchanged) == (4, 0, 0)
    assert report.failed == []
    passages = rag.search(QUESTION, k=3)
    top = passages[0]
    assert "In 2019, Microsoft invested $1 billion" in top.text
    assert top.source == str((articles / SAMPLE_NAME).resolve())
    assert top.paragraph == 10
    assert top.author == "Brian Fung, CNN"
    assert top.published == "2023-09-25T09:55:00-04:00"
    assert top.score >= passages[1].score
    assert len(passages) == 3


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
    assert [p.paragraph for p in rag.search(QUESTION, k=5)] == numbers  # numbers stay stable


def test_duplicate_text_is_not_embedded_twice(rag: RAG, articles: Path, tmp_path: Path) -> None:
    rag.ingest(articles)
    copy = tmp_path / "copy" / "same-story.txt"
    copy.parent.mkdir()
    shutil.copy(articles / "business" / "002.txt", copy)
    report = rag.ingest(copy)
    assert report.added == 1
    assert report.embedded == 0


def test_remove(rag: RAG, articles: Path) -> None:
    rag.ingest(articles)
    removed = rag.remove(articles / SAMPLE_NAME)
    assert removed == [str((articles / SAMPLE_NAME).resolve())]
    assert rag.info().articles == 3
    assert all(p.source.endswith(".txt") and "000_" not in p.source for p in rag.search(QUESTION))
    with pytest.raises(RagError, match="No article"):
        rag.remove(articles / SAMPLE_NAME)
    # A re-ingest brings it back (the file record went with it).
    assert rag.ingest(articles).added == 1


def test_filters(rag: RAG, articles: Path) -> None:
    rag.ingest(articles)
    only_bbc = rag.search(QUESTION, k=5, source="business/*")
    assert only_bbc and all("/business/" in p.source for p in only_bbc)
    dated = rag.search(QUESTION, k=5, since="2023-01-01", until="2023-12-31")
    assert dated and all(p.published.startswith("2023") for p in dated)
    assert rag.search(QUESTION, k=5, since="2024-01-01") == []


def test_jsonl_sources_and_dates(rag: RAG, tmp_path: Path) -> None:
    feed = tmp_path / "feed.jsonl"
    rows = [
        {
            "id": "a1",
            "title": "Old",
            "text": "Rainfall records fell in 2004.",
            "published": "2004-05-01",
        },
        {
            "id": "a2",
            "title": "New",
            "text": "Rainfall records fell again in 2024.",
            "published": "2024-05-01",
        },
    ]
    feed.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rag.ingest(feed)
    hits = rag.search("rainfall records", k=5, since="2020-01-01")
    assert [h.source for h in hits] == [f"{feed.resolve()}#a2"]


def test_empty_index_and_empty_question(rag: RAG) -> None:
    with pytest.raises(EmptyIndex, match="rag ingest"):
        rag.search(QUESTION)


def test_derived_index_is_rebuilt_when_missing(tmp_path: Path, articles: Path) -> None:
    folder = tmp_path / "index"
    rag = RAG(folder, progress=False)
    rag.ingest(articles)
    derived = derived_folder(folder, rag.store.generation)
    (derived / "vectors.faiss").unlink()
    hits = RAG(folder, progress=False).search(QUESTION, k=1)
    assert hits[0].paragraph == 10
    assert (derived / "vectors.faiss").exists()
    # A lexical index written by an older version (another format) is rebuilt too.
    meta = derived / "lexical" / "lexical.json"
    meta.write_text(json.dumps({"documents": 1, "format": 0}))
    assert RAG(folder, progress=False).search(QUESTION, k=1)[0].paragraph == 10
    assert json.loads(meta.read_text())["format"] == LEXICAL_FORMAT
    # Other BM25 parameters mean another lexical index: it is rebuilt with them.
    assert RAG(folder, progress=False, bm25_b=0.75).search(QUESTION, k=1)[0].paragraph == 10
    assert json.loads(meta.read_text())["b"] == 0.75


def test_interrupted_ingest_keeps_finished_work(
    tmp_path: Path, articles: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash while writing leaves the store consistent, and a re-run completes it."""
    from rag.store import Store

    rag = RAG(tmp_path / "index", progress=False)
    real = Store.write_article
    calls = {"n": 0}

    def flaky(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Store, "write_article", flaky)
    with pytest.raises(KeyboardInterrupt):
        rag.ingest(articles)
    monkeypatch.setattr(Store, "write_article", real)
    stats = rag.store.stats()
    assert stats.articles == 0  # the group was rolled back as a whole
    report = RAG(tmp_path / "index", progress=False).ingest(articles)
    assert report.added == 4
    assert RAG(tmp_path / "index", progress=False).search(QUESTION, k=1)[0].paragraph == 10


@pytest.fixture(scope="module")
def other_embedder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real sentence-transformers model with different weights (same architecture)."""
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(resolve_embedder_path("all-MiniLM-L6-v2"), device="cpu")
    with torch.no_grad():
        next(model.parameters()).mul_(1.01)
    folder = tmp_path_factory.mktemp("other-embedder")
    model.save(str(folder))
    return folder


def test_embedder_mismatch_is_refused_with_a_way_out(
    tmp_path: Path, articles: Path, other_embedder: Path
) -> None:
    folder = tmp_path / "index"
    RAG(folder, progress=False).ingest(articles)
    other = RAG(folder, progress=False, embedder=str(other_embedder))
    with pytest.raises(EmbedderMismatch) as error:
        other.search(QUESTION)
    message = str(error.value)
    assert "all-MiniLM-L6-v2" in message and "rag rebuild --reembed" in message
    # Following the advice works and keeps the articles.
    other.rebuild(reembed=True)
    assert other.info().articles == 4
    assert Embedder(str(other_embedder)).info.fingerprint == other.info().embedder_fingerprint
    assert other.search(QUESTION, k=1)[0].paragraph == 10
    with pytest.raises(EmbedderMismatch):
        RAG(folder, progress=False).search(QUESTION)


def test_settings_given_as_keywords_are_validated_and_converted(tmp_path: Path) -> None:
    from pydantic import ValidationError

    # Values read from a config file or a form arrive as text; they must work as numbers.
    rag = RAG(tmp_path / "idx", passages="2", dense_weight="0.25", progress=False)
    assert rag.settings.passages == 2
    assert rag.settings.dense_weight == 0.25
    with pytest.raises(ValidationError, match="passages"):
        RAG(tmp_path / "idx", passages=0)
    with pytest.raises(ValidationError, match="Extra inputs"):
        RAG(tmp_path / "idx", pasages=2)
