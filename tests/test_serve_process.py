"""`rag serve` as a real process on a free loopback port, talked to over real HTTP.

Two servers with the tiny model: one answering briefly, one whose answers run long (the
end-of-answer token is penalised away), so that a stream is still open while the queue
and a disconnect are tried. Every network wait is bounded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import QUESTION, SAMPLE_NAME
from pydantic import TypeAdapter

from benchmarks.serve import TINY, ServerProcess, rag_command, sse_events
from rag import RAG, Answer

TOKEN = "process-token-41c9"
WRITE = {"Authorization": f"Bearer {TOKEN}"}
TIMEOUT = httpx.Timeout(120, connect=10)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, sample_article: Path, bbc_dir: Path) -> Path:
    """The folder the servers are started in (so their ingest root), with an index."""
    top = tmp_path_factory.mktemp("serve-process")
    root = top / "root"
    (root / "articles").mkdir(parents=True)
    shutil.copy(sample_article, root / "articles" / SAMPLE_NAME)
    shutil.copy(bbc_dir / "business" / "001.txt", root / "articles" / "001.txt")
    (root / "later").mkdir()
    shutil.copy(bbc_dir / "tech" / "001.txt", root / "later" / "tech-001.txt")
    (top / "outside").mkdir()
    (top / "outside" / "secret.txt").write_text("Private\n\nThe vault code is 7731.\n")
    (root / "away").symlink_to(top / "outside")
    with RAG(root / "index", progress=False) as rag:
        rag.ingest(root / "articles")
    return root


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[ServerProcess]:
    args = ("--model", TINY, "--max-new-tokens", "24", "--max-body-mb", "1", "--no-progress")
    log = root.parent / "server.log"
    with ServerProcess(
        root / "index", *args, log=log, env={"RAG_API_TOKEN": TOKEN}, cwd=root
    ) as running:
        yield running


@pytest.fixture(scope="module")
def long_server(root: Path) -> Iterator[ServerProcess]:
    """Answers that run on (600 tokens, the model cannot stop early), and no queue."""
    args = ("--model", TINY, "--max-new-tokens", "600", "--stop-penalty", "100")
    args += ("--queue-size", "0", "--no-progress", "--no-best-first")
    with ServerProcess(root / "index", *args, log=root.parent / "long.log", cwd=root) as running:
        yield running


def first_token(response: httpx.Response) -> Iterator[tuple[str, object]]:
    events = sse_events(response.iter_lines())
    kind, data = next(events)
    assert kind == "token", (kind, data)
    return events


def wait_idle(url: str, timeout_s: float = 60) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = httpx.get(f"{url}/health", timeout=10).json()
        if not state["generating"]:
            return state
        time.sleep(0.1)
    raise TimeoutError(f"the model was still busy after {timeout_s} s")


# --- the brief server ---------------------------------------------------------------------------


def test_search_and_ask_over_http(server: ServerProcess, root: Path) -> None:
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
        found = client.post("/search", json={"question": QUESTION, "k": 2})
        assert found.status_code == 200
        with RAG(root / "index", progress=False) as rag:
            expected = rag.search(QUESTION, k=2)
        assert [p["paragraph"] for p in found.json()] == [p.paragraph for p in expected]
        asked = client.post("/ask", json={"question": QUESTION})
        assert asked.status_code == 200, asked.text
        answer = TypeAdapter(Answer).validate_python(asked.json())
        assert answer.model == TINY and answer.passages and answer.text
        info = client.get("/info").json()
        assert info["articles"] == 2 and info["folder"] == str((root / "index").resolve())


def test_the_stream_sends_tokens_while_the_model_writes_then_the_answer(
    server: ServerProcess,
) -> None:
    with (
        httpx.Client(base_url=server.url, timeout=TIMEOUT) as client,
        client.stream("POST", "/ask/stream", json={"question": QUESTION}) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = first_token(response)
        # A token came while the model is still at work: streamed, not buffered to the end.
        assert client.get("/health").json()["generating"] is True
        rest = list(events)
    kinds = [kind for kind, _ in rest]
    assert kinds and kinds[-1] == "answer" and kinds.count("answer") == 1, kinds
    assert set(kinds[:-1]) <= {"token", "retry"}, kinds
    TypeAdapter(Answer).validate_python(rest[-1][1])


def test_writes_over_http_need_the_token(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
        body = {"paths": ["articles"]}
        assert client.post("/ingest", json=body).status_code == 401
        refused = client.post("/ingest", json=body, headers={"Authorization": "Bearer guess"})
        assert refused.status_code == 401 and refused.json()["error"] == "Unauthorized"
        assert (
            client.delete("/articles/1", headers={"Authorization": "Bearer guess"}).status_code
            == 401
        )
        done = client.post("/ingest", json=body, headers=WRITE)
        assert done.status_code == 200 and done.json()["unchanged"] == 2


@pytest.mark.parametrize(
    "path", ["../outside/secret.txt", "away", "away/secret.txt", "articles/../..", "/etc/passwd"]
)
def test_path_traversal_is_refused(server: ServerProcess, path: str) -> None:
    # The ingest root is the folder the server was started in; "away" links out of it.
    response = httpx.post(
        f"{server.url}/ingest", json={"paths": [path]}, headers=WRITE, timeout=TIMEOUT
    )
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "PathOutsideRoot" and "outside the ingest root" in body["detail"]


def test_an_oversized_body_is_refused(server: ServerProcess) -> None:
    big = b'{"question": "' + b"x" * 1_500_000 + b'"}'
    response = httpx.post(
        f"{server.url}/search",
        content=big,
        headers={"Content-Type": "application/json"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 413
    assert response.json()["error"] == "Request Entity Too Large"
    assert httpx.get(f"{server.url}/health", timeout=TIMEOUT).status_code == 200


def test_a_newer_index_is_picked_up_by_itself(server: ServerProcess, root: Path) -> None:
    question = {"question": "What does the tech story say?", "k": 10}
    before = httpx.post(f"{server.url}/search", json=question, timeout=TIMEOUT).json()
    assert not any("tech-001" in p["source"] for p in before)
    # Another process ingests into the index the server has open.
    command = [rag_command(), "ingest", str(root / "later"), "--index", str(root / "index")]
    subprocess.run(command, check=True, capture_output=True, timeout=300, env=os.environ)
    after = httpx.post(f"{server.url}/search", json=question, timeout=TIMEOUT).json()
    assert any("tech-001" in p["source"] for p in after)
    assert httpx.get(f"{server.url}/info", timeout=TIMEOUT).json()["articles"] == 3


# --- the long-answering server ---------------------------------------------------------------


def test_a_full_queue_is_503_with_retry_after_and_searches_do_not_wait(
    long_server: ServerProcess,
) -> None:
    url = long_server.url
    with (
        httpx.Client(base_url=url, timeout=TIMEOUT) as client,
        client.stream("POST", "/ask/stream", json={"question": QUESTION}) as response,
    ):
        # Held until the end: a dropped iterator closes the connection (httpcore closes it
        # when its stream generator is closed), which would stop the answer being waited on.
        events = first_token(response)
        for path in ("/ask", "/ask/stream"):
            refused = client.post(path, json={"question": "Who invested?"})
            assert refused.status_code == 503, (path, refused.text)
            assert int(refused.headers["retry-after"]) >= 1
            assert refused.json()["error"] == "QueueFull"
        # Asked before the search: on busy cores the answer may be done by the time it returns.
        state = client.get("/health").json()
        assert state["generating"] and state["queued"] == 0 and state["queue_size"] == 0
        # Not queued behind the answer being written.
        found = client.post("/search", json={"question": QUESTION, "k": 1}, timeout=30)
        assert found.status_code == 200 and found.json()[0]["paragraph"] == 10
        assert next(events)[0] == "token"  # the answer went on meanwhile
    wait_idle(url)


def test_a_client_that_disconnects_stops_the_generation(long_server: ServerProcess) -> None:
    url = long_server.url
    stopped_before = wait_idle(url)["stopped"]
    with (
        httpx.Client(base_url=url, timeout=TIMEOUT) as client,
        client.stream("POST", "/ask/stream", json={"question": QUESTION}) as response,
    ):
        first_token(response)
    # The connection is closed: the model stops at its next token and the gate opens.
    state = wait_idle(url, timeout_s=30)
    assert state["stopped"] == stopped_before + 1, state
    # The next question is answered at once (it does not wait behind the abandoned one).
    with (
        httpx.Client(base_url=url, timeout=TIMEOUT) as client,
        client.stream("POST", "/ask/stream", json={"question": QUESTION}) as response,
    ):
        assert response.status_code == 200
        first_token(response)
    wait_idle(url, timeout_s=30)


def test_a_client_that_gives_up_on_a_plain_answer_stops_it_too(long_server: ServerProcess) -> None:
    url = long_server.url
    stopped_before = wait_idle(url)["stopped"]
    # The client waits a few seconds for the whole answer, then hangs up.
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{url}/ask", json={"question": QUESTION}, timeout=httpx.Timeout(4, connect=10))
    state = wait_idle(url, timeout_s=30)
    assert state["stopped"] == stopped_before + 1, state


def test_binding_beyond_loopback_warns_without_a_token(
    monkeypatch: pytest.MonkeyPatch, root: Path
) -> None:
    import uvicorn
    from rich.console import Console

    from rag.serve import serve
    from rag.settings import Settings

    calls: list[dict[str, object]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: calls.append(options))
    console = Console(record=True, width=200)
    settings = Settings(index=root / "index", model=TINY, host="0.0.0.0", progress=False)
    serve(settings, console)
    said = console.export_text()
    assert "Warning" in said and "RAG_API_TOKEN" in said
    assert calls[0]["host"] == "0.0.0.0"
    quiet = Console(record=True, width=200)
    serve(Settings.model_validate({**settings.model_dump(), "api_token": "set"}), quiet)
    assert "Warning" not in quiet.export_text()
    loopback = Console(record=True, width=200)
    serve(Settings(index=root / "index", model=TINY, progress=False), loopback)
    assert "Warning" not in loopback.export_text() and calls[-1]["host"] == "127.0.0.1"
