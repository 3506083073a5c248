"""The SQLite store: articles, paragraphs, passages and embeddings, with transactions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag.store import Store
from rag.stores.base import StoredFile, document_hash
from rag.types import Document, Paragraph


def make_doc(source: str, texts: list[str], published: str | None = None) -> Document:
    paragraphs = [Paragraph(i, t, 0, len(t)) for i, t in enumerate(texts, start=1)]
    return Document(
        source=source, path=source, title="T", paragraphs=paragraphs, published=published
    )


def write(store: Store, doc: Document) -> None:
    with store.transaction():
        store.write_article(doc, document_hash(doc), [[p.text] for p in doc.paragraphs])
        store.put_file(StoredFile(doc.path, "h", 1, "text"))


def test_write_replace_and_delete(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    write(store, make_doc("/a.txt", ["one", "two"]))
    assert store.stats().paragraphs == 2
    write(store, make_doc("/a.txt", ["three"]))  # replacing drops the old paragraphs
    assert store.stats().articles == 1
    assert store.stats().paragraphs == 1
    assert store.stats().passages == 1
    with store.transaction():
        assert store.delete_path("/a.txt") == 1
    assert store.stats().paragraphs == 0
    assert store.get_file("/a.txt") is None


def test_failed_transaction_leaves_store_unchanged(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    write(store, make_doc("/a.txt", ["one"]))
    with pytest.raises(RuntimeError), store.transaction():
        store.delete_article("/a.txt")
        raise RuntimeError("crash in the middle")
    assert store.stats().articles == 1
    # and the data survives reopening
    store.close()
    assert Store(tmp_path / "db.sqlite").stats().paragraphs == 1


def test_embeddings_are_keyed_by_text(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    write(store, make_doc("/a.txt", ["same text"]))
    write(store, make_doc("/b.txt", ["same text"]))
    from rag.stores.base import text_hash

    assert store.missing_embeddings([text_hash("same text")]) == {text_hash("same text")}
    with store.transaction():
        store.put_embeddings([text_hash("same text")], np.ones((1, 4), dtype=np.float32))
    assert store.missing_embeddings([text_hash("same text")]) == set()
    ids, vectors = store.passage_vectors(4)
    assert len(ids) == 2  # both passages share the one vector
    assert np.allclose(vectors, 1.0)


def test_filters(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    write(store, make_doc("/data/business/1.txt", ["a"], published="2023-09-25T09:55:00-04:00"))
    write(store, make_doc("/data/tech/2.txt", ["b"], published="2005-01-02"))
    write(store, make_doc("/data/tech/3.txt", ["c"]))
    assert len(store.filtered_passage_ids(source="business/*")) == 1
    assert len(store.filtered_passage_ids(source="*/tech/*")) == 2
    assert len(store.filtered_passage_ids(since="2020-01-01")) == 1
    assert len(store.filtered_passage_ids(until="2020-01-01")) == 1
    assert len(store.filtered_passage_ids(source="tech/*", since="2000-01-01")) == 1
