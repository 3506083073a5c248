"""The Python API: ``RAG`` opens an index folder and ingests, searches and answers.

The CLI and the notebooks are thin layers over this class. Models load lazily,
on first use, and once: opening an index to look at it costs nothing.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from rag import ingest as ingest_mod
from rag.embed import Embedder, backend_of
from rag.errors import (
    ArticleNotFound,
    EmbedderMismatch,
    EmptyIndex,
    IndexBusy,
    NoIndex,
    RagError,
)
from rag.index import (
    DERIVED_DIR,
    VECTORS_FILE,
    Derived,
    build_derived,
    load_published,
    published_generation,
    published_kind,
)
from rag.lexical import BM25Params, LexicalIndex
from rag.lock import LOCK_FILE, WRITER_FILE, IndexLock
from rag.prompt import require_question
from rag.retrieve import Retriever, SearchOptions
from rag.settings import Settings
from rag.store import Store
from rag.types import Answer, AnswerItem, Article, Filters, IngestReport, Passage

if TYPE_CHECKING:  # loading transformers costs seconds; only ask() needs it
    from rag.check import CheckReport
    from rag.generate import ChatModel
    from rag.prompt import Templates

DB_FILE = "rag.sqlite"
# Retrieval settings one search may override; the rest shape the index or the answer.
SEARCH_OVERRIDES = frozenset({"fusion", "dense_weight", "rrf_k", "candidates"})


def _no_index_message(folder: Path) -> str:
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
        raise NoIndex(_no_index_message(folder))


def index_files(folder: Path) -> list[Path]:
    """The files that make up the index in ``folder`` (not whatever else lies there)."""
    own = [folder / name for name in (DB_FILE, f"{DB_FILE}-wal", f"{DB_FILE}-shm")]
    own += [folder / LOCK_FILE, folder / WRITER_FILE]
    files = [f for f in own if f.is_file()]
    files += [f for f in (folder / DERIVED_DIR).rglob("*") if f.is_file()]
    return files


@dataclass(frozen=True)
class IndexInfo:
    folder: str
    articles: int
    paragraphs: int
    passages: int
    embeddings: int
    embedder: str | None
    embedder_dimension: int | None
    embedder_fingerprint: str | None
    vector_index: str
    lexical_index: str
    size_bytes: int


class RAG:
    """An index of news articles in a folder, and everything done with it.

    ``RAG("index")`` opens the index in that folder. Reading (search, ask, info, check)
    needs an index there; the first ingest creates it, and ``create=True`` creates it at
    once. Settings (see :class:`rag.settings.Settings`) may be passed as keyword
    arguments, e.g. ``RAG("index", k=10, fusion="rrf")``; bad values raise pydantic's
    ``ValidationError`` naming the setting.
    """

    def __init__(
        self,
        index: str | Path | None = None,
        settings: Settings | None = None,
        console: Console | None = None,
        *,
        create: bool = False,
        **overrides: Any,
    ) -> None:
        base = settings or Settings()
        if index is not None:
            overrides["index"] = index
        # Validated, not copied: a bad value fails here, and "3" from a config file becomes 3.
        self.settings = (
            Settings.model_validate({**base.model_dump(), **overrides}) if overrides else base
        )
        self.folder = self.settings.index.expanduser()
        self.lock = IndexLock(self.folder, wait=self.settings.wait)
        self.console = console or Console(stderr=True)
        self._store: Store | None = None
        self._embedder: Embedder | None = None
        self._embedder_checked = False
        self._retriever: Retriever | None = None
        self._retriever_generation: int | None = None
        self._generator: ChatModel | None = None
        self._templates: Templates | None = None
        # An index that exists is opened now, so that a damaged or newer one fails at once.
        if create or (self.folder / DB_FILE).exists():
            self._open(create=create)

    @property
    def store(self) -> Store:
        """The index's database; :class:`NoIndex` when the folder holds none (nothing is made)."""
        if self._store is None:
            if not (self.folder / DB_FILE).exists():
                raise NoIndex(_no_index_message(self.folder))
            self._open(create=False)
        assert self._store is not None
        return self._store

    def _open(self, create: bool) -> Store:
        """Open the database, creating the folder and an empty index when ``create``."""
        if self._store is None:
            if create:
                _check_new_index_folder(self.folder)
                self.folder.mkdir(parents=True, exist_ok=True)
            self._store = Store(self.folder / DB_FILE)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def __enter__(self) -> RAG:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RAG({str(self.folder)!r})"

    # --- models ----------------------------------------------------------------
    @property
    def embedder(self) -> Embedder:
        """The embedder, loaded on first use and checked against the one that built the index
        (once there is an index: it may be loaded before the first ingest creates one)."""
        model = self._embedder or self._new_embedder()
        if not self._embedder_checked and (self._store or (self.folder / DB_FILE).exists()):
            self._check_embedder(model)
            self._embedder_checked = True
        self._embedder = model
        return model

    def _new_embedder(self) -> Embedder:
        """The configured embedder (model, backend, threads, export cache), loaded now."""
        s = self.settings
        return Embedder(
            s.embedder,
            threads=s.threads,
            backend=s.embed_backend,
            home=s.home,
            progress=s.progress,
            console=self.console,
        )

    def _check_embedder(self, model: Embedder) -> None:
        built_with = self.store.get_meta("embedder_name")
        info = model.info
        if built_with is None:
            with self.store.transaction():
                ingest_mod.record_embedder(self.store, model)
            return
        dimension = self.store.get_meta("embedder_dimension")
        fingerprint = self.store.get_meta("embedder_fingerprint")
        if fingerprint == info.fingerprint and dimension == str(info.dimension):
            return
        built_backend = backend_of(fingerprint or "")
        raise EmbedderMismatch(
            f"The index in {self.folder} was built with the embedder {built_with!r} "
            f"({dimension} dimensions, weights {fingerprint}), but the configured embedder is "
            f"{info.name!r} ({info.dimension} dimensions, weights {info.fingerprint}). "
            f"Either use the embedder that built it (--embedder {built_with!r} --embed-backend "
            f"{built_backend}, or RAG_EMBEDDER={built_with} RAG_EMBED_BACKEND={built_backend}), "
            f"or re-embed the index with the new one: rag rebuild --reembed --index "
            f"{self.folder} --embedder {info.name!r} --embed-backend {self.settings.embed_backend}"
        )

    # --- ingest --------------------------------------------------------------------
    def ingest(self, paths: str | Path | Sequence[str | Path]) -> IngestReport:
        """Add or update the articles in ``paths`` (files and folders, read recursively)."""
        if isinstance(paths, str | Path):
            paths = [paths]
        with self._writing("ingest into", create=True):
            report = ingest_mod.ingest(
                paths,
                self.store,
                lambda: self.embedder,
                self._rebuild_derived,
                batch_size=self.settings.batch_size,
                max_passage_tokens=self.settings.max_passage_tokens,
                max_file_mb=self.settings.max_file_mb,
                console=self.console,
                show_progress=self.settings.progress,
            )
        return report

    @contextmanager
    def _writing(self, what: str, create: bool = False) -> Iterator[None]:
        """Hold the index's write lock; IndexBusy (after ``wait`` seconds) if another has it.

        The index must exist (:class:`NoIndex` otherwise) unless ``create``: the lock file
        is the index's own, never made in a folder that is not one.
        """
        if create:
            self._open(create=True)
        else:
            self.store  # noqa: B018 - raises NoIndex before anything is written
        self.lock.acquire(what=what)
        try:
            yield
        finally:
            self.lock.release()

    def remove(self, source: str | Path) -> list[str]:
        """Remove the articles of a file (or with that source, or matching a glob).

        Returns the sources removed; an unknown source raises :class:`RagError`.
        """
        pattern = str(source)
        candidate = Path(pattern).expanduser()
        if candidate.exists() or not any(c in pattern for c in "*?["):
            pattern = str(candidate.resolve())
        with self._writing("remove articles from"):
            matches = self.store.sources_matching(pattern)
            if not matches:
                raise RagError(f"No article in {self.folder} comes from {source!s}.")
            with self.store.transaction():
                for article_source, path in matches:
                    self.store.delete_article(article_source)
                    if self.store.count_articles(path) == 0:
                        self.store.delete_path(path)
                self.store.drop_unused_embeddings()
                self.store.bump_generation()
            self._rebuild_derived()
        return [m[0] for m in matches]

    def rebuild(self, reembed: bool = False) -> None:
        """Rebuild the FAISS and BM25 indexes from the database; with ``reembed``,
        re-embed every paragraph with the configured embedder first."""
        with self._writing("rebuild"):
            if reembed:
                model = self._new_embedder()
                ingest_mod.reembed(
                    self.store,
                    model,
                    batch_size=self.settings.batch_size,
                    max_passage_tokens=self.settings.max_passage_tokens,
                    console=self.console,
                    show_progress=self.settings.progress,
                )
                self._embedder, self._embedder_checked = model, True
            self._use(build_derived(self.folder, self.store, self._dimension(), self._bm25()))

    def _dimension(self) -> int:
        recorded = self.store.get_meta("embedder_dimension")
        return int(recorded) if recorded else self.embedder.info.dimension

    def _rebuild_derived(self) -> Retriever:
        """Open the published derived indexes, rebuilding them first if they are stale.

        Rebuilding writes, so it needs the write lock. While another process holds
        it (an ingest is running), searches use the last published indexes: the
        index as it was before that ingest, never a half-written one.
        """
        if self._retriever is not None and self._retriever_generation == self.store.generation:
            return self._retriever
        if published_generation(self.store) == self.store.generation:
            # Up to date: opened without the write lock, so that reading touches no file.
            derived = load_published(self.folder, self.store, self._bm25())
            if derived is not None and derived.generation == self.store.generation:
                return self._use(derived)
        if self.lock.try_acquire():
            try:
                derived = load_published(self.folder, self.store, self._bm25())
                if derived is None or derived.generation != self.store.generation:
                    bm25 = self._bm25()
                    derived = build_derived(self.folder, self.store, self._dimension(), bm25)
                return self._use(derived)
            finally:
                self.lock.release()
        if self._retriever is not None and self._retriever_generation == published_generation(
            self.store
        ):
            return self._retriever
        derived = load_published(self.folder, self.store, self._bm25())
        if derived is None:
            raise IndexBusy(
                f"The index in {self.folder} is being built by another process and has no "
                "searchable state yet; try again when its ingest finishes."
            )
        return self._use(derived)

    def _use(self, derived: Derived) -> Retriever:
        self._retriever = Retriever(
            self.store,
            derived.vectors,
            derived.lexical,
            lambda q: self.embedder.embed([q])[0],
            derived.articles,
        )
        self._retriever_generation = derived.generation
        return self._retriever

    # --- consistency -------------------------------------------------------------------
    def check(self, repair: bool = False) -> CheckReport:
        """Check that the index is whole and its parts agree; with ``repair``, mend what fails.

        Holds the write lock (a running ingest makes this wait or fail with IndexBusy),
        so the state checked is not one a writer is half-way through changing.
        """
        from rag.check import CheckReport, interrupted_publish, run_checks
        from rag.check import repair as repair_index

        with self._writing("check"):
            built = self.store.get_meta("embedder_name") is not None
            # The raw embedder: self.embedder would refuse a mismatch that check must report.
            model = self._embedder or (self._new_embedder() if built else None)
            info = model.info if model else None
            report = CheckReport(
                str(self.folder.resolve()), run_checks(self.store, self.folder, self._bm25(), info)
            )
            if interrupted_publish(self.store, report):
                # The database is ahead of the search indexes, as a killed ingest leaves it:
                # nothing is damaged, and the next search would publish them anyway.
                behind = published_generation(self.store)
                self._use(build_derived(self.folder, self.store, self._dimension(), self._bm25()))
                report.brought_up_to_date.append(
                    f"published the search indexes of database generation "
                    f"{self.store.generation} (they were at {behind}: an ingest had stopped "
                    "before publishing them)"
                )
                report.checks = run_checks(self.store, self.folder, self._bm25(), info)
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
                    f"--embedder {self.store.get_meta('embedder_name')!r}, or re-embed with "
                    "rag rebuild --reembed"
                )
                return report
            model = model or self.embedder
            report.repaired, derived = repair_index(
                self.store,
                self.folder,
                model,
                self._bm25(),
                batch_size=self.settings.batch_size,
                max_passage_tokens=self.settings.max_passage_tokens,
            )
            self._use(derived)
            report.checks = run_checks(self.store, self.folder, self._bm25(), model.info)
        return report

    # --- search ------------------------------------------------------------------------
    @property
    def retriever(self) -> Retriever:
        """The retriever over the newest published indexes (another process may have ingested)."""
        return self._rebuild_derived()

    def _bm25(self) -> BM25Params:
        return BM25Params(k1=self.settings.bm25_k1, b=self.settings.bm25_b)

    def search(
        self,
        question: str,
        k: int | None = None,
        *,
        source: str | None = None,
        since: str | dt.date | None = None,
        until: str | dt.date | None = None,
        **options: Any,
    ) -> list[Passage]:
        """The ``k`` paragraphs that best match ``question``, best first.

        ``source`` is a glob on the article's path (``"*/business/*"``); ``since``
        and ``until`` bound the publication date (ISO dates, inclusive). Other
        keyword arguments override retrieval settings for this call
        (``fusion``, ``dense_weight``, ``rrf_k``, ``candidates``; BM25's ``bm25_k1``
        and ``bm25_b`` shape the index, so they are settings of the ``RAG`` object).
        Values are validated as settings and :class:`~rag.types.Filters` are.
        """
        require_question(question)
        filters = Filters.model_validate({"source": source, "since": since, "until": until})
        unknown = set(options) - SEARCH_OVERRIDES
        if unknown:
            raise RagError(
                f"Not a per-search setting: {', '.join(sorted(unknown))}; give it to "
                f"RAG(...) instead (per search: {', '.join(sorted(SEARCH_OVERRIDES))})."
            )
        if k is not None:
            options["k"] = k
        settings = self._with(options)
        if not self.store.has_passages():
            raise EmptyIndex(
                f"The index in {self.folder} has no articles yet: add some with "
                f"`rag ingest PATH --index {self.folder}` (or RAG.ingest)."
            )
        return self.retriever.search(question, SearchOptions.of(settings), filters)

    def _with(self, values: dict[str, Any]) -> Settings:
        """The settings with ``values`` for this call, validated as settings are."""
        if not values:
            return self.settings
        return Settings.model_validate({**self.settings.model_dump(), **values})

    def article(self, article_id: int) -> Article:
        """The article with that id (``Passage.article_id``), with all its paragraphs.

        :class:`ArticleNotFound` when no article has it: removed, or re-ingested since with
        other content (a changed article is stored anew, under a new id).
        """
        found = self.store.article(article_id)
        if found is None:
            raise ArticleNotFound(f"The index in {self.folder} has no article {article_id}.")
        return found

    # --- info ----------------------------------------------------------------------------
    def info(self) -> IndexInfo:
        stats = self.store.stats()
        size = sum(f.stat().st_size for f in index_files(self.folder))
        dimension = self.store.get_meta("embedder_dimension")
        return IndexInfo(
            folder=str(self.folder.resolve()),
            articles=stats.articles,
            paragraphs=stats.paragraphs,
            passages=stats.passages,
            embeddings=stats.embeddings,
            embedder=self.store.get_meta("embedder_name"),
            embedder_dimension=int(dimension) if dimension else None,
            embedder_fingerprint=self.store.get_meta("embedder_fingerprint"),
            vector_index=f"{published_kind(self.store)} ({VECTORS_FILE})",
            lexical_index=LexicalIndex.kind,
            size_bytes=size,
        )

    # --- answers ---------------------------------------------------------------------
    @property
    def generator(self) -> ChatModel:
        """The answering model, prepared (first time only) and loaded on first use."""
        if self._generator is None:
            from rag.generate import load_generator, prepare_model

            # Preparing (first use only) shows its own progress; loading gets a status line.
            s = self.settings
            prepare_model(s.model, s.home, backend=s.backend, progress=s.progress)
            started = time.perf_counter()
            label = self.settings.model
            status = self.console.status(f"Loading the model {label}…")
            with status if self.settings.progress else nullcontext():
                self._generator = load_generator(
                    self.settings.model,
                    self.settings.home,
                    backend=self.settings.backend,
                    progress=False,
                    threads=self.settings.threads,
                )
            if self.settings.progress:
                self.console.print(
                    f"[dim]Model {label} loaded in {time.perf_counter() - started:.1f} s.[/]"
                )
        return self._generator

    @property
    def templates(self) -> Templates:
        if self._templates is None:
            from rag.prompt import load_templates

            self._templates = load_templates(self.settings.prompts_dir)
        return self._templates

    def ask_stream(
        self,
        question: str,
        k: int | None = None,
        *,
        source: str | None = None,
        since: str | dt.date | None = None,
        until: str | dt.date | None = None,
    ) -> Iterator[AnswerItem]:
        """Answer ``question``: yields text pieces as the model writes them, then the Answer.

        With the setting ``best_first`` (the default), the model reads the best paragraph
        alone first; if that gives no supported answer, a :class:`Retry` in the stream
        withdraws the pieces so far, and the pieces of the answer from all the paragraphs
        follow. ``k`` is the most paragraphs given to the model (setting ``passages``);
        the filters are those of :meth:`search`.
        """
        from rag.answer import stream_answer

        started = time.perf_counter()
        most = self._with({} if k is None else {"passages": k}).passages
        passages = self.search(question, k=most, source=source, since=since, until=until)
        timings = {"retrieval": time.perf_counter() - started}
        yield from stream_answer(
            question,
            passages,
            self.generator,
            self.templates,
            max_prompt_tokens=self.settings.max_prompt_tokens,
            max_new_tokens=self.settings.max_new_tokens,
            temperature=self.settings.temperature,
            stop_penalty=self.settings.stop_penalty,
            best_first=self.settings.best_first,
            timings=timings,
            retrieve=lambda part: self.search(
                part, k=most, source=source, since=since, until=until
            ),
        )

    def ask(self, question: str, k: int | None = None, **filters: Any) -> Answer:
        """Answer ``question`` from the indexed articles, with checked paragraph citations."""
        from rag.answer import final_answer

        return final_answer(self.ask_stream(question, k, **filters))

    def chat(self) -> Conversation:
        """A conversation: follow-up questions are read in the context of earlier ones."""
        return Conversation(self)


@dataclass
class Conversation:
    """Several questions to one loaded model; follow-ups are rewritten to stand alone."""

    rag: RAG
    history: list[Answer] = field(default_factory=list)

    def standalone(self, question: str) -> str:
        """The question as it should be searched, given the previous one."""
        from rag.answer import looks_like_follow_up, standalone_question

        if not self.history or not looks_like_follow_up(question):
            return question
        previous = self.history[-1].standalone_question or self.history[-1].question
        return standalone_question(previous, question, self.rag.generator, self.rag.templates)

    def ask_stream(self, question: str, k: int | None = None) -> Iterator[AnswerItem]:
        rewritten = self.standalone(question)
        for item in self.rag.ask_stream(rewritten, k):
            if isinstance(item, Answer):
                item.question = question
                item.standalone_question = rewritten if rewritten != question else None
                self.history.append(item)
            yield item

    def ask(self, question: str, k: int | None = None) -> Answer:
        from rag.answer import final_answer

        return final_answer(self.ask_stream(question, k))
