"""`rag serve` under load: 20 clients search while 4 ask, with the tiny model, on loopback.

Bounded in count and time (benchmarks/serve.py's load generator, which the benchmark area
``serve`` times); this asserts behaviour only: no error but the documented 503s, and
every answer well formed.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SAMPLE_NAME
from pydantic import TypeAdapter

from benchmarks.serve import ASKERS, SEARCHERS, TINY, ServerProcess, load
from rag import RAG, Answer


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, sample_article: Path, bbc_dir: Path
) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("serve-load")
    (folder / "articles").mkdir()
    shutil.copy(sample_article, folder / "articles" / SAMPLE_NAME)
    for name in ("001.txt", "002.txt", "003.txt", "004.txt", "005.txt"):
        shutil.copy(bbc_dir / "business" / name, folder / "articles" / f"business-{name}")
    with RAG(folder / "index", progress=False) as rag:
        rag.ingest(folder / "articles")
    # A line of two: of four questions at once, one is answered, two wait, one may be refused.
    args = ("--model", TINY, "--max-new-tokens", "24", "--queue-size", "2", "--no-progress")
    with ServerProcess(folder / "index", *args, log=folder / "server.log", cwd=folder) as running:
        yield running


def test_searches_and_answers_under_load(server: ServerProcess) -> None:
    result = load(server.url, searches_each=5, deadline_s=240)
    assert len(result.searches) == SEARCHERS * 5
    assert {s.status for s in result.searches} == {200}
    assert len(result.asks) == ASKERS
    answered = [a for a in result.asks if a.status == 200]
    refused = [a for a in result.asks if a.status != 200]
    assert answered, "no question was answered"
    for asked in refused:  # the documented refusal, nothing else
        assert asked.status == 503 and int(asked.retry_after or 0) >= 1, asked
        assert asked.error["error"] == "QueueFull", asked
    for asked in answered:
        assert asked.error is None and asked.events[-1] == "answer", asked.events
        assert asked.events.count("answer") == 1
        assert set(asked.events[:-1]) <= {"token", "retry"}, asked.events
        answer = TypeAdapter(Answer).validate_python(asked.answer)
        assert answer.model == TINY and answer.text and answer.passages
    # Searches met generation: some ran while an answer was being written.
    assert result.during_answers()
    assert "Traceback" not in server.output()
