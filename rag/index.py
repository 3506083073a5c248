"""The dense side of the folder index's search: a FAISS index over the passage embeddings.

The index type follows the collection's size: exact search while that is
cheap, an inverted-file (IVF) index above ``EXACT_MAX_VECTORS`` vectors.

The index is derived from the SQLite store: ``rag.stores.published`` writes it, with the
BM25 index and the article table that filters read (``rag.filtering``), into a folder per
store generation and publishes that folder through the store, so readers always open a
matching set. Passage ids from the store are the FAISS ids, which keeps the two joined
without a side table.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import faiss as faiss_module
import numpy as np

# faiss's bundled stubs (generated from SWIG) lack much of what is used here: DirectMap, the
# id maps and inverted lists, search parameters with selectors. Read through Any instead.
faiss: Any = faiss_module

# The figures behind these choices are in BENCHMARKS.md ("Measurements behind the defaults").
# Up to this many vectors, search is exact (IndexFlatIP): cheap enough, and no training. Above
# it, an inverted-file index (IndexIVFFlat) compares the query with the vectors of the lists
# nearest it. HNSW was rejected: it needed a wide search for the same recall, built slower,
# and a filter (IDSelector) makes its graph walk miss.
EXACT_MAX_VECTORS = 50_000
# IVF lists: about 4 * sqrt(n), a power of two: more, smaller lists gave better recall while
# comparing fewer vectors.
IVF_LISTS_PER_SQRT = 4
# Lists searched per query: 2 * sqrt(lists), at least 16. Real passages, without the
# near-duplicates of the benchmark collections, spread their neighbours over more lists, so
# fewer probes lose recall there first.
IVF_PROBES_PER_SQRT = 2
IVF_MIN_PROBES = 16
# k-means training: 39 vectors per list (faiss's minimum) and 5 iterations: as good as more
# of either, in a fraction of the time.
IVF_TRAIN_PER_LIST = 39
IVF_TRAIN_ITERATIONS = 5
# A filter that leaves this few passages, when the IVF search would visit every list for
# it, is searched exactly among the allowed vectors instead: looking each one up costs
# more per vector than the list scan, so only for a narrow filter is it the cheaper way.
EXACT_AMONG_MAX = 8192


def ivf_lists(n: int) -> int:
    """How many inverted lists an IVF index over ``n`` vectors gets.

    A power of two near ``IVF_LISTS_PER_SQRT * sqrt(n)``, but never so many that
    k-means has fewer than ``IVF_TRAIN_PER_LIST`` vectors per list to train on.
    """
    wanted: int = 2 ** round(math.log2(IVF_LISTS_PER_SQRT * math.sqrt(max(n, 1))))
    trainable: int = 2 ** int(math.log2(max(n // IVF_TRAIN_PER_LIST, 1)))
    return max(1, min(wanted, trainable))


def ivf_probes(lists: int) -> int:
    """How many of ``lists`` inverted lists one query searches."""
    return min(lists, max(IVF_MIN_PROBES, round(IVF_PROBES_PER_SQRT * math.sqrt(lists))))


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run FAISS on one thread: for a single query, OpenMP threads cost more than they save.

    On 2 cores with other work running, two threads wait for each other's cores: many times
    slower than one.
    """
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


class VectorIndex:
    """Inner-product search over unit vectors (cosine similarity), exact or approximate.

    A small collection gets an exact flat index: it answers in milliseconds and
    needs no training. Above ``exact_max`` vectors an IVF index (still full
    vectors, no compression) scans only the lists nearest the query, which keeps a
    query at a few milliseconds at a million paragraphs. Both keep the store's
    passage ids as their ids, and both give back the stored vectors exactly, so
    ``scores_for`` and ``rag check`` work whichever was chosen.
    """

    def __init__(self, index: faiss.Index) -> None:
        self.index = index
        self._ivf = index if isinstance(index, faiss.IndexIVF) else None

    @classmethod
    def build(
        cls, ids: np.ndarray, vectors: np.ndarray, exact_max: int | None = None
    ) -> VectorIndex:
        """Index ``vectors`` under ``ids``: exact up to ``exact_max`` vectors
        (default ``EXACT_MAX_VECTORS``), IVF above."""
        exact_max = EXACT_MAX_VECTORS if exact_max is None else exact_max
        dimension = vectors.shape[1]
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if len(ids) <= exact_max:
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))
            if len(ids):
                index.add_with_ids(vectors, ids)
            return cls(index)
        lists = ivf_lists(len(ids))
        ivf = faiss.IndexIVFFlat(
            faiss.IndexFlatIP(dimension), dimension, lists, faiss.METRIC_INNER_PRODUCT
        )
        # Unit vectors: spherical k-means keeps the list centroids on the sphere too.
        ivf.cp.spherical = True
        ivf.cp.niter = IVF_TRAIN_ITERATIONS
        ivf.cp.seed = 1234  # the same store builds the same index
        sample = np.random.default_rng(0).choice(
            len(ids), min(len(ids), IVF_TRAIN_PER_LIST * lists), replace=False
        )
        ivf.train(vectors[np.sort(sample)])
        ivf.nprobe = ivf_probes(lists)
        ivf.add_with_ids(vectors, ids)
        # Passage ids are sparse, so reconstructing one by id needs a hash table.
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
        return cls(ivf)

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

    @property
    def exact(self) -> bool:
        return self._ivf is None

    @property
    def kind(self) -> str:
        """Which index this is and with what parameters (shown by ``rag info``)."""
        if self._ivf is None:
            return FLAT_KIND
        lists = int(self._ivf.nlist)
        return (
            f"faiss IndexIVFFlat, approximate ({lists:,} lists, {ivf_probes(lists)} searched "
            "per query)"
        )

    def ids(self) -> np.ndarray:
        """Every passage id in the index (in no particular order)."""
        if self._ivf is None:
            return np.asarray(faiss.vector_to_array(self.index.id_map), dtype=np.int64)
        lists = self._ivf.invlists
        parts = [
            faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
            for i in range(self._ivf.nlist)
            if lists.list_size(i)
        ]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of ``ids``, one row each; KeyError if one is not in the index."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if len(ids) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        try:
            return np.asarray(self.index.reconstruct_batch(ids), dtype=np.float32)
        except RuntimeError as error:
            raise KeyError(f"a passage id is not in the vector index ({error})") from None

    def search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` (ids, scores) for one query vector, among ``allowed`` ids if given."""
        if len(self) == 0 or k <= 0 or (allowed is not None and len(allowed) == 0):
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        k = min(k, len(self) if allowed is None else len(allowed))
        query = query.reshape(1, -1).astype(np.float32)
        probes = None if self._ivf is None else ivf_probes(int(self._ivf.nlist))
        if allowed is not None and self._ivf is not None:
            # A filter leaves a fraction of each list: search proportionally more
            # lists, so about as many allowed vectors are compared as without one.
            lists = int(self._ivf.nlist)
            probes = min(lists, math.ceil(ivf_probes(lists) * len(self) / len(allowed)))
            if probes == lists and len(allowed) <= EXACT_AMONG_MAX:
                found = self._exact_among(query[0], k, allowed)
                if found is not None:
                    return found
        keep_alive: list[object] = []  # the selector reads this memory during the search
        selector = None if allowed is None else _selector(allowed, keep_alive)
        if probes is None:
            params = None if selector is None else faiss.SearchParameters(sel=selector)
        else:
            params = faiss.SearchParametersIVF(sel=selector, nprobe=probes)
        with _one_thread():
            scores, ids = self.index.search(query, k, params=params)
        keep = ids[0] >= 0
        return ids[0][keep], scores[0][keep]

    def _exact_among(
        self, query: np.ndarray, k: int, allowed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Exact top ``k`` among few ``allowed`` ids, from their own vectors; None when one
        is not in the index (the caller's selector skips it instead).

        A filter this narrow makes the IVF search visit every list, testing every id in the
        index against the selector to score a few: the same answer as this.
        """
        try:
            scores = self.vectors(allowed) @ query
        except KeyError:
            return None
        if k < len(scores):
            kth = np.partition(scores, len(scores) - k)[len(scores) - k]
            keep = np.flatnonzero(scores >= kth)
        else:
            keep = np.arange(len(scores))
        order = keep[np.lexsort((allowed[keep], -scores[keep]))][:k]
        return np.asarray(allowed[order], dtype=np.int64), scores[order].astype(np.float32)

    def scores_for(self, query: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Exact scores of given passage ids (to score lexical-only candidates densely)."""
        if len(ids) == 0:
            return np.zeros(0, dtype=np.float32)
        return self.vectors(ids) @ query.astype(np.float32)


FLAT_KIND = "faiss IndexIDMap2(IndexFlatIP), exact"


def _selector(allowed: np.ndarray, keep_alive: list[object]) -> faiss.IDSelector:
    """A FAISS id filter: a bitmap over the ids (one bit each, O(1) to test and cheap to
    build for a million ids), or a hashed set when the ids are too sparse for one."""
    allowed = np.ascontiguousarray(allowed, dtype=np.int64)
    top = int(allowed.max())
    if int(allowed.min()) >= 0 and top < 64 * len(allowed) + (1 << 20):
        bits = np.zeros(top + 1, dtype=bool)
        bits[allowed] = True
        bitmap = np.packbits(bits, bitorder="little")
        keep_alive.append(bitmap)
        return faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
    return faiss.IDSelectorBatch(len(allowed), faiss.swig_ptr(allowed))
