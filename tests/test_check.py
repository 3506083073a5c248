"""`rag check` finds each kind of damage, and `--repair` mends what can be mended."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np
import pytest
from conftest import QUESTION
from typer.testing import CliRunner

from rag import RAG
from rag.cli import app
from rag.errors import IndexBusy, IndexFormatError
from rag.lock import IndexLock
from rag.stores.published import derived_folder

runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, sample_article: Path) -> Path:
    folder = tmp_path_factory.mktemp("built") / "index"
    with RAG(folder, progress=False) as rag:
        rag.ingest(sample_article)
    return folder


@pytest.fixture
def index(built: Path, tmp_path: Path) -> Path:
    """A fresh copy of a good index for each test to damage."""
    folder = tmp_path / "index"
    shutil.copytree(built, folder)
    return folder


def sql(folder: Path, *statements: str) -> None:
    db = sqlite3.connect(folder / "rag.sqlite")
    for statement in statements:
        db.execute(statement)
    db.commit()
    db.close()


def published(folder: Path) -> Path:
    db = sqlite3.connect(folder / "rag.sqlite")
    (generation,) = db.execute("SELECT value FROM meta WHERE key='derived_generation'").fetchone()
    db.close()
    return derived_folder(folder, int(generation))


def check(folder: Path, *extra: str):
    return runner.invoke(app, ["check", "--index", str(folder), *extra], catch_exceptions=False)


def test_good_index_passes(index: Path) -> None:
    result = check(index)
    assert result.exit_code == 0, result.output
    assert "All checks pass" in result.output
    data = json.loads(check(index, "--json").output)
    assert data["ok"] and {c["name"] for c in data["checks"]} == {
        "database",
        "passages",
        "embedder",
        "search indexes",
        "vectors",
        "bm25",
    }


def _drop_derived(folder: Path) -> None:
    shutil.rmtree(folder / "derived")


def _stale(folder: Path) -> None:
    sql(folder, "UPDATE meta SET value = value + 1 WHERE key = 'generation'")


def _lose_embedding(folder: Path) -> None:
    sql(folder, "DELETE FROM embeddings WHERE rowid IN (SELECT rowid FROM embeddings LIMIT 2)")


def _bare_paragraph(folder: Path) -> None:
    sql(folder, "DELETE FROM passages WHERE id = (SELECT MIN(id) FROM passages)")


def _extra_vector(folder: Path) -> None:
    path = published(folder) / "vectors.faiss"
    index = faiss.read_index(str(path))
    vector = np.ones((1, index.d), dtype=np.float32) / np.sqrt(index.d)
    index.add_with_ids(vector, np.array([999_999], dtype=np.int64))
    faiss.write_index(index, str(path))


def _lexical_short(folder: Path) -> None:
    ids = published(folder) / "lexical" / "ids.npy"
    np.save(ids, np.load(ids)[:-1])


def _foreign_vectors(folder: Path) -> None:
    path = published(folder) / "vectors.faiss"
    index = faiss.read_index(str(path))
    ids = faiss.vector_to_array(index.id_map).astype(np.int64)
    other = faiss.IndexIDMap2(faiss.IndexFlatIP(index.d))
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(ids), index.d)).astype(np.float32)
    other.add_with_ids(vectors / np.linalg.norm(vectors, axis=1, keepdims=True), ids)
    faiss.write_index(other, str(path))


def _garbage_faiss(folder: Path) -> None:
    (published(folder) / "vectors.faiss").write_bytes(b"not a faiss index")


DAMAGE: dict[str, tuple[Callable[[Path], None], str, str]] = {
    # name: (damage, failing check, words in its detail)
    "derived folder deleted": (_drop_derived, "search indexes", "missing"),
    "embeddings lost": (_lose_embedding, "passages", "without an embedding"),
    "paragraph without passages": (_bare_paragraph, "passages", "without passages"),
    "extra FAISS vector": (_extra_vector, "vectors", "for no stored passage"),
    "BM25 misses one": (_lexical_short, "bm25", "1 passage missing"),
    "vectors from elsewhere": (_foreign_vectors, "vectors", "differ from the stored"),
    "unreadable FAISS file": (_garbage_faiss, "search indexes", "unreadable"),
}


@pytest.mark.parametrize("name", list(DAMAGE))
def test_damage_is_found_and_repaired(index: Path, name: str) -> None:
    damage, failing, words = DAMAGE[name]
    damage(index)
    result = check(index, "--json")
    assert result.exit_code == 1
    report = json.loads(result.output)
    failed = {c["name"]: c["detail"] for c in report["checks"] if not c["ok"]}
    assert failing in failed and words in failed[failing], failed

    result = check(index, "--repair")
    assert result.exit_code == 0, result.output
    assert "repaired: rebuilt the FAISS and BM25 indexes" in result.output
    assert check(index).exit_code == 0
    with RAG(index, progress=False) as rag:
        assert rag.search(QUESTION, k=1)[0].paragraph == 10


def test_an_interrupted_ingest_is_brought_up_to_date_not_failed(index: Path) -> None:
    """A kill after a commit leaves the database ahead of its search indexes: nothing is
    damaged, so check publishes them (as the next search would) and says so."""
    _stale(index)
    result = check(index, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] and not report["repaired"]
    (step,) = report["brought_up_to_date"]
    assert "published the search indexes of database generation" in step
    result = check(index)
    assert result.exit_code == 0 and "brought up to date" not in result.output
    with RAG(index, progress=False) as rag:
        assert rag.search(QUESTION, k=1)[0].paragraph == 10


def test_other_embedder_is_reported_not_repaired(index: Path) -> None:
    sql(index, "UPDATE meta SET value = 'feedfacefeedface' WHERE key = 'embedder_fingerprint'")
    result = check(index, "--repair", "--json")
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert "rebuild --reembed" in report["repaired"][0]
    embedder = next(c for c in report["checks"] if c["name"] == "embedder")
    assert not embedder["ok"] and "feedfacefeedface" in embedder["detail"]


def test_damaged_database_is_reported(index: Path) -> None:
    # Break an index's b-tree: the rows say one thing, the index on them another.
    db = sqlite3.connect(index / "rag.sqlite")
    (root,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name='articles_path'").fetchone()
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    with open(index / "rag.sqlite", "r+b") as fh:
        fh.seek((root - 1) * page_size + 8)
        fh.write(b"\xff" * 64)
    result = check(index, "--repair")
    assert result.exit_code == 1
    assert "integrity" in result.output or "not a readable" in result.output


def test_missing_index_and_newer_format(tmp_path: Path, index: Path) -> None:
    result = check(tmp_path / "nothing")
    assert result.exit_code == 1 and "no index" in result.output.lower()
    sql(index, "UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(IndexFormatError, match="newer version"):
        RAG(index)
    result = runner.invoke(app, ["search", QUESTION, "--index", str(index)])
    assert result.exit_code == 1 and "format version 99" in result.output
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "rag.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(IndexFormatError, match="not a readable rag index"):
        RAG(tmp_path / "junk")


def test_writer_lock_makes_a_second_writer_fail_at_once(index: Path, sample_article: Path) -> None:
    holder = IndexLock(index)
    holder.acquire(what="ingest into")
    try:
        with RAG(index, progress=False) as rag:
            with pytest.raises(IndexBusy, match="busy"):
                rag.ingest(sample_article)
            with pytest.raises(IndexBusy, match="busy"):
                rag.remove(sample_article)
            # Reading needs no lock: searches go on from the published indexes.
            assert rag.search(QUESTION, k=1)[0].paragraph == 10
        result = check(index)
        assert result.exit_code == 1 and "is busy" in result.output
    finally:
        holder.release()
    assert check(index).exit_code == 0
