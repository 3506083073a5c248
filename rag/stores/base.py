"""What a store of passages must do, and the records that cross its boundary.

A store holds the articles, their paragraphs, the passages each paragraph is embedded as
(a long paragraph is several), the passage vectors, and what incremental ingest needs (each
file's and each article's content hash). Two implementations exist: the folder index
(``rag.stores.folder``: SQLite, FAISS and bm25s in one folder, the default) and a Milvus
collection (``rag.stores.milvus``). Ingest, retrieval, ``rag check`` and :class:`rag.RAG`
are typed against :class:`IndexStore` alone, so either serves every command the same way.

Passage, paragraph and article ids are integers chosen by the store; a search answers with
passage ids, which the store turns into paragraphs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from rag.settings import FusionMethod, Settings, default
from rag.types import Article, Document, Filters, Passage

if TYPE_CHECKING:  # loading the embedder's libraries costs seconds; only its record is read
    from rag.embed import Embedder, EmbedderInfo

Hits = tuple[np.ndarray, np.ndarray]
"""(passage ids, scores) of a search, best first: int64 and float32 arrays of one length."""


def no_hits() -> Hits:
    return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)


def best_first(ids: np.ndarray, scores: np.ndarray) -> Hits:
    """Hits ordered by score, ties by id, so that every store orders them alike."""
    order = np.lexsort((ids, -scores))
    return np.asarray(ids[order], dtype=np.int64), scores[order]


def fused_hits(fused: dict[int, float]) -> Hits:
    """Hits from a fusion's scores (rag.fusion), best first."""
    ids = np.fromiter(fused, dtype=np.int64, count=len(fused))
    # float64: the fused values exactly as computed, so scores and ties do not move.
    scores = np.fromiter(fused.values(), dtype=np.float64, count=len(fused))
    return best_first(ids, scores)


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def document_hash(doc: Document) -> str:
    """Hash of everything stored for an article: a change anywhere means re-ingest."""
    payload = {
        "title": doc.title,
        "author": doc.author,
        "publisher": doc.publisher,
        "published": doc.published,
        "url": doc.url,
        "paragraphs": [(p.number, p.text, p.start, p.end) for p in doc.paragraphs],
    }
    return text_hash(json.dumps(payload, ensure_ascii=False, sort_keys=True))


@dataclass(frozen=True)
class StoredFile:
    """A file as last ingested: its bytes' hash (empty: read it again next time)."""

    path: str
    hash: str
    size: int
    format: str


@dataclass(frozen=True)
class Stats:
    articles: int
    paragraphs: int
    passages: int
    embeddings: int
    files: int


@dataclass(frozen=True)
class ArticleWrite:
    """An article to add or replace, cut into passages: ``pieces[i]`` are paragraph i's."""

    document: Document
    content_hash: str
    pieces: list[list[str]]


@dataclass
class WriteBatch:
    """Changes that a store applies together: all of them or, after a crash, none that a
    re-run of the same ingest would not redo."""

    write: list[ArticleWrite] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    """Sources of articles to remove."""
    files: list[StoredFile] = field(default_factory=list)
    """File records to set, once their articles are written."""
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    """text hash -> embedding, for the passage texts the store did not hold."""


@dataclass(frozen=True)
class EmbedderRecord:
    """Which embedder built an index: what a search's embedder must be."""

    name: str
    dimension: int
    fingerprint: str


@dataclass(frozen=True)
class StoreInfo:
    location: str
    vector_index: str
    lexical_index: str
    size_bytes: int


@dataclass(frozen=True)
class SearchOptions:
    """How one search ranks: the retrieval settings of the same names."""

    k: int = default("k")
    fusion: FusionMethod = default("fusion")
    dense_weight: float = default("dense_weight")
    rrf_k: int = default("rrf_k")
    candidates: int = default("candidates")

    @classmethod
    def of(cls, settings: Settings) -> SearchOptions:
        # Fusion needs at least k candidates from each side to return k paragraphs.
        return cls(
            k=settings.k,
            fusion=settings.fusion,
            dense_weight=settings.dense_weight,
            rrf_k=settings.rrf_k,
            candidates=max(settings.candidates, settings.k),
        )


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class CheckReport:
    """The outcome of ``rag check``: every check, and what ``--repair`` did."""

    folder: str
    checks: list[Check]
    repaired: list[str] = field(default_factory=list)
    before_repair: list[Check] = field(default_factory=list)
    brought_up_to_date: list[str] = field(default_factory=list)
    """What was published before checking because an ingest had stopped short of it."""

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def to_dict(self) -> dict[str, object]:
        return {
            "folder": self.folder,
            "ok": self.ok,
            "checks": [asdict(c) for c in self.checks],
            "repaired": self.repaired,
            "before_repair": [asdict(c) for c in self.before_repair],
            "brought_up_to_date": self.brought_up_to_date,
        }


class SearchIndex(Protocol):
    """What a search reads: ranked passage ids, and the paragraphs behind them.

    Filters are the article conditions of :class:`rag.types.Filters`: a source glob (a
    pattern not starting with ``/`` or ``*`` may match any tail of the path, so
    ``business/*`` finds ``/data/bbc-news/business/001.txt``) and an inclusive range of
    publication dates (an article without a date fails any date bound).
    """

    def allows_any(self, filters: Filters) -> bool:
        """Whether any passage passes ``filters`` (if none, a search need not embed)."""
        ...

    def dense_search(self, vector: np.ndarray, k: int, filters: Filters | None) -> Hits:
        """The ``k`` passages nearest ``vector`` (inner product of unit vectors)."""
        ...

    def lexical_search(self, query: str, k: int, filters: Filters | None) -> Hits:
        """The ``k`` passages BM25 scores best for ``query`` (only positive scores)."""
        ...

    def hybrid_search(
        self, query: str, vector: np.ndarray, options: SearchOptions, filters: Filters | None
    ) -> Hits:
        """Dense and BM25 candidates (``options.candidates`` of each) fused as
        ``options.fusion`` says ('weighted' or 'rrf'), best first."""
        ...

    def passage_paragraphs(self, passage_ids: list[int]) -> dict[int, int]:
        """passage id -> paragraph id, for the ids still stored (a concurrent writer may
        have replaced some since the search)."""
        ...

    def paragraphs(self, paragraph_ids: list[int]) -> dict[int, Passage]:
        """paragraph id -> a Passage with the paragraph's text and its article's metadata."""
        ...


class IndexStore(SearchIndex, Protocol):
    """A store of passages with everything ingest, search, ``rag check`` and ``rag info``
    need. Writes happen inside :meth:`writing`; they become searchable on :meth:`publish`."""

    kind: str
    """'folder' or 'milvus' (the ``store`` setting)."""
    location: str
    """Where the index is, as a user names it in messages."""

    def close(self) -> None: ...

    # --- writing --------------------------------------------------------------------------
    def writing(self, what: str) -> AbstractContextManager[None]:
        """Hold the right to write (:class:`rag.errors.IndexBusy` if another writer has it)."""
        ...

    def write(self, batch: WriteBatch) -> None:
        """Add or replace articles' passages, remove articles, record files: one batch."""
        ...

    def remove(self, articles: list[tuple[str, str]]) -> None:
        """Remove these (source, path) articles, as :meth:`sources_matching` gives them, and
        the record of a file none of whose articles is left."""
        ...

    def publish(self) -> None:
        """Make what was written searchable (readers see the old state until then)."""
        ...

    def rebuild(
        self,
        model: Embedder | None,
        *,
        batch_size: int,
        max_passage_tokens: int,
        show_progress: bool,
    ) -> None:
        """Rebuild the search structures; with ``model``, re-embed every paragraph first."""
        ...

    # --- incremental ingest -----------------------------------------------------------------
    def get_file(self, path: str) -> StoredFile | None: ...

    def known_files(self) -> dict[str, str]:
        """path -> hash of every file ingested (for workers that cannot ask the store)."""
        ...

    def article_hashes(self, path: str) -> dict[str, str]:
        """source -> content hash of the articles read from one file."""
        ...

    def count_articles(self, path: str) -> int: ...

    def missing_embeddings(self, hashes: Iterable[str]) -> set[str]:
        """The passage text hashes that have no stored embedding."""
        ...

    def sources_matching(self, pattern: str) -> list[tuple[str, str]]:
        """(source, path) of articles whose source or file path is, or matches the glob."""
        ...

    # --- reading --------------------------------------------------------------------------
    def article(self, article_id: int) -> Article | None: ...

    def stats(self) -> Stats: ...

    def has_passages(self) -> bool: ...

    def info(self) -> StoreInfo: ...

    def embedder(self) -> EmbedderRecord | None:
        """The embedder recorded as having built the index (None: nothing embedded yet)."""
        ...

    def record_embedder(self, info: EmbedderInfo) -> None: ...

    def check(
        self,
        configured: EmbedderInfo | None,
        embedder: Callable[[], Embedder],
        *,
        repair: bool,
        batch_size: int,
        max_passage_tokens: int,
    ) -> CheckReport:
        """Every consistency check (counts agree, the embedder is the recorded one, every
        article's passages present) against the ``configured`` embedder; with ``repair``,
        mend what can be (``embedder`` is called only if something must be embedded). The
        caller holds :meth:`writing`."""
        ...
