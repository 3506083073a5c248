"""Which passages a search may draw from: its :class:`~rag.types.Filters` as a passage mask.

A filter is a condition on an article's fields (its source path, its publication
date), and the indexes hold passages. Asking the store for every passage of the
matching articles (a join over articles, paragraphs and passages) costs most of a
filtered search at a million passages, because it hands back every allowed passage
id. So the derived indexes of a store generation carry an :class:`ArticleTable`:
the article of each passage, and each article's source and publication date. A
filter then becomes a mask over the lexical index's rows (one per passage):

- the source glob is matched by the store, over the articles alone (SQLite's GLOB,
  so its rules are the store's own), and the matches of recent patterns are kept. A
  pattern seen for the first time whose literal text is rare is matched only against
  the few articles whose source contains that text, found in memory;
- the dates are compared in memory, as the store's SQL compares them (the first ten
  characters of ``published`` as text; an article without a date fails any date bound);
- the articles chosen are spread over their passages by one array lookup.

The store stays the source of truth: the table describes the generation it was
built from, and while the store is at another one (another process is ingesting),
the store answers the filter itself (``Store.filtered_passage_ids``), as it did before
the table existed. :func:`select` is the one place that turns filters into passages.
"""

from __future__ import annotations

import threading
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.lexical import LexicalIndex
from rag.store import Store
from rag.types import Filters

# Source patterns whose matching articles are kept per generation. Matching a glob reads
# every article's source, the one step of a filter that grows with the number of articles;
# an archive is searched by the same few sections over and over. Each entry is one byte per
# article.
GLOB_CACHE = 16
# A glob's literal text found in more sources than this (or a fraction of them) is too
# common to narrow the store's matching down: the store then matches every article.
NARROW_MAX = 2048
NARROW_SHARE = 0.02
# Bumped when what the file holds changes; a file of another format is ignored (filters are
# then answered by the store until the next rebuild writes it again).
FORMAT = 2


@dataclass(frozen=True)
class Selection:
    """The passages one search may draw from, in the two forms the indexes read."""

    rows: np.ndarray
    """One bool per row of the lexical index: may the search draw from that passage?"""
    ids: np.ndarray
    """The allowed passage ids (for FAISS's id selector)."""


class ArticleTable:
    """Each passage's article and each article's source and date, for the indexes of one
    generation.

    ``article_row[i]`` is the row, in ``article_ids``, of the article of the passage in
    lexical row ``i``. Dates are kept as the store compares them: the first ten characters
    of ``published``, UTF-8 encoded (byte order is code point order, as SQLite compares
    text), with ``dated`` false where there is none. The sources, UTF-8 too, are one run of
    bytes (``sources``), article ``j``'s from ``starts[j]`` to ``starts[j + 1]``.
    """

    def __init__(
        self,
        generation: int,
        article_row: np.ndarray,
        article_ids: np.ndarray,
        published: np.ndarray,
        dated: np.ndarray,
        sources: np.ndarray,
        starts: np.ndarray,
    ) -> None:
        self.generation = generation
        self.article_row = article_row
        self.article_ids = article_ids
        self.published = published
        self.dated = dated
        self.starts = starts
        self._text = sources.tobytes()  # bytes, which find scans at C speed; kept once
        self._globs: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def sources(self) -> np.ndarray:
        """Every article's source, UTF-8, one after the other (see ``starts``)."""
        return np.frombuffer(self._text, dtype=np.uint8)

    @classmethod
    def build(cls, store: Store, passage_ids: np.ndarray) -> ArticleTable:
        """The table of the store as it is now, aligned to ``passage_ids`` (the lexical
        index's rows); the caller holds the write lock, so nothing changes meanwhile."""
        with_article, article_of = store.passage_articles()
        article_ids, sources, published = store.article_fields()
        at = np.searchsorted(with_article, passage_ids)
        if len(passage_ids) and (
            int(at.max()) >= len(with_article) or not np.array_equal(with_article[at], passage_ids)
        ):
            raise ValueError("a passage of the lexical index is not in the store")
        article_row = np.searchsorted(article_ids, article_of[at]).astype(np.int32)
        dated = np.array([p is not None for p in published], dtype=bool)
        days = np.array([(p or "")[:10].encode() for p in published], dtype=np.bytes_)
        encoded = [source.encode() for source in sources]
        starts = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in encoded], out=starts[1:])
        text = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        return cls(store.generation, article_row, article_ids, days, dated, text, starts)

    @classmethod
    def load(cls, path: Path, generation: int, passages: int) -> ArticleTable | None:
        """Open a saved table; None when there is none, or it was written another way."""
        try:
            with np.load(path) as data:
                if int(data["format"]) != FORMAT or len(data["article_row"]) != passages:
                    return None
                return cls(
                    generation,
                    data["article_row"],
                    data["article_ids"],
                    data["published"],
                    data["dated"],
                    data["sources"],
                    data["starts"],
                )
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            return None  # missing or unreadable: filters are answered by the store

    def save(self, path: Path) -> None:
        with open(path, "wb") as fh:
            np.savez(
                fh,
                format=np.int64(FORMAT),
                article_row=self.article_row,
                article_ids=self.article_ids,
                published=self.published,
                dated=self.dated,
                sources=self.sources,
                starts=self.starts,
            )

    def articles(self, filters: Filters, store: Store) -> np.ndarray | None:
        """One bool per article: does it pass ``filters``? None when the store is no longer
        at this table's generation (it must answer the filter itself)."""
        chosen = np.ones(len(self.article_ids), dtype=bool)
        if filters.source:
            matching = self._matching(filters.source, store)
            if matching is None:
                return None
            chosen &= matching
        elif store.generation != self.generation:
            return None
        if filters.since:
            chosen &= self.dated & (self.published >= filters.since.isoformat().encode())
        if filters.until:
            chosen &= self.dated & (self.published <= filters.until.isoformat().encode())
        return chosen

    def _matching(self, pattern: str, store: Store) -> np.ndarray | None:
        """Articles whose source matches the glob (as the store matches it), remembered."""
        with self._lock:
            found = self._globs.get(pattern)
            if found is not None:
                self._globs.move_to_end(pattern)
        before = store.generation
        if found is None and before == self.generation:
            among = self._containing(_literal(pattern))
            ids = store.filtered_article_ids(
                source=pattern, among=None if among is None else self.article_ids[among]
            )
            # Every change bumps the generation in the same transaction, so the same number
            # before and after means the query read this generation's articles.
            if store.generation == before:
                found = np.zeros(len(self.article_ids), dtype=bool)
                found[np.searchsorted(self.article_ids, ids)] = True
                with self._lock:
                    self._globs[pattern] = found
                    while len(self._globs) > GLOB_CACHE:
                        self._globs.popitem(last=False)
        return found if before == self.generation else None

    def _containing(self, literal: bytes) -> np.ndarray | None:
        """Rows of the articles whose source contains ``literal``; None when that is too
        many to be worth narrowing to (or there is no literal)."""
        if len(literal) < 2:
            return None
        most = min(NARROW_MAX, max(16, int(NARROW_SHARE * len(self.article_ids))))
        hits: list[int] = []
        at = self._text.find(literal)
        while at >= 0:
            if len(hits) == most:
                return None
            hits.append(at)
            at = self._text.find(literal, at + 1)
        return np.unique(np.searchsorted(self.starts, hits, side="right") - 1)


def _literal(pattern: str) -> bytes:
    """The longest run of plain characters that every source the glob matches contains.

    Only the part before any ``[`` is read (a set's members are not literal text); in
    the rest, ``*`` and ``?`` stand for characters and so split the runs.
    """
    head = pattern.split("[", 1)[0]
    runs = head.replace("?", "*").split("*")
    return max(runs, key=lambda run: len(run.encode())).encode()


def select(
    filters: Filters, store: Store, lexical: LexicalIndex, table: ArticleTable | None
) -> Selection:
    """The passages that ``filters`` allow, on the rows of ``lexical`` and as ids.

    With a table of the store's current generation, from memory; otherwise the store
    finds the passage ids itself, and they are placed on the rows by binary search.
    """
    chosen = None if table is None else table.articles(filters, store)
    if table is not None and chosen is not None:
        rows = chosen[table.article_row]
        return Selection(rows, lexical.ids[rows])
    ids = store.filtered_passage_ids(
        filters.source,
        filters.since.isoformat() if filters.since else None,
        filters.until.isoformat() if filters.until else None,
    )
    rows = np.zeros(len(lexical), dtype=bool)
    found = lexical.rows(ids)
    rows[found[found >= 0]] = True
    return Selection(rows, ids)
