"""The lexical side of search: BM25 over the passage texts (bm25s, English stemming).

Names, figures and rare words are where dense embeddings are weakest and BM25
is strongest, which is why search uses both.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import bm25s
import numpy as np

from rag.settings import default
from rag.stemming import STEMMER as _STEMMER

# bm25s sets its own logger to DEBUG when imported, so any catch-all handler (Python adds one
# the first time anything logs a warning on the root logger) prints every index it builds.
logging.getLogger("bm25s").setLevel(logging.WARNING)

# Bumped when what is indexed changes, so indexes built by an older version are rebuilt.
FORMAT = 2


def tokenize(texts: list[str]) -> list[list[str]]:
    """Lower-cased, stop-worded, stemmed tokens (``LexicalIndex.build`` asks bm25s for the
    same tokens as ids)."""
    tokens: list[list[str]] = bm25s.tokenize(
        texts, stopwords="en", stemmer=_STEMMER, return_ids=False, show_progress=False
    )
    return tokens


@dataclass(frozen=True)
class BM25Params:
    """BM25's term-frequency saturation (k1) and length normalisation (b).

    The defaults (settings ``bm25_k1``, ``bm25_b``) are lower than the textbook 1.5 / 0.75:
    news paragraphs are short, and with b = 0.75 a short paragraph that mentions a word once
    outranks the long one that is about it (recall on SQuAD with BBC distractors: BENCHMARKS.md).
    """

    k1: float = default("bm25_k1")
    b: float = default("bm25_b")


class LexicalIndex:
    """BM25 scores over passages, addressed by the store's passage ids."""

    kind = "bm25s (BM25, lucene variant)"

    def __init__(
        self, retriever: bm25s.BM25 | None, ids: np.ndarray, params: BM25Params | None = None
    ) -> None:
        self.retriever = retriever
        self.params = params or BM25Params()
        ids = np.asarray(ids, dtype=np.int64)
        # Rows are found by binary search over the sorted ids: a dict of a million
        # ids would cost a second and ~100 MB on every open.
        self._order = None if bool(np.all(ids[1:] > ids[:-1])) else np.argsort(ids, kind="stable")
        self.ids = ids
        self._sorted = ids if self._order is None else ids[self._order]

    @classmethod
    def build(
        cls, ids: np.ndarray, texts: list[str], params: BM25Params | None = None
    ) -> LexicalIndex:
        params = params or BM25Params()
        if not texts:
            return cls(None, ids, params)
        retriever = bm25s.BM25(k1=params.k1, b=params.b)
        # Token ids rather than strings: the same index, built a third faster (bm25s would
        # turn strings back into ids).
        corpus = bm25s.tokenize(
            texts, stopwords="en", stemmer=_STEMMER, return_ids=True, show_progress=False
        )
        retriever.index(corpus, show_progress=False)
        return cls(retriever, ids, params)

    @classmethod
    def load(cls, folder: Path, params: BM25Params | None = None) -> LexicalIndex:
        """Open a saved index; ValueError when it was built another way (rebuild it)."""
        params = params or BM25Params()
        ids = np.load(folder / "ids.npy")
        meta = json.loads((folder / "lexical.json").read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"lexical index format {meta.get('format')}, expected {FORMAT}")
        if meta.get("k1") != params.k1 or meta.get("b") != params.b:
            raise ValueError("lexical index built with other BM25 parameters")
        retriever = bm25s.BM25.load(str(folder)) if meta["documents"] else None
        return cls(retriever, ids, params)

    def save(self, folder: Path) -> None:
        """Write into a fresh folder, then swap it in, so readers never see half an index."""
        tmp = folder.with_name(folder.name + ".tmp")
        old = folder.with_name(folder.name + ".old")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if self.retriever is not None:
            self.retriever.save(str(tmp))
        np.save(tmp / "ids.npy", self.ids)
        (tmp / "lexical.json").write_text(
            json.dumps(
                {
                    "documents": len(self.ids),
                    "format": FORMAT,
                    "k1": self.params.k1,
                    "b": self.params.b,
                }
            )
        )
        shutil.rmtree(old, ignore_errors=True)
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """Row of each passage id (-1 for an id the index does not hold)."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(self._sorted) == 0:
            return np.full(len(ids), -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(self._sorted, ids), len(self._sorted) - 1)
        rows = at if self._order is None else self._order[at]
        return np.where(self._sorted[at] == ids, rows, -1)

    def scores(self, query: str) -> LexicalScores:
        """BM25 scores of every passage for ``query``, computed once.

        Weighted fusion reads them twice (the top ``k``, then the scores of the
        dense candidates); computing them once halves the BM25 work of a search.
        """
        if self.retriever is None:
            return LexicalScores(self, np.zeros(len(self.ids), dtype=np.float32))
        vocab = self.retriever.vocab_dict
        tokens = [vocab[t] for t in tokenize([query])[0] if t in vocab]
        if not tokens:
            return LexicalScores(self, np.zeros(len(self.ids), dtype=np.float32))
        return LexicalScores(self, self.retriever.get_scores_from_ids(tokens), tuple(tokens))

    def holding_rarest(self, tokens: tuple[int, ...], k: int) -> np.ndarray | None:
        """Rows of at least ``k`` documents holding the rarest of ``tokens`` (None: fewer
        than ``k`` documents hold any)."""
        if self.retriever is None:
            return None
        indptr, indices = self.retriever.scores["indptr"], self.retriever.scores["indices"]
        found = np.zeros(0, dtype=indices.dtype)
        for token in sorted(set(tokens), key=lambda t: indptr[t + 1] - indptr[t]):
            found = np.union1d(found, indices[indptr[token] : indptr[token + 1]])
            if len(found) >= k:
                return found
        return None

    def search(
        self, query: str, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` (ids, scores) with a positive score, among ``allowed`` ids if given."""
        return self.scores(query).top(k, allowed)

    def scores_for(self, query: str, ids: np.ndarray) -> np.ndarray:
        """BM25 scores of given passage ids (0 for ids the index does not hold)."""
        return self.scores(query).of(ids)


@dataclass(frozen=True)
class LexicalScores:
    """The BM25 score of every passage (one row each) for one query."""

    index: LexicalIndex
    values: np.ndarray
    tokens: tuple[int, ...] = ()
    """The query's token ids, to find the top k without ranking every scored row."""

    def top(
        self, k: int, allowed: np.ndarray | None = None, *, mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` (ids, scores) with a positive score, among ``allowed`` ids if given, or
        among the rows where ``mask`` (one bool per row, as ``rag.filtering`` gives it) is set.

        Equal scores are ordered by passage id, so the result never depends on how
        the top k was selected.
        """
        if mask is not None:
            rows = np.flatnonzero(mask & (self.values > 0))
        elif allowed is None:
            rows = self._contenders(k)
        else:
            rows = self.index.rows(allowed)
            rows = rows[rows >= 0]
            rows = rows[self.values[rows] > 0]
        if k <= 0 or len(rows) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        scores = self.values[rows]
        if k < len(rows):
            kth = np.partition(scores, len(scores) - k)[len(scores) - k]
            keep = scores >= kth  # the k best and every row tied with the k-th
            rows, scores = rows[keep], scores[keep]
        order = np.lexsort((self.index.ids[rows], -scores))[:k]
        return self.index.ids[rows[order]], scores[order].astype(np.float32)

    def _contenders(self, k: int) -> np.ndarray:
        """Rows that may be among the top ``k``: every row scoring at least the k-th best
        score among the documents holding the query's rarest words.

        The top k must score that much, and few other rows do: at a million passages a
        common question word is in a fifth of them, and ranking all of those costs several
        times as much as this, for the same top k.
        """
        rare = self.index.holding_rarest(self.tokens, k) if k > 0 else None
        if rare is None:
            return np.flatnonzero(self.values > 0)
        scores = self.values[rare]
        threshold = np.partition(scores, len(scores) - k)[len(scores) - k]
        return np.flatnonzero(self.values >= threshold)

    def of(self, ids: np.ndarray) -> np.ndarray:
        """Scores of given passage ids (0 for ids the index does not hold)."""
        rows = self.index.rows(ids)
        return np.where(rows >= 0, self.values[np.maximum(rows, 0)], 0.0).astype(np.float32)
