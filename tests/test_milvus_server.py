"""The network path to Milvus: a ``milvus-lite server`` on a free loopback port, and two client
processes at once, one ingesting and one searching, as several machines would share a Milvus
server (``--milvus-uri http://host:19530``). Real processes, no mock; skipped, saying so, where
the ``milvus`` extra is not installed."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import QUESTION

pytestmark = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("pymilvus", "milvus_lite")),
    reason="pymilvus and milvus-lite are not installed (pip install '.[milvus]')",
)

# The searching client: asks until the ingesting one's articles answer, then prints the best
# hit. Until then the collection may not exist yet, or hold no passages: those are retried.
SEARCHER = """
import json, sys, time
from rag import RAG, RagError
uri, question, deadline = sys.argv[1], sys.argv[2], time.monotonic() + float(sys.argv[3])
tries = 0
while True:
    tries += 1
    try:
        hits = RAG(store="milvus", milvus_uri=uri, progress=False).search(question, k=1)
    except RagError:
        hits = []
    if hits and hits[0].paragraph == 10:
        print(json.dumps({"source": hits[0].source, "tries": tries}))
        break
    if time.monotonic() > deadline:
        sys.exit("no answer before the deadline")
    time.sleep(0.5)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    command = Path(sys.executable).with_name("milvus-lite")
    args = [str(command), "server", "--data-dir", str(tmp_path / "milvus"), "--host", "127.0.0.1"]
    process = subprocess.Popen(
        [*args, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError as error:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("milvus-lite server did not start") from error
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_one_process_ingests_while_another_searches_through_a_server(
    server: str, articles: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "RAG_PROGRESS": "false"}
    searcher = subprocess.Popen(
        [sys.executable, "-c", SEARCHER, server, QUESTION, "240"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    where = ["--store", "milvus", "--milvus-uri", server]
    ingest = subprocess.run(
        [sys.executable, "-m", "rag", "ingest", str(articles), *where, "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    out, err = searcher.communicate(timeout=300)
    assert ingest.returncode == 0, ingest.stderr
    assert json.loads(ingest.stdout)["added"] == 4
    assert searcher.returncode == 0, err
    assert json.loads(out)["source"].endswith("000_a385e70649e5e390.txt")
    checked = subprocess.run(
        [sys.executable, "-m", "rag", "check", *where],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
