"""The HTTP API in process (FastAPI's TestClient, on httpx), with the tiny model.

Each app loads the real embedder and the tiny model once for the module; what it serves
is compared with the Python API on the same index.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import QUESTION, SAMPLE_NAME
from fastapi.testclient import TestClient
from pydantic import TypeAdapter

from benchmarks.serve import sse_events
from rag import RAG, Answer, Passage
from rag.serve import create_app
from rag.settings import Settings

TINY = "smollm2-135m"
TOKEN = "test-token-7f3a"
WRITE = {"Authorization": f"Bearer {TOKEN}"}
ALLOWED_ORIGIN = "http://allowed.example"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, sample_article: Path, bbc_dir: Path) -> Path:
    """The ingest root: the sample plus three BBC stories, and a folder outside the root."""
    top = tmp_path_factory.mktemp("serve")
    root = top / "root"
    (root / "articles" / "business").mkdir(parents=True)
    shutil.copy(sample_article, root / "articles" / SAMPLE_NAME)
    for name in ("001.txt", "002.txt", "003.txt"):
        shutil.copy(bbc_dir / "business" / name, root / "articles" / "business" / name)
    (top / "outside").mkdir()
    (top / "outside" / "secret.txt").write_text("Private notes\n\nThe password is swordfish.\n")
    (root / "extra").mkdir()
    (root / "extra" / "link-out.txt").symlink_to(top / "outside" / "secret.txt")
    return root


@pytest.fixture(scope="module")
def index(root: Path) -> Path:
    with RAG(root / "index", progress=False) as rag:
        rag.ingest(root / "articles")
    return root / "index"


def settings_for(index: Path, root: Path, **values: object) -> Settings:
    return Settings.model_validate(
        {
            "index": index,
            "ingest_root": root,
            "model": TINY,
            "max_new_tokens": 24,
            "progress": False,
            **values,
        }
    )


def ready(client: TestClient) -> TestClient:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        state = client.get("/health").json()
        if state["status"] == "ready":
            return client
        assert state["status"] == "loading", state
        time.sleep(0.2)
    raise TimeoutError("the app did not load")


@pytest.fixture(scope="module")
def client(index: Path, root: Path) -> Iterator[TestClient]:
    """A server with a token, a 1 MB body limit and one allowed origin."""
    settings = settings_for(
        index, root, api_token=TOKEN, max_body_mb=1, cors_origins=[ALLOWED_ORIGIN], max_k=20
    )
    # A failure is the 500 a client gets, not an exception raised into the test.
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield ready(client)


@pytest.fixture(scope="module")
def rag(index: Path) -> Iterator[RAG]:
    with RAG(index, progress=False) as rag:
        yield rag


def error_of(response) -> dict:  # type: ignore[no-untyped-def]
    """The JSON error body every failure has: never HTML, never a traceback."""
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    assert set(body) == {"error", "detail"}, body
    assert "Traceback" not in response.text
    return body


# --- reads ---------------------------------------------------------------------------------


def test_health_says_ready_and_how_busy_the_model_is(client: TestClient) -> None:
    state = client.get("/health").json()
    assert state["status"] == "ready" and state["model"] == TINY and state["index"] is True
    assert state["generating"] is False and state["queued"] == 0 and state["queue_size"] == 4


def test_info_is_what_rag_info_prints(client: TestClient, rag: RAG) -> None:
    from dataclasses import asdict

    served = client.get("/info").json()
    expected = asdict(rag.info())
    assert {k: v for k, v in served.items() if k != "size_bytes"} == {
        k: v for k, v in expected.items() if k != "size_bytes"
    }


def test_search_gives_the_python_apis_passages(client: TestClient, rag: RAG) -> None:
    response = client.post("/search", json={"question": QUESTION, "k": 3})
    assert response.status_code == 200
    served = TypeAdapter(list[Passage]).validate_python(response.json())
    expected = rag.search(QUESTION, k=3)
    assert [(p.source, p.paragraph) for p in served] == [(p.source, p.paragraph) for p in expected]
    assert served[0].paragraph == 10 and served[0].article_id > 0
    assert served[0].text == expected[0].text


def test_search_filters_are_the_clis(client: TestClient) -> None:
    only_bbc = client.post("/search", json={"question": QUESTION, "source": "business/*"}).json()
    assert only_bbc and all("/business/" in p["source"] for p in only_bbc)
    none = client.post("/search", json={"question": QUESTION, "since": "2030-01-01"}).json()
    assert none == []
    bad = client.post("/search", json={"question": QUESTION, "since": "yesterday"})
    assert bad.status_code == 422
    assert "YYYY-MM-DD" in json.dumps(error_of(bad)["detail"])
    backwards = client.post(
        "/search", json={"question": QUESTION, "since": "2024-02-01", "until": "2024-01-01"}
    )
    assert backwards.status_code == 422 and "after until" in json.dumps(error_of(backwards))


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"question": ""}, 422),
        ({"question": "   \n\t "}, 400),
        ({"question": QUESTION, "k": 0}, 422),
        ({"question": QUESTION, "k": 21}, 422),  # over this server's max_k
        ({"question": QUESTION, "k": "many"}, 422),
        ({"question": "x" * 4001}, 422),  # over max_question_chars
        ({"question": QUESTION, "fusion": "magic"}, 422),  # not a field of the request
        ({}, 422),
        ([QUESTION], 422),
    ],
)
def test_bad_searches_are_json_errors(client: TestClient, body: object, status: int) -> None:
    response = client.post("/search", json=body)
    assert response.status_code == status, response.text
    error_of(response)


def test_an_empty_question_is_refused_by_every_endpoint(client: TestClient) -> None:
    for path in ("/search", "/ask", "/ask/stream"):
        response = client.post(path, json={"question": "  "})
        assert response.status_code == 400, (path, response.text)
        assert error_of(response) == {"error": "EmptyQuestion", "detail": "The question is empty."}


def test_malformed_json_and_unknown_routes_are_json_errors(client: TestClient) -> None:
    broken = client.post(
        "/search", content=b'{"question": ', headers={"Content-Type": "application/json"}
    )
    assert broken.status_code == 422
    error_of(broken)
    assert client.get("/nowhere").status_code == 404
    error_of(client.get("/nowhere"))
    assert client.get("/search").status_code == 405
    error_of(client.get("/search"))


def test_ask_gives_the_whole_checked_answer(client: TestClient) -> None:
    response = client.post("/ask", json={"question": QUESTION, "passages": 2})
    assert response.status_code == 200, response.text
    answer = TypeAdapter(Answer).validate_python(response.json())
    assert answer.question == QUESTION and answer.model == TINY and answer.text
    assert 1 <= len(answer.passages) <= 2
    assert all(c.passage in answer.passages for c in answer.citations)
    assert client.post("/ask", json={"question": QUESTION, "passages": 21}).status_code == 422
    assert client.get("/health").json()["answered"] >= 1


def test_ask_stream_sends_tokens_then_the_answer(client: TestClient) -> None:
    with client.stream("POST", "/ask/stream", json={"question": QUESTION}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = list(sse_events(response.iter_lines()))
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "answer" and kinds.count("answer") == 1, kinds
    assert kinds[0] == "token" and set(kinds) <= {"token", "retry", "answer"}, kinds
    answer = TypeAdapter(Answer).validate_python(events[-1][1])
    # The tokens after the last retry are the raw text of the reading that gave the answer.
    last = max((i for i, k in enumerate(kinds) if k == "retry"), default=-1)
    written = "".join(data["text"] for kind, data in events[last + 1 :] if kind == "token")
    assert written.strip() == answer.raw_text.strip()
    if last >= 0:
        assert answer.attempts == 2 and events[last][1]["passages"] == len(answer.passages)


def test_an_error_while_answering_is_a_json_error_or_an_error_event(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rag.errors import IndexBusy

    service = client.app.state.service  # type: ignore[attr-defined]

    def busy(*args: object, **kwargs: object) -> Iterator[str]:
        yield "The"
        raise IndexBusy("The index is being rebuilt; try again.")

    monkeypatch.setattr(service.answerer, "ask_stream", busy)
    response = client.post("/ask", json={"question": QUESTION})
    assert response.status_code == 503 and response.headers["retry-after"]
    assert error_of(response) == {
        "error": "IndexBusy",
        "detail": "The index is being rebuilt; try again.",
    }
    with client.stream("POST", "/ask/stream", json={"question": QUESTION}) as streamed:
        events = list(sse_events(streamed.iter_lines()))
    assert events == [
        ("token", {"text": "The"}),
        ("error", {"error": "IndexBusy", "detail": "The index is being rebuilt; try again."}),
    ]

    def broken(*args: object, **kwargs: object) -> Iterator[str]:
        raise KeyError("secret internals")
        yield ""

    monkeypatch.setattr(service.answerer, "ask_stream", broken)
    response = client.post("/ask", json={"question": QUESTION})
    assert response.status_code == 500 and "secret" not in response.text
    assert error_of(response)["error"] == "internal error"
    assert not client.get("/health").json()["generating"]  # the turn ended all the same


def test_articles_are_shown_whole(client: TestClient) -> None:
    top = client.post("/search", json={"question": QUESTION, "k": 1}).json()[0]
    article = client.get(f"/articles/{top['article_id']}").json()
    assert article["source"] == top["source"] and article["title"] == top["title"]
    numbers = [p["number"] for p in article["paragraphs"]]
    assert numbers == list(range(1, len(numbers) + 1))
    assert article["paragraphs"][top["paragraph"] - 1]["text"] == top["text"]
    missing = client.get("/articles/999999")
    assert missing.status_code == 404 and error_of(missing)["error"] == "ArticleNotFound"
    for bad in ("0", "-1", "abc", str(2**70)):
        response = client.get(f"/articles/{bad}")
        assert response.status_code == 422, bad
        error_of(response)


# --- limits and headers ----------------------------------------------------------------------


def test_an_oversized_body_is_refused_unread(client: TestClient) -> None:
    big = {"question": "word " * 300_000}  # 1.5 MB, over the 1 MB limit
    response = client.post("/search", json=big)
    assert response.status_code == 413
    assert "max_body_mb" in error_of(response)["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it comes
        yield b'{"question": "'
        for _ in range(40):
            yield b"x" * 50_000
        yield b'"}'

    streamed = client.post(
        "/search", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert streamed.status_code == 413
    error_of(streamed)


def test_the_page_is_static_and_strict(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    html = page.text
    assert "<script src=" in html and "<script>" not in html  # no inline script
    assert "http://" not in html and "https://" not in html  # nothing from elsewhere
    for name in ("app.js", "style.css"):
        asset = client.get(f"/static/{name}")
        assert asset.status_code == 200 and "https://" not in asset.text
    assert ".innerHTML" not in client.get("/static/app.js").text


def test_the_schema_and_the_docs_are_served(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for path in ("/health", "/info", "/search", "/ask", "/ask/stream", "/ingest"):
        assert path in paths, path
    assert set(paths["/articles/{article_id}"]) == {"get", "delete"}
    search = schema["components"]["schemas"]["SearchRequest"]["properties"]
    assert search["k"]["anyOf"][0]["maximum"] == 20  # this server's max_k
    assert "text/event-stream" in paths["/ask/stream"]["post"]["responses"]["200"]["content"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "cdn" not in docs.text.lower()


def test_cors_only_for_the_listed_origins(client: TestClient) -> None:
    allowed = client.get("/health", headers={"Origin": ALLOWED_ORIGIN})
    assert allowed.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    other = client.get("/health", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in other.headers


# --- writes --------------------------------------------------------------------------------


def test_ingest_and_delete_need_the_token(client: TestClient) -> None:
    body = {"paths": ["articles"]}
    assert client.post("/ingest", json=body).status_code == 401
    wrong = client.post("/ingest", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and error_of(wrong)["error"] == "Unauthorized"
    assert wrong.headers["www-authenticate"] == "Bearer"
    assert client.delete("/articles/1").status_code == 401
    unchanged = client.post("/ingest", json=body, headers=WRITE)
    assert unchanged.status_code == 200, unchanged.text
    assert unchanged.json()["unchanged"] == 4 and unchanged.json()["added"] == 0


@pytest.mark.parametrize(
    "path", ["..", "../outside/secret.txt", "articles/../../outside", "/etc", "extra"]
)
def test_ingest_refuses_paths_out_of_the_root(client: TestClient, path: str) -> None:
    response = client.post("/ingest", json={"paths": [path]}, headers=WRITE)
    assert response.status_code == 400, response.text
    body = error_of(response)
    assert body["error"] == "PathOutsideRoot" and "outside the ingest root" in body["detail"]
    found = client.post("/search", json={"question": "What is the password?"}).json()
    assert not any("swordfish" in p["text"] for p in found)


def test_upload_search_and_delete_an_article(client: TestClient, index: Path) -> None:
    text = "Zebra Holdings\n\nZebra Holdings bought the Quagga Bakery for $42 million on Tuesday.\n"
    files = [("files", ("../zebra.txt", text.encode(), "text/plain"))]
    response = client.post("/ingest", files=files, headers=WRITE)
    assert response.status_code == 200, response.text
    assert response.json()["added"] == 1
    assert (index / "uploads" / "zebra.txt").read_text() == text  # saved by its name alone
    found = client.post("/search", json={"question": "Who bought the Quagga Bakery?", "k": 1})
    top = found.json()[0]
    assert "Quagga" in top["text"]
    removed = client.delete(f"/articles/{top['article_id']}", headers=WRITE)
    assert removed.status_code == 200 and removed.json()["removed"] == [top["source"]]
    assert client.get(f"/articles/{top['article_id']}").status_code == 404
    after = client.post("/search", json={"question": "Who bought the Quagga Bakery?"}).json()
    assert not any("Quagga" in p["text"] for p in after)


def test_ingest_needs_json_paths_or_files(client: TestClient) -> None:
    for body in ({"paths": []}, {"paths": "articles"}, {"files": ["x"]}):
        response = client.post("/ingest", json=body, headers=WRITE)
        assert response.status_code == 422, body
        error_of(response)
    other = client.post(
        "/ingest", content=b"articles", headers={**WRITE, "Content-Type": "text/plain"}
    )
    assert other.status_code == 415
    error_of(other)


# --- servers configured otherwise ---------------------------------------------------------------


def test_without_a_token_writes_are_disabled_and_nothing_is_cross_origin(
    index: Path, root: Path
) -> None:
    with TestClient(create_app(settings_for(index, root))) as open_client:
        response = open_client.post("/ingest", json={"paths": ["articles"]}, headers=WRITE)
        assert response.status_code == 403
        assert "RAG_API_TOKEN" in error_of(response)["detail"]
        assert open_client.delete("/articles/1", headers=WRITE).status_code == 403
        assert open_client.post("/search", json={"question": QUESTION}).status_code == 200
        response = open_client.get("/health", headers={"Origin": ALLOWED_ORIGIN})
        assert "access-control-allow-origin" not in response.headers


def test_reads_can_require_the_token(index: Path, root: Path) -> None:
    settings = settings_for(index, root, api_token=TOKEN, token_for_reads=True)
    with TestClient(create_app(settings)) as guarded:
        ready(guarded)
        for method, path, body in [
            ("POST", "/search", {"question": QUESTION}),
            ("POST", "/ask", {"question": QUESTION}),
            ("GET", "/info", None),
            ("GET", "/articles/1", None),
        ]:
            refused = guarded.request(method, path, json=body)
            assert refused.status_code == 401, path
            error_of(refused)
        assert (
            guarded.post("/search", json={"question": QUESTION}, headers=WRITE).status_code == 200
        )
        assert guarded.get("/health").status_code == 200  # probes and the page stay open
        assert guarded.get("/").status_code == 200
