"""The Python API: ``RAG`` opens an index and ingests, searches and answers.

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
from rag.embed import Embedder, EmbedderInfo, backend_of
from rag.errors import (
    ArticleNotFound,
    EmbedderMismatch,
    EmptyIndex,
    RagError,
)
from rag.prompt import require_question
from rag.retrieve import Retriever
from rag.settings import Settings
from rag.stores.base import CheckReport, IndexStore, SearchOptions
from rag.stores.factory import open_store, store_exists
from rag.stores.folder import DB_FILE as DB_FILE  # rag.serve checks for an index with it
from rag.types import Answer, AnswerItem, Article, Filters, IngestReport, Passage

if TYPE_CHECKING:  # loading transformers costs seconds; only ask() needs it
    from rag.generate import ChatModel
    from rag.prompt import Templates
# Retrieval settings one search may override; the rest shape the index or the answer.
SEARCH_OVERRIDES = frozenset({"fusion", "dense_weight", "rrf_k", "candidates"})


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
    """An index of news articles, and everything done with it.

    ``RAG("index")`` opens the index in that folder (or, with ``store="milvus"``, the
    Milvus collection that the ``milvus_*`` settings name). Reading (search, ask, info, check)
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
        self.console = console or Console(stderr=True)
        self._store: IndexStore | None = None
        self._embedder: Embedder | None = None
        self._embedder_checked = False
        self._retriever: Retriever | None = None
        self._generator: ChatModel | None = None
        self._templates: Templates | None = None
        # An index that exists is opened now, so that a damaged or newer one fails at once.
        if create or store_exists(self.settings):
            self._open(create=create)

    @property
    def store(self) -> IndexStore:
        """The index's store; :class:`NoIndex` when there is none (nothing is made)."""
        return self._open(create=False)

    @property
    def where(self) -> str:
        """The index as messages name it: its folder, or its Milvus collection."""
        return self._store.location if self._store is not None else str(self.folder)

    def _open(self, create: bool) -> IndexStore:
        """Open the store, creating an empty index when ``create``."""
        if self._store is None:
            self._store = open_store(
                self.settings, create=create, dimension=lambda: self.embedder.info.dimension
            )
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
        if not self._embedder_checked and (self._store or store_exists(self.settings)):
            self._check_embedder(model.info)
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

    def _check_embedder(self, info: EmbedderInfo) -> None:
        """Refuse an embedder that is not the index's; record it in an index without one."""
        built = self.store.embedder()
        if built is None:
            self.store.record_embedder(info)
            return
        built_with, dimension, fingerprint = built.name, built.dimension, built.fingerprint
        if fingerprint == info.fingerprint and dimension == info.dimension:
            return
        built_backend = backend_of(fingerprint or "")
        raise EmbedderMismatch(
            f"The index in {self.where} was built with the embedder {built_with!r} "
            f"({dimension} dimensions, weights {fingerprint}), but the configured embedder is "
            f"{info.name!r} ({info.dimension} dimensions, weights {info.fingerprint}). "
            f"Either use the embedder that built it (--embedder {built_with!r} --embed-backend "
            f"{built_backend}, or RAG_EMBEDDER={built_with} RAG_EMBED_BACKEND={built_backend}), "
            f"or re-embed the index with the new one: rag rebuild --reembed --index "
            f"{self.where} --embedder {info.name!r} --embed-backend {self.settings.embed_backend}"
        )

    # --- ingest --------------------------------------------------------------------
    def ingest(self, paths: str | Path | Sequence[str | Path]) -> IngestReport:
        """Add or update the articles in ``paths`` (files and folders, read recursively)."""
        if isinstance(paths, str | Path):
            paths = [paths]
        with self._writing("ingest into", create=True):
            if self.settings.ray:
                from rag.distributed import ingest_on_ray

                return ingest_on_ray(paths, self.store, self.settings, self._check_embedder)
            report = ingest_mod.ingest(
                paths,
                self.store,
                lambda: self.embedder,
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
        store = self._open(create=create)  # raises NoIndex before anything is written
        with store.writing(what):
            yield

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
                raise RagError(f"No article in {self.where} comes from {source!s}.")
            self.store.remove(matches)
            self.store.publish()
        return [m[0] for m in matches]

    def rebuild(self, reembed: bool = False) -> None:
        """Rebuild the search indexes from the stored passages; with ``reembed``,
        re-embed every paragraph with the configured embedder first."""
        with self._writing("rebuild"):
            model = self._new_embedder() if reembed else None
            self.store.rebuild(
                model,
                batch_size=self.settings.batch_size,
                max_passage_tokens=self.settings.max_passage_tokens,
                show_progress=self.settings.progress,
            )
            if model is not None:
                self._embedder, self._embedder_checked = model, True

    # --- consistency -------------------------------------------------------------------
    def check(self, repair: bool = False) -> CheckReport:
        """Check that the index is whole and its parts agree; with ``repair``, mend what fails.

        Holds the write lock (a running ingest makes this wait or fail with IndexBusy),
        so the state checked is not one a writer is half-way through changing.
        """
        with self._writing("check"):
            built = self.store.embedder() is not None
            # The raw embedder: self.embedder would refuse a mismatch that check must report.
            model = self._embedder or (self._new_embedder() if built else None)
            return self.store.check(
                model.info if model else None,
                lambda: model or self.embedder,
                repair=repair,
                batch_size=self.settings.batch_size,
                max_passage_tokens=self.settings.max_passage_tokens,
            )

    # --- search ------------------------------------------------------------------------
    @property
    def retriever(self) -> Retriever:
        """The retriever over the store (which searches its newest published state)."""
        if self._retriever is None:
            self._retriever = Retriever(self.store, lambda q: self.embedder.embed([q])[0])
        return self._retriever

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
        store = self.store
        # Asked only when nothing is found: on Milvus Lite even a one-row query costs as much
        # as the search (BENCHMARKS.md, area scale).
        found = self.retriever.search(question, SearchOptions.of(settings), filters)
        if not found and not store.has_passages():
            raise EmptyIndex(
                f"The index in {self.where} has no articles yet: add some with "
                f"`rag ingest PATH {self._index_option()}` (or RAG.ingest)."
            )
        return found

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
            raise ArticleNotFound(f"The index in {self.where} has no article {article_id}.")
        return found

    # --- info ----------------------------------------------------------------------------
    def info(self) -> IndexInfo:
        stats = self.store.stats()
        about = self.store.info()
        built = self.store.embedder()
        return IndexInfo(
            folder=about.location,
            articles=stats.articles,
            paragraphs=stats.paragraphs,
            passages=stats.passages,
            embeddings=stats.embeddings,
            embedder=built.name if built else None,
            embedder_dimension=built.dimension if built and built.dimension else None,
            embedder_fingerprint=built.fingerprint if built else None,
            vector_index=about.vector_index,
            lexical_index=about.lexical_index,
            size_bytes=about.size_bytes,
        )

    def _index_option(self) -> str:
        """The options that name this index on the command line."""
        if self.settings.store == "milvus":
            return f"--store milvus --milvus-uri {self.settings.milvus_uri}"
        return f"--index {self.folder}"

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
            read_on_alone=self.settings.read_on_alone,
            timings=timings,
            retrieve=lambda part, k=None: self.search(
                part, k=k or most, source=source, since=since, until=until
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
