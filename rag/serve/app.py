"""The HTTP API and the web page: a thin layer over :class:`rag.RAG`, as the CLI is.

:func:`create_app` builds the FastAPI application of one index. It opens the index three
times, each :class:`~rag.RAG` used by one thread at a time: a reader for searches, info and
articles (one call at a time, a few milliseconds each), an answerer that holds the model
(one answer at a time, through the :class:`~rag.serve.gate.Gate`), and a writer for ingest
and delete. So a search never waits for an answer, and an ingest holds neither up: each
picks up the index's newest generation by itself, as ``rag chat`` does.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations, and some
# name objects made inside create_app (the token scheme, this server's request models).
import asyncio
import functools
import logging
import shutil
from collections.abc import AsyncIterable, AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.sse import EventSourceResponse, ServerSentEvent
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import ValidationError
from rich.console import Console
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag.api import DB_FILE, RAG, IndexInfo
from rag.errors import (
    ArticleNotFound,
    EmbedderError,
    EmbedderMismatch,
    EmptyIndex,
    EmptyQuestion,
    IndexBusy,
    IndexFormatError,
    ModelError,
    PathOutsideRoot,
    QueueFull,
    RagError,
)
from rag.prompt import require_question
from rag.serve.gate import Gate, Turn
from rag.serve.schemas import (
    AskRequest,
    ErrorBody,
    Health,
    IngestRequest,
    Removed,
    SearchRequest,
    Token,
    request_models,
)
from rag.serve.security import Access, inside_root, upload_name
from rag.serve.worker import Worker
from rag.settings import Settings, problems
from rag.types import Answer, AnswerItem, Article, IngestReport, Passage, ReadOn, Retry

log = logging.getLogger(__name__)
T = TypeVar("T")

STATIC = Path(__file__).with_name("static")
# Uploaded files are kept in the index folder: the index refers to its articles by path, and
# uploading a file of the same name again updates its article.
UPLOADS_DIR = "uploads"
UPLOAD_CHUNK = 1 << 20
MAX_UPLOAD_FILES = 100
# Retry-After for a busy index (another process writes) or a model not loaded: nothing
# says how long that lasts, so a client is told to back off a little, not to hammer.
RETRY_BUSY_S = 5
# How often a plain (not streamed) answer looks whether its client is still there.
DISCONNECT_POLL_S = 0.5
# The page loads nothing from elsewhere, runs no inline script, and inserts article text as
# text: a strict policy costs it nothing and stops injected markup from doing anything.
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# The API documentation pages run FastAPI's inline bootstrap script (their assets are local).
DOCS_PATHS = ("/docs", "/redoc", "/static-offline-docs")

# How each error a user can act on is told over HTTP; the first class in an error's MRO wins.
ERROR_STATUS: dict[type[RagError], int] = {
    EmptyQuestion: 400,
    PathOutsideRoot: 400,
    ArticleNotFound: 404,
    EmptyIndex: 409,  # NoIndex too: there are no articles (yet)
    EmbedderMismatch: 409,
    IndexFormatError: 409,
    IndexBusy: 503,
    QueueFull: 503,
    ModelError: 503,
    EmbedderError: 503,
}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": HTTPStatus(code).phrase}
    for code in (400, 401, 403, 404, 409, 413, 422, 503)
}


def error_response(
    status: int, error: str, detail: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = ErrorBody(error=error, detail=detail).model_dump()
    return JSONResponse(body, status_code=status, headers=headers)


def status_of(error: RagError) -> int:
    for kind in type(error).__mro__:
        if kind in ERROR_STATUS:
            return ERROR_STATUS[kind]
    return 400


def error_body(error: BaseException) -> ErrorBody:
    """What a client is told of an error: a RagError's message, nothing of any other."""
    if isinstance(error, RagError):
        return ErrorBody(error=type(error).__name__, detail=str(error))
    return ErrorBody(error="internal error", detail="The server failed; its log says why.")


class Service:
    """The loaded parts of one server, and what it has done so far."""

    def __init__(self, settings: Settings, console: Console) -> None:
        self.settings = settings
        self.console = console
        self.reader = RAG(settings=settings, console=console)
        self.answerer = RAG(settings=settings, console=console)
        self.writer = RAG(settings=settings, console=console)
        self.gate = Gate(settings.queue_size)
        self.status: str = "loading"
        self.detail: str | None = None
        self.answered = 0
        self.stopped = 0
        self._reads: anyio.CapacityLimiter | None = None
        self._writes: anyio.CapacityLimiter | None = None

    def start(self) -> None:
        """Inside the server's event loop: anyio's limiters belong to one."""
        self._reads = anyio.CapacityLimiter(1)
        self._writes = anyio.CapacityLimiter(1)

    def close(self) -> None:
        for rag in (self.reader, self.answerer, self.writer):
            rag.close()

    async def read(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a read of the reader RAG in a thread, one at a time."""
        assert self._reads is not None
        return await anyio.to_thread.run_sync(
            functools.partial(call, *args, **kwargs), limiter=self._reads
        )

    async def write(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a write of the writer RAG in a thread, one at a time."""
        assert self._writes is not None
        return await anyio.to_thread.run_sync(
            functools.partial(call, *args, **kwargs), limiter=self._writes
        )

    @property
    def has_index(self) -> bool:
        return (self.reader.folder / DB_FILE).exists()

    async def load(self) -> None:
        """Load the embedders and the model once, before the first question is answered.

        The model loads in a turn of its own, so questions asked meanwhile wait in line.
        """
        try:
            await self.read(lambda: self.reader.embedder)
            turn = self.gate.reserve()
            await turn.wait()
            try:
                await asyncio.to_thread(self._load_answerer)
            finally:
                turn.done()
        except Exception as error:
            self.status, self.detail = "failed", str(error)
            log.exception("loading failed")
            return
        self.status = "ready"

    def _load_answerer(self) -> None:
        self.answerer.embedder  # noqa: B018 - loads it
        self.answerer.generator  # noqa: B018
        self.answerer.templates  # noqa: B018

    def health(self) -> Health:
        return Health(
            status=self.status,  # type: ignore[arg-type]  # one of Health.status's values
            detail=self.detail,
            model=self.settings.model,
            index=self.has_index,
            generating=self.gate.busy,
            queued=self.gate.queued,
            queue_size=self.gate.queue_size,
            answered=self.answered,
            stopped=self.stopped,
        )

    async def take_turn(self, question: str) -> Turn:
        """A place in line for one answer: refused at once when the question cannot be
        answered (empty question, no articles) or the line is full."""
        require_question(question)
        if self.status == "failed":
            raise ModelError(f"The model could not be loaded: {self.detail}")
        if not await self.read(lambda: self.reader.store.has_passages()):
            raise EmptyIndex(
                f"The index in {self.reader.folder} has no articles yet: add some with "
                "POST /ingest or `rag ingest PATH`."
            )
        return self.gate.reserve()

    async def answer(self, turn: Turn, body: AskRequest) -> AsyncIterator[AnswerItem]:
        """The answer stream of ``body`` in ``turn``: text pieces, a Retry, the Answer.

        The model runs in a worker thread; when the consumer stops early (the client went
        away) the worker closes the stream at the next piece, and the turn ends when it has.
        """
        loop = asyncio.get_running_loop()
        worker: Worker[AnswerItem] | None = None
        try:
            await turn.wait()
            if self.status == "failed":
                raise ModelError(f"The model could not be loaded: {self.detail}")

            def finished(stopped: bool) -> None:
                if stopped:
                    loop.call_soon_threadsafe(self._count_stopped)
                turn.done_threadsafe()

            worker = Worker(
                lambda: self.answerer.ask_stream(body.question, body.passages, **body.filters()),
                finished,
                name="rag-answer",
            )
            async for item in worker.items():
                yield item
            self.answered += 1
        finally:
            if worker is None:
                turn.done()
            else:
                worker.stop()

    def _count_stopped(self) -> None:
        self.stopped += 1
        log.info("a client went away: its answer was stopped")


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes (413), declared or streamed, unread."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.limit
            except ValueError:
                await error_response(400, "bad request", "Content-Length is not a number.")(
                    scope, receive, send
                )
                return
            if too_big:
                await self._refuse(scope, receive, send)
                return
        received = 0
        over = False

        async def counted() -> Message:
            # Past the limit the app is told the body ended, and its answer is replaced below:
            # FastAPI turns an error raised while it reads a body into its own 400.
            nonlocal received, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    over = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        refused = False

        async def answered(message: Message) -> None:
            nonlocal refused
            if not over:
                await send(message)
            elif not refused and message["type"] == "http.response.start":
                refused = True
                await self._refuse(scope, receive, send)

        await self.app(scope, counted, answered)

    def _message(self) -> str:
        return (
            f"The request body is over {self.limit / 1e6:g} MB, the most this server reads "
            "(setting max_body_mb)."
        )

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        await error_response(413, HTTPStatus(413).phrase, self._message())(scope, receive, send)


# SQLite's row ids: a larger number would fail in the driver, not as "no such article".
ArticleId = Annotated[int, PathParam(ge=1, le=2**63 - 1, description="Passage.article_id")]


@dataclass
class Asked:
    """A question that has a place in line."""

    body: AskRequest
    turn: Turn


class SecurityHeaders:
    """Headers on every response: no type sniffing, no referrer, and the page's strict
    Content-Security-Policy (not on the API documentation pages, which run inline script).

    Plain ASGI rather than ``@app.middleware``: Starlette's BaseHTTPMiddleware keeps an
    endpoint from seeing that its client went away, and ``/ask`` must see it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
        if not str(scope["path"]).startswith(DOCS_PATHS):
            extra.append((b"content-security-policy", PAGE_POLICY.encode()))

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                added = [(name, value) for name, value in extra if name not in present]
                message = {**message, "headers": [*message.get("headers", []), *added]}
            await send(message)

        await self.app(scope, receive, with_headers)


def _with_body(endpoint: Callable[..., Any], model: type[Any]) -> Callable[..., Any]:
    """``endpoint`` reading its ``body`` as ``model`` (this server's limits, see
    :func:`rag.serve.schemas.request_models`); FastAPI reads the annotation."""
    endpoint.__annotations__["body"] = model
    return endpoint


def create_app(settings: Settings | None = None, console: Console | None = None) -> FastAPI:
    """The application serving the index of ``settings`` (default: from ``RAG_*``)."""
    settings = settings or Settings()
    console = console or Console(stderr=True)
    access = Access(settings.api_token, settings.token_for_reads)
    root = (settings.ingest_root or Path.cwd()).expanduser().resolve()
    service = Service(settings, console)
    search_model, ask_model = request_models(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start()
        loading = asyncio.create_task(service.load())
        try:
            yield
        finally:
            loading.cancel()
            service.close()

    app = FastAPIOffline(
        title="rag",
        summary="Questions answered from news articles, citing the paragraphs they come from.",
        version="1",
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
    )
    app.state.service = service
    bearer = HTTPBearer(
        auto_error=False,
        description="RAG_API_TOKEN: needed for writes, and for reads with token_for_reads.",
    )

    Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]

    def reads(credentials: Credentials) -> None:
        access.check_read(credentials)

    def writes(credentials: Credentials) -> None:
        access.check_write(credentials)

    read_access, write_access = [Depends(reads)], [Depends(writes)]

    # --- errors: always JSON {"error", "detail"} --------------------------------------
    @app.exception_handler(RagError)
    async def rag_error(request: Request, error: RagError) -> JSONResponse:
        headers = None
        if isinstance(error, QueueFull):
            headers = {"Retry-After": str(error.retry_after)}
        elif isinstance(error, IndexBusy | ModelError):
            headers = {"Retry-After": str(RETRY_BUSY_S)}
        return error_response(status_of(error), type(error).__name__, str(error), headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        detail = [
            {
                "field": ".".join(str(part) for part in item.get("loc", ())),
                "problem": str(item.get("msg", "")).removeprefix("Value error, "),
            }
            for item in error.errors()
        ]
        return error_response(422, "invalid request", detail)

    @app.exception_handler(ValidationError)
    async def invalid_value(request: Request, error: ValidationError) -> JSONResponse:
        return error_response(422, "invalid request", problems(error))

    @app.exception_handler(StarletteHTTPException)  # FastAPI's, and the router's own 404/405
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        headers = dict(error.headers) if error.headers else None
        return error_response(
            error.status_code, HTTPStatus(error.status_code).phrase, error.detail, headers
        )

    @app.exception_handler(Exception)
    async def server_error(request: Request, error: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=error)
        return error_response(500, **error_body(error).model_dump())

    # --- the page ------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    # --- reads ---------------------------------------------------------------------------
    @app.get("/health", tags=["server"])
    async def health() -> Health:
        """Whether the model is loaded ('loading', 'ready'), and how many questions wait."""
        return service.health()

    @app.get("/info", tags=["index"], dependencies=read_access)
    async def info() -> IndexInfo:
        """What the index holds, as `rag info --json` prints it."""
        return await service.read(service.reader.info)

    async def search(body: SearchRequest) -> list[Passage]:
        """The paragraphs that best match the question, best first (as `rag search --json`)."""
        return await service.read(service.reader.search, body.question, body.k, **body.filters())

    app.post("/search", tags=["answers"], dependencies=read_access)(
        _with_body(search, search_model)
    )

    async def ask_turn(body: AskRequest) -> AsyncIterator[Asked]:
        """The question and its place in line: refusals come here, before any response."""
        turn = await service.take_turn(body.question)
        try:
            yield Asked(body, turn)
        finally:
            if turn.started is None:  # never answered (the request ended first): leave the line
                turn.done()

    Question = Annotated[Asked, Depends(_with_body(ask_turn, ask_model))]

    @app.post("/ask", tags=["answers"], dependencies=read_access)
    async def ask(request: Request, question: Question) -> Answer:
        """The whole checked answer, as `rag ask --json` prints it.

        Waits for the model (one answer at a time; 503 with Retry-After when the line is
        full). A client that goes away stops the model.
        """
        answer: Answer | None = None
        failed: Exception | None = None
        async with anyio.create_task_group() as group:

            async def watch() -> None:
                while not await request.is_disconnected():
                    await anyio.sleep(DISCONNECT_POLL_S)
                group.cancel_scope.cancel()

            group.start_soon(watch)
            try:
                async for item in service.answer(question.turn, question.body):
                    if isinstance(item, Answer):
                        answer = item
            except Exception as error:  # raised as itself below, not inside an ExceptionGroup
                failed = error
            group.cancel_scope.cancel()
        if failed is not None:
            raise failed
        if answer is None:  # nobody reads this: the client has gone
            raise RagError("The client went away before the answer was ready.")
        return answer

    @app.post(
        "/ask/stream",
        tags=["answers"],
        dependencies=read_access,
        response_class=EventSourceResponse,
    )
    async def ask_stream(question: Question) -> AsyncIterable[ServerSentEvent]:
        """The answer as Server-Sent Events: ``token`` pieces as the model writes them, then
        ``answer`` (the checked Answer, as POST /ask returns it).

        ``retry`` (a Retry: the text so far is withdrawn, the model reads other paragraphs)
        and ``read_on`` (a ReadOn: a part of the question is still unanswered, the model reads
        for it and what it writes is added) may come between; ``error`` (an ErrorBody) ends
        a stream that failed. Refusals (empty question, no articles, a full line) are plain
        JSON errors before any event.
        Disconnecting stops the model at its next token.
        """
        try:
            async for item in service.answer(question.turn, question.body):
                if isinstance(item, str):
                    yield ServerSentEvent(event="token", data=Token(text=item))
                elif isinstance(item, Retry):
                    yield ServerSentEvent(event="retry", data=item)
                elif isinstance(item, ReadOn):
                    yield ServerSentEvent(event="read_on", data=item)
                else:
                    yield ServerSentEvent(event="answer", data=item)
        except Exception as error:
            if not isinstance(error, RagError):
                log.error("an answer stream failed", exc_info=error)
            yield ServerSentEvent(event="error", data=error_body(error))

    @app.get("/articles/{article_id}", tags=["index"], dependencies=read_access)
    async def article(article_id: ArticleId) -> Article:
        """An article with all its paragraphs (``Passage.article_id`` names it)."""
        return await service.read(service.reader.article, article_id)

    # --- writes --------------------------------------------------------------------------
    @app.post(
        "/ingest",
        tags=["index"],
        dependencies=write_access,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": IngestRequest.model_json_schema()},
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "files": {
                                    "type": "array",
                                    "items": {"type": "string", "format": "binary"},
                                }
                            },
                            "required": ["files"],
                        }
                    },
                },
            }
        },
    )
    async def ingest(request: Request) -> IngestReport:
        """Add or update articles: JSON ``{"paths": [...]}`` naming files and folders under
        the ingest root, or a multipart upload of files (field ``files``), kept in the
        index folder's ``uploads/``. Needs the API token."""
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "multipart/form-data":
            paths = await save_uploads(request)
        elif kind in ("application/json", ""):
            try:
                given = IngestRequest.model_validate_json(await request.body())
            except ValidationError as error:
                raise RequestValidationError(error.errors()) from None
            paths = [inside_root(p, root) for p in given.paths]
        else:
            raise HTTPException(415, "Send JSON {'paths': [...]} or a multipart file upload.")
        return await service.write(service.writer.ingest, paths)

    async def save_uploads(request: Request) -> list[Path]:
        async with request.form(max_files=MAX_UPLOAD_FILES, max_fields=10) as form:
            files = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
            if not files:
                raise RagError("A multipart upload needs one or more files in the field 'files'.")
            names = [upload_name(f.filename) for f in files]
            # The index must exist before its folder holds anything else (see rag.api).
            await service.write(lambda: RAG(settings=settings, create=True).close())
            folder = service.writer.folder / UPLOADS_DIR
            folder.mkdir(exist_ok=True)
            saved = []
            for upload, name in zip(files, names, strict=True):
                target = folder / name
                await anyio.to_thread.run_sync(copy_upload, upload, target)
                saved.append(target)
        return saved

    @app.delete("/articles/{article_id}", tags=["index"], dependencies=write_access)
    async def delete_article(article_id: ArticleId) -> Removed:
        """Remove one article from the index. Needs the API token."""

        def remove() -> list[str]:
            found = service.writer.article(article_id)
            return service.writer.remove(glob_literal(found.source))

        return Removed(removed=await service.write(remove))

    app.add_middleware(SecurityHeaders)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(BodyLimit, limit=int(settings.max_body_mb * 1e6))
    return app


def copy_upload(upload: UploadFile, target: Path) -> None:
    """Write an upload (spooled by the form parser) to ``target``, replacing it whole."""
    partial = target.with_name(f".{target.name}.part")
    upload.file.seek(0)
    with partial.open("wb") as out:
        shutil.copyfileobj(upload.file, out, UPLOAD_CHUNK)
    partial.replace(target)


def glob_literal(source: str) -> str:
    """``source`` as a glob that matches only itself: ``RAG.remove`` takes globs too."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in source)
