"""The ``rag`` command: a thin layer over :class:`rag.RAG`.

Options that are settings are generated from :class:`rag.settings.Settings` (name, type,
help text, ``RAG_*`` variable), and the search filters from :class:`rag.types.Filters`, so
each is defined once. Their values are validated by those models, whether they come from an
option or a variable: a bad one is a usage error (exit 2) that names it and says what is
allowed, before any work starts.
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import json
import logging
import os
import re
import sqlite3
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from typer._click import Context as ClickContext  # typer's own click: what commands get
from typer.core import TyperCommand

from rag.answer import final_answer
from rag.api import RAG, Conversation
from rag.errors import RagError
from rag.settings import Settings, problems
from rag.stores.base import Check
from rag.types import Answer, AnswerItem, Filters, IngestReport, Passage, ReadOn, Retry

app = typer.Typer(
    name="rag",
    help=(
        "Ask questions about a collection of news articles and get answers that cite the "
        "paragraphs they come from. Everything runs locally."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help: the rich layout prints a type placeholder even for switches ("--json <bool>").
    rich_markup_mode=None,
)

out = Console(soft_wrap=False)
err = Console(stderr=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
# Short forms of the most typed options; the long form is always the setting's name.
SHORT_FLAGS = {"index": "-i", "k": "-k"}
# The settings that make an embedder, which every command that embeds takes together: an
# index built with one backend can only be searched with it.
EMBED_SETTINGS = ("embedder", "embed_backend", "threads", "home")
# What a search reads: the embedder, the fusion of its two rankings, and BM25's parameters.
SEARCH_SETTINGS = (
    *EMBED_SETTINGS,
    "fusion",
    "dense_weight",
    "rrf_k",
    "candidates",
    "bm25_k1",
    "bm25_b",
)
FILTERS = tuple(Filters.model_fields)
# Which index a command reads or writes: a folder, or a Milvus collection.
INDEX_SETTINGS = ("index", "store", "milvus_uri", "milvus_collection")
# What a distributed ingest takes besides --ray [ADDRESS] (see `ingest`).
RAY_SETTINGS = ("ray_cpus",)
# `--ray` alone: a local cluster.
LOCAL_RAY = "local"


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _option_for(model: type[BaseModel], name: str) -> inspect.Parameter:
    """A typer option for one field of ``model``, typed and described as the field is.

    Bounds are not repeated here: the value goes through ``model`` (see :func:`_build`), so
    an option, a ``RAG_*`` variable and ``RAG(**settings)`` are held to the same rules.
    """
    field = model.model_fields[name]
    annotation: Any = field.annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        # "int | None" in Settings: the option itself takes an int.
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if annotation is dt.date:
        annotation = str  # read by the model, whose message shows the form it wants
    flag = _flag(name)
    if annotation is bool:
        decls = [f"{flag}/--no-{flag[2:]}"]
    else:
        decls = [flag, *([SHORT_FLAGS[name]] if name in SHORT_FLAGS else [])]
    about = field.description or ""
    if model is Settings:
        shown = "" if field.default is None else f"; default {field.default}"
        about += f" [env RAG_{name.upper()}{shown}]"
    option = typer.Option(*decls, help=about, show_default=False)
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[annotation | None, option],
    )


def _usage_error(error: ValidationError, names: dict[str, str]) -> typer.BadParameter:
    """A usage error naming each option (or variable) that was wrong, and why."""
    found = problems(error)
    shown = "; ".join(f"{names.get(name, name)}: {problem}" for name, problem in found.items())
    hint = ", ".join(names.get(name, name) for name in found)
    return typer.BadParameter(
        shown if len(found) > 1 else next(iter(found.values())), param_hint=hint
    )


def _environment() -> Settings:
    """The settings as the ``RAG_*`` variables give them, or a usage error naming the variable."""
    try:
        return Settings()
    except ValidationError as error:
        raise _usage_error(error, {n: f"RAG_{n.upper()}" for n in Settings.model_fields}) from None


def _build(model: type[BaseModel], base: dict[str, Any], given: dict[str, Any]) -> Any:
    """``model`` from ``base`` with the options ``given`` on the command line, validated."""
    values = {k: v for k, v in given.items() if v is not None}
    try:
        return model.model_validate({**base, **values})
    except ValidationError as error:
        names = {n: f"'{_flag(n)}'" for n in model.model_fields}
        names["value"] = " and ".join(names[n] for n in values) or "value"  # values together
        raise _usage_error(error, names) from None


def with_settings(
    *names: str, filters: bool = False
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add options for the named settings (and the search filters); the command receives
    them as ``settings`` (and ``filters``), validated."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(func, eval_str=True)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            given = {n: kwargs.pop(n, None) for n in names}
            kwargs.pop("settings", None)
            settings = _build(Settings, _environment().model_dump(), given)
            if filters:
                wanted = {n: kwargs.pop(n, None) for n in FILTERS}
                kwargs["filters"] = _build(Filters, {}, wanted)
            return func(*args, settings=settings, **kwargs)

        extra = [_option_for(Settings, n) for n in names]
        if filters:
            extra += [_option_for(Filters, n) for n in FILTERS]
        params = [p for p in signature.parameters.values() if p.name not in ("settings", "filters")]
        wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[*params, *extra]
        )
        return wrapper

    return decorate


class _QuietLibraries(logging.Filter):
    """Pass rag's records at its level and other libraries' errors; all of them at debug."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if self.level <= logging.DEBUG:
            return True
        if record.name == "rag" or record.name.startswith("rag."):
            return record.levelno >= self.level
        return record.levelno >= logging.ERROR


@app.callback()
@with_settings("log_level")
def configure(settings: Settings | None = None) -> None:
    """Ask questions about news articles and get answers that cite their paragraphs."""
    assert settings is not None
    level = getattr(logging, settings.log_level.upper())
    root = logging.getLogger()
    # A handler of ours on the root logger: without one, the first library that logs a
    # warning makes Python add a catch-all handler, and every chatty logger (bm25s logs at
    # debug level) would then print.
    for handler in [h for h in root.handlers if getattr(h, "rag_cli", False)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
    handler.addFilter(_QuietLibraries(level))
    handler.rag_cli = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(min(level, logging.WARNING))
    logging.getLogger("rag").setLevel(level)


def friendly_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Print a RagError as one clear message (no traceback) and exit non-zero."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except RagError as exc:
            err.print(f"[bold red]Error:[/] {escape(str(exc))}")
            raise typer.Exit(1) from None
        except sqlite3.DatabaseError as exc:  # a damaged index file, found mid-command
            err.print(
                f"[bold red]Error:[/] the index database is damaged ({escape(str(exc))}). "
                "Run `rag check` to see what is wrong."
            )
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print("[yellow]Interrupted.[/] Work already committed is kept.")
            raise typer.Exit(130) from None

    return wrapper


def _filter_arguments(filters: Filters) -> dict[str, Any]:
    """The search filters as the keyword arguments of RAG.search and RAG.ask_stream."""
    return filters.model_dump()


def display_path(path: str) -> str:
    """A path relative to the working folder when it lies below it (shorter to read)."""
    try:
        return os.path.relpath(path) if path.startswith(os.getcwd() + os.sep) else path
    except ValueError:
        return path


def shorten(text: str, width: int = 160) -> str:
    return text if len(text) <= width else text[: width - 1].rsplit(" ", 1)[0] + " …"


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def print_report(report: IngestReport) -> None:
    err.print(
        f"[bold]Ingest:[/] {report.added} added, {report.updated} updated, "
        f"{report.unchanged} unchanged, {report.removed} removed, "
        f"{len(report.skipped)} skipped, {len(report.failed)} failed; "
        f"{report.paragraphs} paragraphs ({report.embedded} passages embedded) in "
        f"{report.seconds:.1f} s"
        + (f", {report.paragraphs_per_second:.1f} paragraphs/s" if report.embed_seconds else "")
    )
    if report.embedder_seconds >= 1:
        err.print(f"[dim](loading the embedder took {report.embedder_seconds:.1f} s of it)[/]")
    for item in report.skipped:
        err.print(f"  [yellow]skipped[/] {escape(display_path(item.path))}: {escape(item.reason)}")
    for item in report.failed:
        err.print(f"  [red]failed[/] {escape(display_path(item.path))}: {escape(item.reason)}")


def passages_table(passages: list[Passage], width: int = 160) -> Table:
    table = Table(show_lines=True, expand=False)
    for column in ("#", "score", "title", "source", "¶", "date", "text"):
        table.add_column(column, overflow="fold")
    for rank, p in enumerate(passages, start=1):
        table.add_row(
            str(rank),
            f"{p.score:.3f}",
            escape(p.title),
            escape(display_path(p.source)),
            str(p.paragraph),
            (p.published or "")[:10],
            escape(shorten(p.text, width)),
        )
    return table


def _ray_address(arg: str) -> bool:
    """Whether what follows ``--ray`` is a cluster's address rather than a path to ingest."""
    return (
        arg in ("auto", LOCAL_RAY) or "://" in arg or re.fullmatch(r"[\w.-]+:\d+", arg) is not None
    )


class _OptionalValue(TyperCommand):
    """A command whose ``--ray`` may stand alone (a local cluster) or take an address.

    A click option takes a value or none; a bare ``--ray`` (last, or before an option or a
    path) is given the value that means a local cluster before click reads it.
    """

    def parse_args(self, ctx: ClickContext, args: list[str]) -> list[str]:
        given: list[str] = []
        for at, arg in enumerate(args):
            given.append(arg)
            if arg == "--ray" and (at + 1 == len(args) or not _ray_address(args[at + 1])):
                given.append(LOCAL_RAY)
        return super().parse_args(ctx, given)


@app.command(cls=_OptionalValue)
@friendly_errors
@with_settings(
    *INDEX_SETTINGS,
    *EMBED_SETTINGS,
    "batch_size",
    "max_passage_tokens",
    "max_file_mb",
    "bm25_k1",
    "bm25_b",
    "progress",
    "wait",
    "milvus_index",
    *RAY_SETTINGS,
)
def ingest(
    paths: Annotated[
        list[Path], typer.Argument(help="Files and folders (read recursively) to add or update.")
    ],
    json_output: JsonOption = False,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="[ADDRESS]",
            help=(
                "Read and embed on a Ray cluster (pip install 'rag-news[ray]'): --ray alone "
                "starts a local one (--ray-cpus), --ray ADDRESS joins one ('auto', "
                "ray://host:10001). For big ingests only: a Ray run costs seconds of start-up "
                "and of fixed overhead (BENCHMARKS.md). [env RAG_RAY, "
                "RAG_RAY_ADDRESS]"
            ),
        ),
    ] = None,
    settings: Settings | None = None,
) -> None:
    """Add articles (.txt, .md, .html, .jsonl, scraped-article files) to the index.

    A messy folder does not stop an ingest: each file not ingested is listed with its
    reason, as skipped (a type no parser reads, over --max-file-mb, a link to a
    folder, a pipe) or failed (missing, unreadable, empty, binary, no article text,
    a bad JSONL line), and the rest is ingested.

    The first ingest into a folder creates the index there (the folder must be new,
    empty or an index already); with --store milvus, the collection.

    Exit status: 0 every file ingested, unchanged or skipped; 3 some files failed,
    the rest ingested; 1 nothing ingested (every file failed, or none found) or an
    error; 2 a usage error.
    """
    assert settings is not None
    if ray is not None:
        address = None if ray == LOCAL_RAY else ray
        settings = settings.model_copy(update={"ray": True, "ray_address": address})
    with RAG(settings=settings, console=err) as rag:
        report = rag.ingest(list(paths))
    if json_output:
        print_json(report.to_dict())
    else:
        print_report(report)
    # Scripts tell "done", "done but look at the failures" and "did nothing" apart.
    if not (report.added or report.updated or report.unchanged or report.removed):
        if not (report.failed or report.skipped):
            err.print("Nothing ingested: no files found in the given folders.")
        raise typer.Exit(1)
    if report.failed:
        raise typer.Exit(3)


@app.command()
@friendly_errors
@with_settings(*INDEX_SETTINGS, "k", *SEARCH_SETTINGS, filters=True)
def search(
    question: Annotated[str, typer.Argument(help="What to look for, in plain words.")],
    json_output: JsonOption = False,
    settings: Settings | None = None,
    filters: Filters | None = None,
) -> None:
    """Print the paragraphs that best match QUESTION, best first."""
    assert filters is not None
    with RAG(settings=settings, console=err) as rag:
        passages = rag.search(question, **_filter_arguments(filters))
    if json_output:
        print_json([p.to_dict() for p in passages])
        return
    if not passages:
        err.print("No paragraph matches.")
        return
    out.print(passages_table(passages))


@app.command()
@friendly_errors
@with_settings(*INDEX_SETTINGS)
def info(json_output: JsonOption = False, settings: Settings | None = None) -> None:
    """Show what the index holds: articles, paragraphs, embedder, index type, size."""
    with RAG(settings=settings, console=err) as rag:
        details = rag.info()
    if json_output:
        print_json(asdict(details))
        return
    table = Table(show_header=False, box=None)
    table.add_row("index", details.folder)
    table.add_row("articles", f"{details.articles:,}")
    table.add_row("paragraphs", f"{details.paragraphs:,}")
    table.add_row("passages", f"{details.passages:,} ({details.embeddings:,} distinct embedded)")
    embedder = details.embedder or "(none yet)"
    if details.embedder:
        embedder += f", {details.embedder_dimension} dims, weights {details.embedder_fingerprint}"
    table.add_row("embedder", escape(embedder))
    table.add_row("vector index", details.vector_index)
    table.add_row("lexical index", details.lexical_index)
    table.add_row("size on disk", f"{details.size_bytes / 1e6:.1f} MB")
    out.print(table)


@app.command()
@friendly_errors
@with_settings(*INDEX_SETTINGS, *EMBED_SETTINGS, "bm25_k1", "bm25_b", "wait")
def remove(
    source: Annotated[
        str, typer.Argument(help="File path, article source (path#id for JSONL) or glob.")
    ],
    settings: Settings | None = None,
) -> None:
    """Remove articles from the index by file, source or glob."""
    with RAG(settings=settings, console=err) as rag:
        removed = rag.remove(source)
    for item in removed:
        err.print(f"removed {escape(display_path(item))}")
    err.print(f"{len(removed)} article(s) removed.")


@app.command()
@friendly_errors
@with_settings(
    *INDEX_SETTINGS,
    *EMBED_SETTINGS,
    "batch_size",
    "max_passage_tokens",
    "progress",
    "bm25_k1",
    "bm25_b",
    "wait",
)
def rebuild(
    reembed: Annotated[
        bool,
        typer.Option(help="Re-embed every paragraph with the configured --embedder first."),
    ] = False,
    settings: Settings | None = None,
) -> None:
    """Rebuild the FAISS and BM25 files from the database (or re-embed with --reembed)."""
    with RAG(settings=settings, console=err) as rag:
        rag.rebuild(reembed=reembed)
        details = rag.info()
    err.print(f"Rebuilt: {details.paragraphs:,} paragraphs, embedder {details.embedder}.")


@app.command()
@friendly_errors
@with_settings(
    *INDEX_SETTINGS,
    *EMBED_SETTINGS,
    "batch_size",
    "max_passage_tokens",
    "bm25_k1",
    "bm25_b",
    "wait",
)
def check(
    repair: Annotated[
        bool,
        typer.Option(
            help="Mend what fails: re-embed what lacks an embedding and rebuild the FAISS and "
            "BM25 indexes from the database (articles are never touched)."
        ),
    ] = False,
    json_output: JsonOption = False,
    settings: Settings | None = None,
) -> None:
    """Verify the index: database, passages, embedder, FAISS and BM25 agree. Exit 0 if all do.

    Every stored passage must have exactly one vector in FAISS and one BM25 document, and
    nothing else may be there; the vectors must be the stored embeddings; the configured
    embedder must be the one that built the index; SQLite's integrity check must pass.
    Search indexes that an interrupted ingest left behind the database are published
    first (as the next search would), and said so: that is not damage.
    """
    assert settings is not None
    index = settings.index
    with RAG(settings=settings, console=err) as rag:
        report = rag.check(repair=repair)
    if json_output:
        print_json(report.to_dict())
    else:
        for step in report.brought_up_to_date:
            out.print(f"brought up to date: {escape(step)}")
        if report.before_repair:
            out.print(check_table(report.before_repair, "Before repair"))
            for step in report.repaired:
                out.print(f"repaired: {escape(step)}")
        out.print(check_table(report.checks, "Index " + display_path(report.folder)))
        if report.ok:
            out.print("[green]All checks pass.[/]")
        else:
            failed = sum(not c.ok for c in report.checks)
            hint = "" if repair else f" Run: rag check --repair --index {index}"
            out.print(f"[red]{failed} check(s) failed.[/]{escape(hint)}")
    if not report.ok:
        raise typer.Exit(1)


def check_table(checks: list[Check], title: str) -> Table:
    table = Table(title=escape(title), title_justify="left", show_header=False, box=None)
    for item in checks:
        mark = "[green]ok[/]" if item.ok else "[red]FAIL[/]"
        table.add_row(mark, item.name, escape(item.detail))
    return table


# --- answers -----------------------------------------------------------------------------

ANSWER_SETTINGS = (
    "model",
    "max_new_tokens",
    "max_prompt_tokens",
    "temperature",
    "stop_penalty",
    "best_first",
    "read_on_alone",
    "prompts_dir",
    "backend",
    "passages",
    *SEARCH_SETTINGS,
)
_WORD_RE = re.compile(r"[$€£]?\d[\d,.]*%?|[A-Za-z][\w'’-]{3,}")


def render_answer(answer: Answer) -> Text:
    """The answer text; sentences no cited paragraph supports are dimmed and flagged."""
    text = Text(answer.text)
    if answer.abstained:
        text.stylize("italic")
        return text
    flagged = [s for s in answer.sentences if not s.supported]
    for sentence in flagged:
        start = answer.text.find(sentence.text)
        if start >= 0:
            text.stylize("dim strike", start, start + len(sentence.text))
    if flagged:
        text.append("\n(struck through: not supported by the paragraphs)", style="dim")
    return text


def render_sources(answer: Answer) -> Group:
    """`[n] title — source ¶ paragraph (date)` and the paragraph, supporting words highlighted."""
    parts: list[Text] = []
    for citation in answer.citations:
        p = citation.passage
        date = f" ({p.published[:10]})" if p.published else ""
        head = Text(f"[{citation.number}] ", style="bold cyan")
        head.append(p.title, style="bold")
        head.append(f" — {display_path(p.source)} ¶ {p.paragraph}{date}")
        if not citation.supported:
            head.append("  (does not support the sentence citing it)", style="yellow")
        body = Text(p.text)
        words = {
            w.lower()
            for s in answer.sentences
            if citation.number in s.citations
            for w in _WORD_RE.findall(s.text)
        }
        body.highlight_words(
            sorted(words, key=len, reverse=True), "bold green", case_sensitive=False
        )
        parts += [head, body, Text("")]
    return Group(*parts)


def print_answer(answer: Answer, console: Console) -> None:
    console.print(render_answer(answer))
    if answer.citations:
        console.print(Text("\nSources", style="bold underline"))
        console.print(render_sources(answer))
    t = answer.timings
    readings = f", {answer.attempts} readings" if answer.attempts > 1 else ""
    err.print(
        f"[dim]{answer.model}: retrieval {t.get('retrieval', 0):.2f} s, "
        f"reading {t.get('prefill', 0):.1f} s, writing {t.get('generation', 0):.1f} s"
        f"{readings}[/]"
    )
    for reading in answer.readings if answer.attempts > 1 else []:
        verdict = "declined" if reading.abstained else "answered"
        err.print(
            f"[dim]  read {len(reading.passages)} paragraph(s) for: {escape(reading.question)} "
            f"({verdict})[/]"
        )


def stream_to_terminal(stream: typing.Iterator[AnswerItem], console: Console) -> Answer:
    """Show the text live as the model writes it, then replace it with the checked answer."""
    if not console.is_terminal:
        return final_answer(stream)
    written = Text(style="dim")

    def shown() -> typing.Iterator[AnswerItem]:
        nonlocal written
        for item in stream:
            if isinstance(item, Retry):
                written = Text(
                    f"(no supported answer from that reading; reading {item.passages} "
                    f"{'paragraph' if item.passages == 1 else 'paragraphs'})\n",
                    style="dim italic",
                )
                live.update(written)
            elif isinstance(item, ReadOn):
                written.append(
                    f"\n(reading on, {item.passages} more paragraphs, for: {item.part})\n",
                    style="dim italic",
                )
                live.update(written)
            elif isinstance(item, str):
                written.append(item, style="dim")
                live.update(written)
            yield item

    with Live(written, console=console, transient=True, refresh_per_second=8) as live:
        return final_answer(shown())


@app.command()
@friendly_errors
@with_settings(*INDEX_SETTINGS, *ANSWER_SETTINGS, "progress", filters=True)
def ask(
    question: Annotated[str, typer.Argument(help="Your question, in plain words.")],
    json_output: Annotated[bool, typer.Option("--json", help="Print the Answer as JSON.")] = False,
    settings: Settings | None = None,
    filters: Filters | None = None,
) -> None:
    """Answer QUESTION from the indexed articles, citing the paragraphs it uses."""
    assert filters is not None
    with RAG(settings=settings, console=err) as rag:
        stream = rag.ask_stream(question, **_filter_arguments(filters))
        if json_output:
            print_json(final_answer(stream).to_dict())
            return
        answer = stream_to_terminal(stream, out)
    print_answer(answer, out)


CHAT_HELP = """Ask questions one after another; a follow-up ("and Amazon?") is read
in the context of the previous question.
  /sources   show the paragraphs cited by the last answer
  /help      show this help
  /quit      leave (Ctrl-D and Ctrl-C also leave)"""


@app.command()
@friendly_errors
@with_settings(*INDEX_SETTINGS, *ANSWER_SETTINGS, "progress")
def chat(settings: Settings | None = None) -> None:
    """Ask several questions in a row, with the model loaded once."""
    with RAG(settings=settings, console=err) as rag:
        rag.store  # an index must be there before the model is loaded  # noqa: B018
        conversation = rag.chat()
        rag.generator  # load before the first prompt, so the wait is not after a question  # noqa: B018
        out.print(CHAT_HELP, style="dim", markup=False)
        while True:
            try:
                line = out.input("[bold green]? [/]").strip()
            except (EOFError, KeyboardInterrupt):
                out.print()
                break
            if not line:
                continue
            if line in ("/quit", "/exit", "/q"):
                break
            if line == "/help":
                out.print(CHAT_HELP, markup=False)
                continue
            if line == "/sources":
                show_last_sources(conversation)
                continue
            if line.startswith("/"):
                out.print(f"Unknown command {line}; /help lists them.", markup=False)
                continue
            try:
                answer = stream_to_terminal(conversation.ask_stream(line), out)
            except KeyboardInterrupt:
                out.print("[yellow]Stopped.[/]")
                break
            except RagError as exc:
                err.print(f"[bold red]Error:[/] {escape(str(exc))}")
                continue
            if answer.standalone_question:
                err.print(f"[dim](searched for: {escape(answer.standalone_question)})[/]")
            out.print(render_answer(answer))
            out.print()


def show_last_sources(conversation: Conversation) -> None:
    if not conversation.history:
        out.print("No answer yet.")
        return
    last = conversation.history[-1]
    if last.citations:
        out.print(render_sources(last))
    else:
        out.print("The last answer cites no paragraph.")


# --- evaluation --------------------------------------------------------------------------

# Shown as percentages; counts and seconds are printed as they are.
_SHARE_METRICS = (
    "contains",
    "citation_precision",
    "citation_recall",
    "unsupported_citation_rate",
    "declined_unanswerable",
    "false_decline",
    "second_reading",
    "accuracy_single",
    "complete_two_part",
    "complete_cross_article",
    "partial",
    "partial_said",
    "fact_citation",
    "check_kept_right",
    "check_caught_wrong",
)


def metrics_table(metrics: dict[str, Any]) -> Table:
    table = Table(show_header=True, box=None)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        if isinstance(value, float) and value != value:  # NaN: nothing to measure
            shown = "–"
        elif name.endswith("_s"):
            shown = f"{value:.3f} s"
        elif isinstance(value, float):
            is_share = name.startswith(("recall@", "citation_precision")) or name in _SHARE_METRICS
            shown = f"{value:.1%}" if is_share else f"{value:.4f}"
        else:
            shown = f"{value:,}"
        table.add_row(name, shown)
    return table


def kinds_table(rows: list[dict[str, Any]], metrics: dict[str, Any]) -> Table:
    """The news set's figures per kind of question, with the ones over all answers below."""

    def share(value: float) -> str:
        return "–" if value != value else f"{value:.1%}"

    table = Table(title="By kind of question", title_justify="left", box=None)
    for column in ("kind", "n", "score", "what is scored", "citation precision", "median s"):
        table.add_column(
            column, justify="left" if column in ("kind", "what is scored") else "right"
        )
    for row in rows:
        table.add_row(
            row["kind"],
            str(row["n"]),
            share(row["score"]),
            row["what"],
            share(row["citation_precision"]),
            f"{row['median_s']:.1f}",
        )
    table.add_row(
        "all",
        str(metrics["n"]),
        "",
        f"false declines {share(metrics.get('false_decline', float('nan')))}, "
        f"facts cited {share(metrics.get('fact_citation', float('nan')))}, "
        f"partial {share(metrics.get('partial', float('nan')))} "
        f"(said so {share(metrics.get('partial_said', float('nan')))})",
        share(metrics.get("citation_precision", float("nan"))),
        f"{metrics.get('answer_p50_s', float('nan')):.1f}",
    )
    return table


@app.command("eval")
@friendly_errors
@with_settings("progress", *ANSWER_SETTINGS)
def eval_command(
    dataset: Annotated[
        Path,
        typer.Argument(
            help="SQuAD v1.1 JSON (defines its own corpus) or a question set in JSON/JSONL "
            "(question, answers, optional source, paragraph, evidence, answerable)."
        ),
    ],
    index: Annotated[
        Path,
        typer.Option(
            "--index",
            "-i",
            help="Evaluation index folder (the index setting, required here so that no "
            "evaluation lands in your own index): built on the first run, reused after.",
        ),
    ],
    corpus: Annotated[
        list[Path] | None,
        typer.Option(
            "--corpus", help="Files or folders to index too (distractors); repeat for several."
        ),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            help="Questions drawn (with --seed). Default: all with --retrieval-only, else 100."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the question sample.")] = 0,
    holdout: Annotated[
        int,
        typer.Option(
            help="SQuAD only: articles left out of the index; their questions should be declined."
        ),
    ] = 0,
    retrieval_only: Annotated[
        bool, typer.Option("--retrieval-only", help="Measure retrieval only (no model).")
    ] = False,
    out_path: Annotated[
        Path | None,
        typer.Option("--out", help="Write one JSON record per question here (JSONL)."),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the metrics as one JSON object.")
    ] = False,
    settings: Settings | None = None,
) -> None:
    """Measure retrieval recall, answer accuracy, citations and abstention on a question set."""
    from rag.evaluate import evaluate, kind_table, load_dataset

    with RAG(index, settings=settings, console=err, create=True) as rag:
        evalset = load_dataset(dataset, index / "corpus", holdout=holdout, seed=seed)
        if corpus:
            evalset.corpus.extend(corpus)
        if not evalset.corpus and rag.info().paragraphs == 0:
            raise RagError(
                f"The index in {index} is empty and {dataset.name} brings no corpus: "
                "give the articles with --corpus PATH."
            )
        result = evaluate(rag, evalset, limit=limit, seed=seed, retrieval_only=retrieval_only)
    if out_path:
        result.to_jsonl(out_path)
        err.print(f"[dim]{len(result.records)} records written to {escape(str(out_path))}.[/]")
    if json_output:
        metrics = {k: (None if v != v else v) for k, v in result.metrics.items()}  # NaN -> null
        print_json(metrics)
    else:
        out.print(metrics_table(result.metrics))
        rows = kind_table(result.metrics)
        if rows:
            out.print(kinds_table(rows, result.metrics))


models_app = typer.Typer(
    help="List the answering models, or prepare one ahead of time.", no_args_is_help=False
)
app.add_typer(models_app, name="models")


@models_app.callback(invoke_without_command=True)
@friendly_errors
@with_settings("home", "backend")
def models_list(
    ctx: typer.Context, json_output: JsonOption = False, settings: Settings | None = None
) -> None:
    """List the model presets and whether each is prepared."""
    if ctx.invoked_subcommand is not None:
        return
    from rag import models

    assert settings is not None
    home = settings.home
    presets = models.list_presets(home)
    if json_output:
        print_json(presets)
        return
    table = Table()
    for column in ("preset", "size", "prepared", "description"):
        table.add_column(column)
    for p in presets:
        name = p["name"] + (" (default)" if p["default"] else "")
        ready = (
            "[green]yes[/]"
            if p["prepared" if settings.backend == "transformers" else "gguf"]
            else "no"
        )
        table.add_row(name, f"{p['size'] / 1e6:,.0f} MB", ready, escape(p["description"]))
    out.print(table)
    err.print(f"[dim]Prepared models live in {home}/models (RAG_HOME).[/]")


@models_app.command("prepare")
@friendly_errors
@with_settings("model", "backend", "home", "progress")
def models_prepare(
    name: Annotated[
        str | None, typer.Argument(help="Preset name or .gguf path (default: the model setting).")
    ] = None,
    settings: Settings | None = None,
) -> None:
    """Assemble and verify a model once (and convert it, for --backend transformers), so that
    later answers load it in seconds."""
    import time

    from rag.generate import prepare_model

    assert settings is not None
    target = name or settings.model
    started = time.perf_counter()
    path = prepare_model(target, settings.home, settings.backend, progress=settings.progress)
    err.print(f"{target} is ready in {path} ({time.perf_counter() - started:.1f} s).")


@models_app.command("verify")
@friendly_errors
@with_settings("model", "backend", "home", "progress")
def models_verify(
    name: Annotated[
        str | None,
        typer.Argument(help="Preset or gguf-<hash> folder name (default: the model setting)."),
    ] = None,
    repair: Annotated[
        bool, typer.Option(help="Prepare a damaged model again from its packages.")
    ] = True,
    settings: Settings | None = None,
) -> None:
    """Hash every file of a prepared model against the checksums recorded when it was made.

    A normal start only compares sizes and re-hashes files written since; this also finds
    bytes that changed on the disk unseen. Exit 0 intact or repaired, 1 damaged (--no-repair).
    """
    from rag import models

    assert settings is not None
    target = name or settings.model
    check = models.verify if settings.backend == "transformers" else models.verify_gguf
    problem = check(target, settings.home, repair=repair, progress=settings.progress)
    if problem is None:
        err.print(f"{target}: intact (every file matches its recorded SHA-256).")
    elif repair:
        err.print(f"{target} was damaged ({escape(problem)}) and has been prepared again.")
    else:
        err.print(f"[bold red]{target} is damaged:[/] {escape(problem)}")
        raise typer.Exit(1)


# --- serving -----------------------------------------------------------------------------

SERVE_SETTINGS = (
    "host",
    "port",
    "token_for_reads",
    "cors_origins",
    "ingest_root",
    "queue_size",
    "max_body_mb",
    "max_question_chars",
    "max_k",
)


@app.command()
@friendly_errors
@with_settings(*INDEX_SETTINGS, *SERVE_SETTINGS, *ANSWER_SETTINGS, "k", "wait", "progress")
def serve(settings: Settings | None = None) -> None:
    """Serve the index over HTTP: a JSON API with streamed answers, and a web page at /.

    The model and the index are loaded once; a newer index (another process ingested)
    is picked up by itself. Writes (POST /ingest, DELETE /articles/ID) need the token in
    RAG_API_TOKEN (never an option: the command line is visible to other users) and are
    disabled without it. Listens on 127.0.0.1 unless --host says otherwise. The API's
    schema is at /openapi.json, its documentation at /docs.
    """
    from rag.serve import serve as run

    assert settings is not None
    run(settings, err)
