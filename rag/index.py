"""The dense side of search: a FAISS index over the passage embeddings.

The index is derived from the store: ``build_derived`` writes it, with the BM25
index, into a folder per store generation and publishes that folder through the
store, so readers always open a matching pair. Passage ids from the store are
the FAISS ids, which keeps the two joined without a side table.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from rag.lexical import BM25Params, LexicalIndex
from rag.store import Store


class VectorIndex:
    """Exact inner-product search over unit vectors (cosine similarity).

    A flat index is exact and, at news-archive sizes (tens of thousands of
    paragraphs), answers in milliseconds; an approximate index would trade
    recall for speed we don't need.
    """

    kind = "faiss IndexIDMap2(IndexFlatIP)"

    def __init__(self, index: faiss.Index) -> None:
        self.index = index

    @classmethod
    def build(cls, ids: np.ndarray, vectors: np.ndarray) -> VectorIndex:
        dimension = vectors.shape[1]
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))
        if len(ids):
            index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)
        return cls(index)

    @classmethod
    def load(cls, path: Path) -> VectorIndex:
        return cls(faiss.read_index(str(path)))

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        faiss.write_index(self.index, str(tmp))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    @property
    def dimension(self) -> int:
        return int(self.index.d)

    def search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` (ids, scores) for one query vector, among ``allowed`` ids if given."""
        if len(self) == 0 or k <= 0 or (allowed is not None and len(allowed) == 0):
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        params = None
        if allowed is not None:
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed))
        k = min(k, len(self) if allowed is None else len(allowed))
        scores, ids = self.index.search(query.reshape(1, -1).astype(np.float32), k, params=params)
        keep = ids[0] >= 0
        return ids[0][keep], scores[0][keep]

    def scores_for(self, query: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Exact scores of given passage ids (to score lexical-only candidates densely)."""
        if len(ids) == 0:
            return np.zeros(0, dtype=np.float32)
        vectors = np.vstack([self.index.reconstruct(int(i)) for i in ids])
        return vectors @ query.astype(np.float32)


VECTORS_FILE = "vectors.faiss"
LEXICAL_DIR = "lexical"
DERIVED_DIR = "derived"


@dataclass
class Derived:
    """The FAISS and BM25 indexes of one store generation."""

    vectors: VectorIndex
    lexical: LexicalIndex
    generation: int


def derived_folder(folder: Path, generation: int) -> Path:
    """Where the derived indexes of one store generation live."""
    return folder / DERIVED_DIR / str(generation)


def published_generation(store: Store) -> int | None:
    """The generation whose derived indexes readers should open (None: none published)."""
    value = store.get_meta("derived_generation")
    return int(value) if value is not None else None


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
    target = derived_folder(folder, generation)
    tmp = target.with_name(f"{generation}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    vector_index.save(tmp / VECTORS_FILE)
    lexical_index.save(tmp / LEXICAL_DIR)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    with store.transaction():
        store.set_meta("derived_generation", str(generation))
    _remove_unpublished(folder, keep=target)
    return Derived(vector_index, lexical_index, generation)


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
            return Derived(
                VectorIndex.load(path / VECTORS_FILE),
                LexicalIndex.load(path / LEXICAL_DIR, bm25),
                generation,
            )
        except (RuntimeError, OSError, ValueError):
            if published_generation(store) == generation:
                return None  # still published yet unreadable (or built another way): rebuild
    return None
