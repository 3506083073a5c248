"""The dense side of search: a FAISS index over the passage embeddings.

The index is derived from the store and written with write-then-rename, so a
crash leaves either the old file or the new one. Passage ids from the store are
the FAISS ids, which keeps the two joined without a side table.
"""

from __future__ import annotations

import os
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


def derived_paths(folder: Path) -> tuple[Path, Path]:
    return folder / VECTORS_FILE, folder / LEXICAL_DIR


def build_derived(
    folder: Path, store: Store, dimension: int, bm25: BM25Params | None = None
) -> tuple[VectorIndex, LexicalIndex]:
    """Rebuild the FAISS and BM25 indexes from the store and record which generation they match.

    The generation is written only after both files are in place: a crash in between
    leaves a stale mark, and the next open rebuilds.
    """
    vectors_path, lexical_path = derived_paths(folder)
    generation = store.generation
    ids, vectors = store.passage_vectors(dimension)
    vector_index = VectorIndex.build(ids, vectors)
    text_ids, texts = store.passage_texts()
    lexical_index = LexicalIndex.build(text_ids, texts, bm25)
    vector_index.save(vectors_path)
    lexical_index.save(lexical_path)
    with store.transaction():
        store.set_meta("derived_generation", str(generation))
    return vector_index, lexical_index


def load_derived(
    folder: Path, store: Store, dimension: int, bm25: BM25Params | None = None
) -> tuple[VectorIndex, LexicalIndex]:
    """Open the derived indexes, rebuilding them when missing or older than the store."""
    vectors_path, lexical_path = derived_paths(folder)
    fresh = store.get_meta("derived_generation") == str(store.generation)
    if fresh and vectors_path.exists() and (lexical_path / "ids.npy").exists():
        try:
            return VectorIndex.load(vectors_path), LexicalIndex.load(lexical_path, bm25)
        except (RuntimeError, OSError, ValueError):
            pass  # unreadable: fall through and rebuild from the source of truth
    return build_derived(folder, store, dimension, bm25)
