"""The folder index: SQLite as the source of truth, FAISS and bm25s derived from it.

Everything lives in one folder: ``rag.sqlite`` (``rag.store``: articles, paragraphs,
passages, embeddings keyed by text hash), the write lock (``rag.lock``), and the derived
FAISS and BM25 indexes with the article table that filters read, one folder per store
generation (``rag.stores.published``). A reader searches the last published generation; a
writer holds the lock, commits in transactions and publishes a new generation at the end.
This is the default store, and what every other store is measured against.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rich.console import Console

from rag.errors import IndexBusy, NoIndex
from rag.feedback import progress_bar
from rag.filtering import ArticleTable, Selection, select
from rag.fusion import rrf, weighted
from rag.index import VectorIndex
from rag.ingest import embed_texts, split_for
from rag.lexical import BM25Params, LexicalIndex
from rag.lock import LOCK_FILE, WRITER_FILE, IndexLock
from rag.store import Store
from rag.stores.base import (
    CheckReport,
    EmbedderRecord,
    Hits,
    SearchOptions,
    Stats,
    StoredFile,
    StoreInfo,
    WriteBatch,
    best_first,
    fused_hits,
    text_hash,
)
from rag.stores.published import (
    DERIVED_DIR,
    VECTORS_FILE,
    Derived,
    build_derived,
    load_published,
    published_generation,
    published_kind,
)
from rag.types import Article, Filters, Passage

if TYPE_CHECKING:  # loading the embedder's libraries costs seconds
    from rag.embed import Embedder, EmbedderInfo

DB_FILE = "rag.sqlite"


def no_index_message(folder: Path) -> str:
    if folder.is_file():
        return f"{folder} is a file, not an index folder."
    if folder.is_dir() and any(not p.name.startswith(".") for p in folder.iterdir()):
        return (
            f"{folder} is not an index: it holds other files and no {DB_FILE}. Give the "
            "folder of an index (--index DIR), or make one with `rag ingest PATH --index DIR`."
        )
    return (
        f"There is no index in {folder}, so it has no articles yet: make one with "
        f"`rag ingest PATH --index {folder}` (or check the --index folder's name)."
    )


def _check_new_index_folder(folder: Path) -> None:
    """Refuse to create an index in a file, or beside other files (``--index /etc``)."""
    if folder.is_file() or (
        folder.is_dir()
        and not (folder / DB_FILE).exists()
        and any(not p.name.startswith(".") for p in folder.iterdir())
    ):
        raise NoIndex(no_index_message(folder))


def index_files(folder: Path) -> list[Path]:
    """The files that make up the index in ``folder`` (not whatever else lies there)."""
    own = [folder / name for name in (DB_FILE, f"{DB_FILE}-wal", f"{DB_FILE}-shm")]
    own += [folder / LOCK_FILE, folder / WRITER_FILE]
    files = [f for f in own if f.is_file()]
    files += [f for f in (folder / DERIVED_DIR).rglob("*") if f.is_file()]
    return files


class FolderSearch:
    """Search over one published generation: its FAISS and BM25 indexes and article table,
    with the SQLite store for filters the table cannot answer and for the paragraphs."""

    def __init__(
        self,
        store: Store,
        vectors: VectorIndex,
        lexical: LexicalIndex,
        articles: ArticleTable | None = None,
    ) -> None:
        self.store = store
        self.vectors = vectors
        self.lexical = lexical
        self.articles = articles
        self._last: tuple[Filters, int, Selection] | None = None

    def _selection(self, filters: Filters | None) -> Selection | None:
        """The passages ``filters`` allow (None: all); the last one is kept, since one
        search asks for it twice (does any pass, then the search itself)."""
        if filters is None or not filters.active:
            return None
        generation = self.store.generation
        if self._last is not None and self._last[:2] == (filters, generation):
            return self._last[2]
        selection = select(filters, self.store, self.lexical, self.articles)
        self._last = (filters, generation, selection)
        return selection

    def allows_any(self, filters: Filters) -> bool:
        selection = self._selection(filters)
        return selection is None or len(selection.ids) > 0

    def dense_search(self, vector: np.ndarray, k: int, filters: Filters | None) -> Hits:
        selection = self._selection(filters)
        ids, scores = self.vectors.search(vector, k, None if selection is None else selection.ids)
        return best_first(ids, scores)

    def lexical_search(self, query: str, k: int, filters: Filters | None) -> Hits:
        selection = self._selection(filters)
        return self.lexical.scores(query).top(k, mask=None if selection is None else selection.rows)

    def hybrid_search(
        self, query: str, vector: np.ndarray, options: SearchOptions, filters: Filters | None
    ) -> Hits:
        """Every candidate of either side is scored by both (weighted fusion), or the two
        rankings are fused by rank (rrf)."""
        selection = self._selection(filters)
        n = options.candidates
        allowed = None if selection is None else selection.ids
        mask = None if selection is None else selection.rows
        dense_ids, _ = self.vectors.search(vector, n, allowed)
        lexical = self.lexical.scores(query)
        lexical_ids, _ = lexical.top(n, mask=mask)
        if options.fusion == "rrf":
            return fused_hits(rrf([dense_ids, lexical_ids], options.rrf_k))
        ids = np.unique(np.concatenate([dense_ids, lexical_ids]))
        dense_all = self.vectors.scores_for(vector, ids)
        return fused_hits(weighted(ids, dense_all, lexical.of(ids), options.dense_weight))

    def passage_paragraphs(self, passage_ids: list[int]) -> dict[int, int]:
        return self.store.passage_paragraphs(passage_ids)

    def paragraphs(self, paragraph_ids: list[int]) -> dict[int, Passage]:
        return self.store.paragraphs(paragraph_ids)


class FolderStore:
    """The index in one folder (see the module's docstring), as an :class:`IndexStore`.

    ``dimension`` gives the embedder's dimension when the index has none recorded yet (an
    empty index publishes empty indexes of that width); it is called only then.
    """

    kind = "folder"

    def __init__(
        self,
        folder: Path,
        *,
        create: bool = False,
        wait: float = 0.0,
        bm25: BM25Params | None = None,
        dimension: Callable[[], int] | None = None,
    ) -> None:
        self.folder = folder
        self.location = str(folder)
        self.bm25 = bm25 or BM25Params()
        self._dimension_of = dimension
        if create:
            _check_new_index_folder(folder)
            folder.mkdir(parents=True, exist_ok=True)
        elif not (folder / DB_FILE).exists():
            raise NoIndex(no_index_message(folder))
        self.lock = IndexLock(folder, wait=wait)
        self.db = Store(folder / DB_FILE)
        self._search: FolderSearch | None = None
        self._search_generation: int | None = None

    @staticmethod
    def exists(folder: Path) -> bool:
        return (folder / DB_FILE).exists()

    def close(self) -> None:
        self.db.close()

    # --- publishing ---------------------------------------------------------------------------
    @property
    def generation(self) -> int:
        """The database's generation, bumped by every change to the passages."""
        return self.db.generation

    @property
    def searched_generation(self) -> int | None:
        """The generation whose indexes the last search read."""
        return self._search_generation

    def _dimension(self) -> int:
        recorded = self.db.get_meta("embedder_dimension")
        if recorded:
            return int(recorded)
        if self._dimension_of is None:
            raise ValueError("no embedder is recorded, and no dimension was given")
        return self._dimension_of()

    def _use(self, derived: Derived) -> FolderSearch:
        self._search = FolderSearch(self.db, derived.vectors, derived.lexical, derived.articles)
        self._search_generation = derived.generation
        return self._search

    def current(self) -> FolderSearch:
        """The search over the published indexes, rebuilt first if they are stale.

        Rebuilding writes, so it needs the write lock. While another process holds
        it (an ingest is running), searches use the last published indexes: the
        index as it was before that ingest, never a half-written one.
        """
        if self._search is not None and self._search_generation == self.db.generation:
            return self._search
        if published_generation(self.db) == self.db.generation:
            # Up to date: opened without the write lock, so that reading touches no file.
            derived = load_published(self.folder, self.db, self.bm25)
            if derived is not None and derived.generation == self.db.generation:
                return self._use(derived)
        if self.lock.try_acquire():
            try:
                derived = load_published(self.folder, self.db, self.bm25)
                if derived is None or derived.generation != self.db.generation:
                    derived = build_derived(self.folder, self.db, self._dimension(), self.bm25)
                return self._use(derived)
            finally:
                self.lock.release()
        if self._search is not None and self._search_generation == published_generation(self.db):
            return self._search
        derived = load_published(self.folder, self.db, self.bm25)
        if derived is None:
            raise IndexBusy(
                f"The index in {self.folder} is being built by another process and has no "
                "searchable state yet; try again when its ingest finishes."
            )
        return self._use(derived)

    def publish(self) -> None:
        self.current()

    # --- writing ------------------------------------------------------------------------------
    @contextmanager
    def writing(self, what: str) -> Iterator[None]:
        self.lock.acquire(what=what)
        try:
            yield
        finally:
            self.lock.release()

    def write(self, batch: WriteBatch) -> None:
        """One transaction: new embeddings, removed and rewritten articles, file records."""
        hashes = list(batch.vectors)
        with self.db.transaction():
            if hashes:
                self.db.put_embeddings(hashes, np.stack([batch.vectors[h] for h in hashes]))
            for source in batch.delete:
                self.db.delete_article(source)
            for item in batch.write:
                self.db.write_article(item.document, item.content_hash, item.pieces)
            for stored in batch.files:
                self.db.put_file(stored)
            self.db.drop_unused_embeddings()
            self.db.bump_generation()

    def remove(self, articles: list[tuple[str, str]]) -> None:
        with self.db.transaction():
            for source, path in articles:
                self.db.delete_article(source)
                if self.db.count_articles(path) == 0:
                    self.db.delete_path(path)
            self.db.drop_unused_embeddings()
            self.db.bump_generation()

    def rebuild(
        self,
        model: Embedder | None,
        *,
        batch_size: int,
        max_passage_tokens: int,
        show_progress: bool,
    ) -> None:
        if model is not None:
            reembed(
                self.db,
                model,
                batch_size=batch_size,
                max_passage_tokens=max_passage_tokens,
                show_progress=show_progress,
            )
        self._use(build_derived(self.folder, self.db, self._dimension(), self.bm25))

    # --- incremental ingest -------------------------------------------------------------------
    def get_file(self, path: str) -> StoredFile | None:
        return self.db.get_file(path)

    def known_files(self) -> dict[str, str]:
        return self.db.file_hashes()

    def article_hashes(self, path: str) -> dict[str, str]:
        return self.db.article_hashes(path)

    def count_articles(self, path: str) -> int:
        return self.db.count_articles(path)

    def missing_embeddings(self, hashes: Iterable[str]) -> set[str]:
        return self.db.missing_embeddings(hashes)

    def sources_matching(self, pattern: str) -> list[tuple[str, str]]:
        return self.db.sources_matching(pattern)

    # --- search -------------------------------------------------------------------------------
    def allows_any(self, filters: Filters) -> bool:
        return self.current().allows_any(filters)

    def dense_search(self, vector: np.ndarray, k: int, filters: Filters | None) -> Hits:
        return self.current().dense_search(vector, k, filters)

    def lexical_search(self, query: str, k: int, filters: Filters | None) -> Hits:
        return self.current().lexical_search(query, k, filters)

    def hybrid_search(
        self, query: str, vector: np.ndarray, options: SearchOptions, filters: Filters | None
    ) -> Hits:
        return self.current().hybrid_search(query, vector, options, filters)

    def passage_paragraphs(self, passage_ids: list[int]) -> dict[int, int]:
        return self.db.passage_paragraphs(passage_ids)

    def paragraphs(self, paragraph_ids: list[int]) -> dict[int, Passage]:
        return self.db.paragraphs(paragraph_ids)

    # --- reading ------------------------------------------------------------------------------
    def article(self, article_id: int) -> Article | None:
        return self.db.article(article_id)

    def stats(self) -> Stats:
        return self.db.stats()

    def has_passages(self) -> bool:
        return self.db.has_passages()

    def info(self) -> StoreInfo:
        return StoreInfo(
            location=str(self.folder.resolve()),
            vector_index=f"{published_kind(self.db)} ({VECTORS_FILE})",
            lexical_index=LexicalIndex.kind,
            size_bytes=sum(f.stat().st_size for f in index_files(self.folder)),
        )

    def embedder(self) -> EmbedderRecord | None:
        name = self.db.get_meta("embedder_name")
        if name is None:
            return None
        return EmbedderRecord(
            name,
            int(self.db.get_meta("embedder_dimension") or 0),
            self.db.get_meta("embedder_fingerprint") or "",
        )

    def record_embedder(self, info: EmbedderInfo) -> None:
        with self.db.transaction():
            record_embedder(self.db, info)

    def check(
        self,
        configured: EmbedderInfo | None,
        embedder: Callable[[], Embedder],
        *,
        repair: bool,
        batch_size: int,
        max_passage_tokens: int,
    ) -> CheckReport:
        from rag.check import interrupted_publish, run_checks
        from rag.check import repair as repair_index

        folder, db = self.folder, self.db
        report = CheckReport(str(folder.resolve()), run_checks(db, folder, self.bm25, configured))
        if interrupted_publish(db, report):
            # The database is ahead of the search indexes, as a killed ingest leaves it:
            # nothing is damaged, and the next search would publish them anyway.
            behind = published_generation(db)
            self._use(build_derived(folder, db, self._dimension(), self.bm25))
            report.brought_up_to_date.append(
                f"published the search indexes of database generation "
                f"{db.generation} (they were at {behind}: an ingest had stopped "
                "before publishing them)"
            )
            report.checks = run_checks(db, folder, self.bm25, configured)
        if not repair or report.ok:
            return report
        report.before_repair = report.checks
        names = {c.name: c for c in report.checks}
        if not names["database"].ok:
            report.repaired.append(
                "nothing: the database file itself is damaged, and the search indexes are "
                "derived from it; ingest the articles again into a new index folder"
            )
            return report
        if not names["embedder"].ok:
            report.repaired.append(
                "nothing: the configured embedder is not the one that built the index; use "
                f"--embedder {db.get_meta('embedder_name')!r}, or re-embed with "
                "rag rebuild --reembed"
            )
            return report
        model = embedder()
        report.repaired, derived = repair_index(
            db,
            folder,
            model,
            self.bm25,
            batch_size=batch_size,
            max_passage_tokens=max_passage_tokens,
        )
        self._use(derived)
        report.checks = run_checks(db, folder, self.bm25, model.info)
        return report


def record_embedder(store: Store, info: EmbedderInfo) -> None:
    store.set_meta("embedder_name", info.name)
    store.set_meta("embedder_dimension", str(info.dimension))
    store.set_meta("embedder_fingerprint", info.fingerprint)


def reembed(
    store: Store,
    model: Embedder,
    *,
    batch_size: int,
    max_passage_tokens: int,
    console: Console | None = None,
    show_progress: bool = True,
) -> int:
    """Re-split and re-embed every paragraph with ``model`` (after changing the embedder).

    Everything is computed first and swapped in by one transaction, so an
    interruption leaves the index as it was, still usable with the old embedder.
    """
    console = console or Console(stderr=True)
    paragraphs = store.paragraph_texts()
    split = split_for(model, [text for _, text in paragraphs], max_passage_tokens)
    passages = {
        paragraph_id: parts for (paragraph_id, _), parts in zip(paragraphs, split, strict=True)
    }
    texts_of = {text_hash(part): part for parts in passages.values() for part in parts}
    hashes = list(texts_of)
    with progress_bar(console, show_progress) as progress:
        task = progress.add_task("Embedding", total=len(hashes))
        vectors = embed_texts(model, [texts_of[h] for h in hashes], batch_size, progress, task)
    with store.transaction():
        store.replace_all_passages(passages)
        store.put_embeddings(hashes, vectors)
        record_embedder(store, model.info)
        store.bump_generation()
    return len(hashes)
