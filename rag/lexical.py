"""The lexical side of search: BM25 over the passage texts (bm25s, English stemming).

Names, figures and rare words are where dense embeddings are weakest and BM25
is strongest, which is why search uses both.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import bm25s
import numpy as np
import Stemmer

_STEMMER = Stemmer.Stemmer("english")
# Bumped when what is indexed changes, so indexes built by an older version are rebuilt.
FORMAT = 2


def tokenize(texts: list[str]) -> list[list[str]]:
    """Lower-cased, stop-worded, stemmed tokens; the same function for corpus and queries."""
    return bm25s.tokenize(
        texts, stopwords="en", stemmer=_STEMMER, return_ids=False, show_progress=False
    )


@dataclass(frozen=True)
class BM25Params:
    """BM25's term-frequency saturation (k1) and length normalisation (b).

    The defaults are lower than the textbook 1.5 / 0.75: news paragraphs are
    short, and with b = 0.75 a short paragraph that mentions a word once
    outranks the long one that is about it. Measured on SQuAD with the BBC
    corpus as distractors (benchmarks/retrieval.py): recall@5 0.940 -> 0.947.
    """

    k1: float = 1.0
    b: float = 0.4


class LexicalIndex:
    """BM25 scores over passages, addressed by the store's passage ids."""

    kind = "bm25s (BM25, lucene variant)"

    def __init__(
        self, retriever: bm25s.BM25 | None, ids: np.ndarray, params: BM25Params | None = None
    ) -> None:
        self.retriever = retriever
        self.ids = ids
        self.params = params or BM25Params()
        self._row = {int(i): r for r, i in enumerate(ids)}

    @classmethod
    def build(
        cls, ids: np.ndarray, texts: list[str], params: BM25Params | None = None
    ) -> LexicalIndex:
        params = params or BM25Params()
        if not texts:
            return cls(None, ids, params)
        retriever = bm25s.BM25(k1=params.k1, b=params.b)
        retriever.index(tokenize(texts), show_progress=False)
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

    def _scores(self, query: str) -> np.ndarray:
        if self.retriever is None:
            return np.zeros(0, dtype=np.float32)
        tokens = [t for t in tokenize([query])[0] if t in self.retriever.vocab_dict]
        if not tokens:
            return np.zeros(len(self.ids), dtype=np.float32)
        return self.retriever.get_scores(tokens)

    def search(
        self, query: str, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` (ids, scores) with a positive score, among ``allowed`` ids if given."""
        scores = self._scores(query)
        if len(scores) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        if allowed is not None:
            mask = np.isin(self.ids, allowed)
            scores = np.where(mask, scores, 0.0)
        k = min(k, int((scores > 0).sum()))
        if k == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return self.ids[top], scores[top].astype(np.float32)

    def scores_for(self, query: str, ids: np.ndarray) -> np.ndarray:
        scores = self._scores(query)
        if len(scores) == 0:
            return np.zeros(len(ids), dtype=np.float32)
        return np.array([scores[self._row[int(i)]] for i in ids], dtype=np.float32)
