"""The folder index's derived files, published per store generation.

The FAISS and BM25 indexes, with the article table that filters read (``rag.filtering``),
are derived from the SQLite store. ``build_derived`` writes them into a folder per store
generation and publishes that folder through the store, so readers always open a matching
set; ``load_published`` opens the published one. Only the folder store uses this.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from rag.filtering import ArticleTable
from rag.index import FLAT_KIND, VectorIndex
from rag.lexical import BM25Params, LexicalIndex
from rag.store import Store

VECTORS_FILE = "vectors.faiss"
LEXICAL_DIR = "lexical"
ARTICLES_FILE = "articles.npz"
DERIVED_DIR = "derived"


@dataclass
class Derived:
    """The FAISS and BM25 indexes of one store generation, and what filters read of it.

    ``articles`` is None for indexes written before it existed: the store then answers
    filters by itself, until the next rebuild writes it.
    """

    vectors: VectorIndex
    lexical: LexicalIndex
    generation: int
    articles: ArticleTable | None = None


def derived_folder(folder: Path, generation: int) -> Path:
    """Where the derived indexes of one store generation live."""
    return folder / DERIVED_DIR / str(generation)


def published_generation(store: Store) -> int | None:
    """The generation whose derived indexes readers should open (None: none published)."""
    value = store.get_meta("derived_generation")
    return int(value) if value is not None else None


def published_kind(store: Store) -> str:
    """What kind of vector index is published (for ``rag info``, without loading it).

    Indexes published before the kind was recorded were all exact.
    """
    return store.get_meta("vector_index") or FLAT_KIND


def build_derived(
    folder: Path, store: Store, dimension: int, bm25: BM25Params | None = None
) -> Derived:
    """Build the FAISS and BM25 indexes of the store's current generation and publish them.

    The caller holds the index's write lock. Both indexes are written into a
    fresh folder, which is renamed into place whole; only then does the store
    record it as the published generation, in one transaction. So a reader sees
    the old pair or the new pair, never one of each, and a crash at any point
    leaves the old pair published (the next open rebuilds).
    """
    generation = store.generation
    ids, vectors = store.passage_vectors(dimension)
    vector_index = VectorIndex.build(ids, vectors)
    text_ids, texts = store.passage_texts()
    lexical_index = LexicalIndex.build(text_ids, texts, bm25)
    articles = ArticleTable.build(store, lexical_index.ids)
    target = derived_folder(folder, generation)
    tmp = target.with_name(f"{generation}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    vector_index.save(tmp / VECTORS_FILE)
    lexical_index.save(tmp / LEXICAL_DIR)
    articles.save(tmp / ARTICLES_FILE)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    with store.transaction():
        store.set_meta("derived_generation", str(generation))
        store.set_meta("vector_index", vector_index.kind)
    _remove_unpublished(folder, keep=target)
    return Derived(vector_index, lexical_index, generation, articles)


def _remove_unpublished(folder: Path, keep: Path) -> None:
    """Delete derived folders of older generations (and of crashed builds).

    A reader that read the old generation's number a moment ago and now finds
    its folder gone simply reads the published number again (see load_published).
    """
    for child in (folder / DERIVED_DIR).iterdir():
        if child != keep:
            shutil.rmtree(child, ignore_errors=True)
    # Layout of indexes written before derived folders were per generation.
    (folder / VECTORS_FILE).unlink(missing_ok=True)
    shutil.rmtree(folder / LEXICAL_DIR, ignore_errors=True)


def load_published(folder: Path, store: Store, bm25: BM25Params | None = None) -> Derived | None:
    """Open the published derived indexes; None when there are none or they are unreadable.

    A writer may publish a newer generation and delete the older one between our
    reading its number and opening its files; then the number is read again.
    """
    for _ in range(5):
        generation = published_generation(store)
        if generation is None:
            return None
        path = derived_folder(folder, generation)
        try:
            lexical = LexicalIndex.load(path / LEXICAL_DIR, bm25)
            return Derived(
                VectorIndex.load(path / VECTORS_FILE),
                lexical,
                generation,
                ArticleTable.load(path / ARTICLES_FILE, generation, len(lexical)),
            )
        except (RuntimeError, OSError, ValueError):
            if published_generation(store) == generation:
                return None  # still published yet unreadable (or built another way): rebuild
    return None
