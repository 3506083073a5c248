"""The API fuzzed from its own OpenAPI schema (schemathesis): whatever is sent, no 500.

A real `rag serve` process with the tiny model and a token (so the writes are exercised
too, inside a throwaway ingest root); bounded in examples per operation.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from conftest import SAMPLE_NAME
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from benchmarks.serve import TINY, ServerProcess
from rag import RAG

TOKEN = "fuzz-token-0b7e"
EXAMPLES = 25
# Each valid question is answered by the model: fewer of those.
ANSWER_EXAMPLES = 8


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, sample_article: Path
) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("serve-fuzz")
    (folder / "articles").mkdir()
    shutil.copy(sample_article, folder / "articles" / SAMPLE_NAME)
    with RAG(folder / "index", progress=False) as rag:
        rag.ingest(folder / "articles")
    # Short single readings: the fuzzer asks many questions.
    args = ("--model", TINY, "--max-new-tokens", "8", "--no-best-first", "--no-progress")
    args += ("--queue-size", "8")
    log = folder / "server.log"
    env = {"RAG_API_TOKEN": TOKEN}
    with ServerProcess(folder / "index", *args, log=log, env=env, cwd=folder) as running:
        yield running


def test_no_request_makes_the_server_fail(server: ServerProcess) -> None:
    # Each operation's requests are drawn from the schema by hypothesis here, not through
    # schemathesis's pytest plugin, whose lazy loading reaches into pytest's private parts.
    api = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    tried = []
    for loaded in api.get_all_operations():
        operation = loaded.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=ANSWER_EXAMPLES if operation.path.startswith("/ask") else EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        def no_server_error(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers, checks=[not_a_server_error], timeout=120)

        no_server_error()
        tried.append(f"{operation.method.upper()} {operation.path}")
    assert "POST /ask/stream" in tried and "POST /ingest" in tried, tried
    assert "Traceback" not in server.output()
