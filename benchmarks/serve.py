"""Benchmark area 'serve': search latency over HTTP while the model answers.

A real ``rag serve`` process with the tiny model listens on a free loopback port;
``SEARCHERS`` clients search while ``ASKERS`` ask for streamed answers (one answer at a
time is generated, the rest wait in the bounded queue or are refused with the documented
503). Every request loop is bounded in count and time, and only 127.0.0.1 is contacted.
Searches are timed end to end (HTTP, JSON, the query's embedding, the search): from one
client alone, from all of them with no question being answered (the server searches one
at a time, so each waits for those ahead), then while answers are written.

The same :class:`ServerProcess` and :func:`load` drive the server's tests
(``tests/test_serve_*.py``), which assert behaviour only.

    .venv/bin/python -m benchmarks --only serve
    .venv/bin/python -m benchmarks --only serve --quick   # the sample article alone
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from benchmarks.common import BBC, SAMPLE_ARTICLES, SAMPLE_QUESTION, BenchContext, percentile

TINY = "smollm2-135m"
SEARCHERS = 20
ASKERS = 4
QUESTIONS = (
    SAMPLE_QUESTION,
    "Which companies invested in Anthropic?",
    "What did the company report about its profits?",
    "How did the markets react to the interest rate decision?",
    "Who is the chief executive?",
)

KEYS = {
    "serve_model": "generator of the server under load (the tiny model)",
    "serve_passages": "passages in the index it serves",
    "serve_search_single_p50_ms": "POST /search, one client alone, median ms (one search's cost)",
    "serve_search_idle_p50_ms": f"POST /search, {SEARCHERS} clients, no answer running, median ms",
    "serve_search_idle_p95_ms": "the same, 95th percentile ms",
    "serve_search_p50_ms": f"POST /search, {SEARCHERS} clients while {ASKERS} ask, median ms",
    "serve_search_p95_ms": "the same, 95th percentile ms",
    "serve_searches_timed": "searches timed while an answer was being generated",
    "serve_asks_answered": f"of {ASKERS} streamed questions, answered (200, answer event last)",
    "serve_asks_refused": f"of {ASKERS}, refused with 503 and Retry-After (queue full)",
}


def rag_command() -> str:
    """The installed ``rag`` entry point beside this Python (what users type)."""
    return str(Path(sys.executable).with_name("rag"))


def free_port() -> int:
    """A loopback port free a moment ago (uvicorn's command line cannot take port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServerProcess:
    """``rag serve`` in a process of its own on a free loopback port, ready when entered.

    Output goes to ``log``; a port taken between the probe and the bind is retried on
    another. Every wait is bounded; leaving stops the process (SIGTERM, then SIGKILL).
    """

    def __init__(
        self,
        index: Path,
        *args: str,
        log: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        ready_timeout_s: float = 300.0,
    ) -> None:
        self.index = index
        self.args = args
        self.log = log
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.ready_timeout_s = ready_timeout_s
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        for _ in range(3):
            self.port = free_port()
            command = [rag_command(), "serve", "--index", str(self.index), "--port", str(self.port)]
            with self.log.open("ab") as out:
                self.process = subprocess.Popen(
                    [*command, *self.args],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=self.env,
                    cwd=self.cwd,
                )
            if self._wait_ready():
                return
            self.stop()
        raise RuntimeError(f"rag serve found no free port; its log:\n{self.output()[-3000:]}")

    def _wait_ready(self) -> bool:
        """True once /health says ready; False if the port was taken; raises otherwise."""
        import httpx

        assert self.process is not None
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                text = self.output()
                if "address already in use" in text.lower():
                    return False
                raise RuntimeError(
                    f"rag serve exited with {self.process.returncode}:\n{text[-3000:]}"
                )
            with contextlib.suppress(httpx.TransportError, ValueError):
                state = httpx.get(f"{self.url}/health", timeout=5).json()
                if state["status"] == "ready":
                    return True
                if state["status"] == "failed":
                    raise RuntimeError(f"rag serve could not load: {state['detail']}")
            time.sleep(0.25)
        raise TimeoutError(
            f"rag serve not ready in {self.ready_timeout_s} s:\n{self.output()[-3000:]}"
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def sse_events(lines: Iterable[str]) -> Iterator[tuple[str, Any]]:
    """(event, decoded JSON data) of a Server-Sent Events stream, given its lines."""
    event, data = "message", []
    for line in lines:
        if not line:
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith(":"):
            continue  # a keep-alive comment
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
    if data:
        yield event, json.loads("\n".join(data))


@dataclass
class Asked:
    """One streamed question under load: what came back."""

    status: int
    started: float
    ended: float
    retry_after: str | None = None
    events: list[str] = field(default_factory=list)
    answer: dict[str, Any] | None = None
    error: Any = None


@dataclass
class Searched:
    status: int
    started: float
    seconds: float


@dataclass
class Load:
    searches: list[Searched]
    asks: list[Asked]

    def during_answers(self) -> list[float]:
        """Seconds of the searches that started while some answer stream was open."""
        open_streams = [(a.started, a.ended) for a in self.asks if a.status == 200]
        return [
            s.seconds
            for s in self.searches
            if any(start <= s.started <= end for start, end in open_streams)
        ]


def ask_streamed(url: str, question: str, timeout_s: float, headers: dict[str, str]) -> Asked:
    """POST /ask/stream and read it to the end (or the refusal)."""
    import httpx

    started = time.monotonic()
    body = {"question": question}
    with (
        httpx.Client(timeout=timeout_s, headers=headers) as client,
        client.stream("POST", f"{url}/ask/stream", json=body) as response,
    ):
        if response.status_code != 200:
            response.read()
            return Asked(
                response.status_code,
                started,
                time.monotonic(),
                retry_after=response.headers.get("retry-after"),
                error=response.json(),
            )
        asked = Asked(200, started, 0.0)
        for event, data in sse_events(response.iter_lines()):
            asked.events.append(event)
            if event == "answer":
                asked.answer = data
            elif event == "error":
                asked.error = data
    asked.ended = time.monotonic()
    return asked


def load(
    url: str,
    *,
    searchers: int = SEARCHERS,
    askers: int = ASKERS,
    searches_each: int = 10,
    questions: tuple[str, ...] = QUESTIONS,
    deadline_s: float = 300.0,
    headers: dict[str, str] | None = None,
) -> Load:
    """``searchers`` clients search (``searches_each`` times each) while ``askers`` ask.

    The askers start first; each searcher starts once the model is busy, so that the
    searches meet generation. Bounded: each client stops at ``deadline_s`` at the latest.
    """
    import httpx

    headers = headers or {}
    deadline = time.monotonic() + deadline_s
    searches: list[Searched] = []
    asks: list[Asked] = []
    lock = threading.Lock()

    def asker(n: int) -> None:
        remaining = max(1.0, deadline - time.monotonic())
        result = ask_streamed(url, questions[n % len(questions)], remaining, headers)
        with lock:
            asks.append(result)

    def searcher(n: int) -> None:
        with httpx.Client(timeout=60, headers=headers) as client:
            for i in range(searches_each):
                if time.monotonic() > deadline:
                    return
                question = questions[(n + i) % len(questions)]
                started = time.monotonic()
                response = client.post(f"{url}/search", json={"question": question, "k": 5})
                with lock:
                    searches.append(
                        Searched(response.status_code, started, time.monotonic() - started)
                    )

    ask_threads = [threading.Thread(target=asker, args=(n,)) for n in range(askers)]
    for thread in ask_threads:
        thread.start()
    if askers:
        wait_until_generating(url, headers, min(60.0, deadline_s))
    search_threads = [threading.Thread(target=searcher, args=(n,)) for n in range(searchers)]
    for thread in search_threads:
        thread.start()
    for thread in [*ask_threads, *search_threads]:
        thread.join(timeout=max(0.0, deadline - time.monotonic()) + 30)
    return Load(searches, asks)


def wait_until_generating(url: str, headers: dict[str, str], timeout_s: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/health", timeout=5, headers=headers).json()["generating"]:
                return
        time.sleep(0.05)


def run(ctx: BenchContext) -> dict[str, float | int | str | None]:
    from rag import RAG

    folder = ctx.folder("serve")
    corpus = [*sorted(SAMPLE_ARTICLES.glob("*.txt"))]
    if not ctx.quick and BBC.exists():
        corpus.append(BBC / "business")
    index = folder / "index"
    with RAG(index, progress=False) as rag:
        report = rag.ingest(corpus)
        passages = rag.info().passages
    ctx.log(f"serve index: {report.added} added, {report.unchanged} unchanged, {passages} passages")
    # Short answers: the figure is the searches' latency beside generation, not the answers'.
    args = ("--model", TINY, "--max-new-tokens", "48", "--queue-size", "2", "--no-progress")
    with ServerProcess(index, *args, log=folder / "server.log", cwd=folder) as server:
        single = load(server.url, searchers=1, askers=0, searches_each=20 if ctx.quick else 50)
        idle = load(server.url, askers=0, searches_each=5 if ctx.quick else 10)
        loaded = load(server.url, searches_each=10 if ctx.quick else 25)
    single_s = [s.seconds for s in single.searches if s.status == 200]
    idle_s = [s.seconds for s in idle.searches if s.status == 200]
    during = loaded.during_answers()
    ms = 1000.0
    return {
        "serve_model": TINY,
        "serve_passages": passages,
        "serve_search_single_p50_ms": percentile(single_s, 50) * ms,
        "serve_search_idle_p50_ms": percentile(idle_s, 50) * ms,
        "serve_search_idle_p95_ms": percentile(idle_s, 95) * ms,
        "serve_search_p50_ms": percentile(during, 50) * ms,
        "serve_search_p95_ms": percentile(during, 95) * ms,
        "serve_searches_timed": len(during),
        "serve_asks_answered": sum(a.answer is not None for a in loaded.asks),
        "serve_asks_refused": sum(a.status == 503 for a in loaded.asks),
    }
