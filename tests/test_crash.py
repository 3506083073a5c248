"""Kill `rag ingest` at the worst moments, and use the index while another process writes.

Both run the real `rag` command in subprocesses on part of the BBC corpus, with the
real embedder, SQLite and FAISS; they take minutes, so they are marked slow.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import QUESTION

from rag import RAG

RAG_COMMAND = str(Path(sys.executable).with_name("rag"))
# Every step that waits on a subprocess is bounded, so a hang fails the test instead of CI.
STEP_TIMEOUT_S = 600

pytestmark = pytest.mark.slow


def bbc_part(bbc_dir: Path, folder: Path, per_category: int, start: int = 0) -> Path:
    """Copy ``per_category`` articles of each BBC category (from number ``start``) to ``folder``."""
    for category in sorted(p for p in bbc_dir.iterdir() if p.is_dir()):
        target = folder / category.name
        target.mkdir(parents=True, exist_ok=True)
        for path in sorted(category.glob("*.txt"))[start : start + per_category]:
            shutil.copy(path, target / path.name)
    return folder


def start_ingest(
    folder: Path, index: Path, *extra: str, log_level: str = "warning"
) -> subprocess.Popen[str]:
    env = dict(os.environ, RAG_PROGRESS="false", RAG_LOG_LEVEL=log_level)
    return subprocess.Popen(
        [RAG_COMMAND, "ingest", str(folder), "--index", str(index), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


class LoggedIngest:
    """A ``rag --log-level info ingest`` whose stage messages are read as they come.

    Killing on what the process says it is doing (not after a guessed delay) keeps the
    kill moments right however fast the machine embeds.
    """

    def __init__(self, folder: Path, index: Path) -> None:
        self.process = start_ingest(folder, index, log_level="info")
        self.started = time.monotonic()
        self.lines: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def said(self, text: str, after: float = 0.0) -> bool:
        """Whether a line containing ``text`` was printed at least ``after`` seconds ago."""
        now = time.monotonic()
        return any(text in line and now - when >= after for when, line in self.lines)

    def wait(self) -> None:
        self.process.wait(timeout=STEP_TIMEOUT_S)
        self._reader.join(timeout=STEP_TIMEOUT_S)


def generation(index: Path) -> int:
    """The store's generation as another process sees it (0 before the database exists)."""
    if not (index / "rag.sqlite").exists():
        return 0
    db = sqlite3.connect(index / "rag.sqlite", timeout=60)
    try:
        row = db.execute("SELECT value FROM meta WHERE key='generation'").fetchone()
    except sqlite3.OperationalError:  # tables not created yet
        return 0
    finally:
        db.close()
    return int(row[0]) if row else 0


def contents(index: Path) -> dict[str, object]:
    """What an index holds, in a form two indexes can be compared by."""
    db = sqlite3.connect(index / "rag.sqlite")
    articles = db.execute(
        "SELECT source, title, content_hash FROM articles ORDER BY source"
    ).fetchall()
    paragraphs = db.execute(
        "SELECT a.source, g.number, g.text FROM paragraphs g JOIN articles a "
        "ON a.id = g.article_id ORDER BY a.source, g.number"
    ).fetchall()
    passages = db.execute(
        "SELECT a.source, g.number, p.part, p.text_hash FROM passages p JOIN paragraphs g "
        "ON g.id = p.paragraph_id JOIN articles a ON a.id = g.article_id "
        "ORDER BY a.source, g.number, p.part"
    ).fetchall()
    embeddings = db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]
    files = db.execute("SELECT COUNT(*) FROM files").fetchone()[0]
    db.close()
    return {
        "articles": articles,
        "paragraphs": paragraphs,
        "passages": passages,
        "embeddings": embeddings,
        "files": files,
    }


def wait_for(condition: Callable[[], bool], process: subprocess.Popen[str]) -> bool:
    """Poll until ``condition`` holds (True) or the process ends first (False)."""
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while time.monotonic() < deadline:
        if condition():
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.05)
    process.kill()
    raise AssertionError("timed out waiting for the ingest to reach the moment to kill it")


def test_sigkill_during_ingest_loses_and_duplicates_nothing(tmp_path: Path, bbc_dir: Path) -> None:
    corpus = bbc_part(bbc_dir, tmp_path / "bbc", per_category=100)
    files = sum(1 for _ in corpus.rglob("*.txt"))
    index = tmp_path / "index"

    # Each moment: what the process must have said (and how long ago) to be killed, and
    # what it must not have said yet, which shows the kill landed inside that stage. A
    # group of 512 passages takes seconds to embed, so 0.3 s after "embedding" is inside it.
    moments: list[tuple[str, Callable[[LoggedIngest], bool], str]] = [
        (
            "while starting up",
            lambda run: time.monotonic() - run.started > 0.5,
            "group 1: committed",
        ),
        (
            "while embedding the first group",
            lambda run: run.said("group 1: embedding", 0.3),
            "group 1: committed",
        ),
        (
            "just after a group was committed",
            lambda run: run.said("group 1: committed"),
            "group 2: committed",
        ),
        (
            "in the middle of the next group",
            lambda run: run.said("group 2: embedding", 0.3),
            "group 2: committed",
        ),
        # Every file is committed: the process is building the FAISS and BM25 indexes.
        (
            "after the last commit, building the indexes",
            lambda run: run.said("building the search indexes"),
            "search indexes published",
        ),
    ]
    log = []
    for moment, condition, not_yet in moments:
        run = LoggedIngest(corpus, index)
        reached = wait_for(lambda run=run, condition=condition: condition(run), run.process)
        if reached:
            run.process.send_signal(signal.SIGKILL)
        run.wait()
        said = [line for _, line in run.lines]
        assert not any(not_yet in line for line in said), (moment, said)
        # Killed while starting up, the ingest may not have created the index yet.
        with RAG(index, progress=False, create=True) as rag:
            stats = rag.store.stats()
            report = rag.check()
            repaired = []
            if not report.ok:
                failed = {c.name for c in report.checks if not c.ok}
                # A kill can only leave the derived indexes behind the database, never
                # the database itself inconsistent.
                assert failed <= {"search indexes", "vectors", "bm25"}, report.to_dict()
                report = rag.check(repair=True)
                repaired = report.repaired
            assert report.ok, report.to_dict()
        log.append((moment, reached, stats.articles, stats.paragraphs, repaired))

    # Killed five times, at different stages.
    assert all(reached for _, reached, *_ in log), log
    process = start_ingest(corpus, index)
    _, stderr = process.communicate(timeout=STEP_TIMEOUT_S)
    assert process.returncode == 0, stderr
    with RAG(index, progress=False) as rag:
        assert rag.check().ok
        assert rag.search("BBC", k=3)

    clean = tmp_path / "clean"
    process = start_ingest(corpus, clean)
    _, stderr = process.communicate(timeout=STEP_TIMEOUT_S)
    assert process.returncode == 0, stderr
    killed, whole = contents(index), contents(clean)
    assert len(whole["articles"]) > 450 and whole["files"] == files
    for key in ("articles", "paragraphs", "passages", "embeddings", "files"):
        assert killed[key] == whole[key], key
    # None twice: every (article, paragraph number) once.
    keys = [(source, number) for source, number, _ in killed["paragraphs"]]
    assert len(keys) == len(set(keys))
    print("\nkills:", *log, sep="\n  ")
    print("final:", {k: len(v) if isinstance(v, list) else v for k, v in killed.items()})


def test_reading_while_another_process_ingests(
    tmp_path: Path, bbc_dir: Path, sample_article: Path
) -> None:
    old = bbc_part(bbc_dir, tmp_path / "old", per_category=8)
    shutil.copy(sample_article, old / sample_article.name)
    new = bbc_part(bbc_dir, tmp_path / "new", per_category=50, start=8)
    index = tmp_path / "index"
    with RAG(index, progress=False) as rag:
        rag.ingest(old)
        old_sources = {source for source, _ in rag.store.sources_matching("*")}
        before = rag.store.generation

    reader = RAG(index, progress=False, model="smollm2-135m", max_new_tokens=24)
    writer = start_ingest(new, index)
    # Wait until the writer holds the lock and has committed something.
    assert wait_for(lambda: generation(index) >= 2, writer), writer.communicate()

    # Pausing the writer (SIGSTOP) keeps it mid-ingest, holding the lock, however fast this
    # machine embeds: the checks below must happen while it is still writing.
    writer.send_signal(signal.SIGSTOP)
    try:
        second = start_ingest(old, index)
        _, busy = second.communicate(timeout=STEP_TIMEOUT_S)
        assert second.returncode == 1 and "busy" in busy, busy
    except BaseException:
        writer.send_signal(signal.SIGCONT)
        raise
    waiting = start_ingest(old, index, "--wait", str(STEP_TIMEOUT_S))

    searches, answers = 0, 0
    seen: list[tuple[int | None, set[str]]] = []  # (generation searched, sources found)

    def read() -> None:
        nonlocal searches, answers
        fresh = RAG(index, progress=False)
        for rag in (reader, fresh):
            hits = rag.search(QUESTION, k=5)
            assert hits and hits[0].paragraph == 10  # the sample article is in the old index
            hits = rag.search("football match", k=10)
            seen.append((rag.store.searched_generation, {h.source for h in hits}))
            stored = rag.store.paragraphs([h.paragraph_id for h in hits])
            assert all(stored[h.paragraph_id].text == h.text for h in hits)
            searches += 2
        fresh.close()
        if answers < 2:
            answer = reader.ask(QUESTION)
            assert answer.text
            answers += 1

    try:
        read()  # while the writer is paused mid-ingest
    finally:
        writer.send_signal(signal.SIGCONT)
    while writer.poll() is None:
        read()
    _, stderr = writer.communicate()
    assert writer.returncode == 0, stderr
    _, stderr = waiting.communicate(timeout=STEP_TIMEOUT_S)
    assert waiting.returncode == 0, stderr  # it waited for the lock, then found nothing new

    # While the ingest ran, readers searched the index as it was before it (or, at the
    # very end, the whole new one), never one half built, though the writer had
    # committed groups of new articles to the database.
    final = {source for source, _ in reader.store.sources_matching("*")}
    new_sources = final - old_sources
    assert searches >= 4 and new_sources
    for searched, sources in seen:
        assert searched in (before, reader.store.generation), searched
        if searched == before:
            assert sources <= old_sources
    # The long-lived reader picks up the published index without being reopened.
    after = {h.source for h in reader.search("football match", k=10)}
    assert after & new_sources
    with RAG(index, progress=False) as rag:
        assert rag.check().ok
    reader.close()
