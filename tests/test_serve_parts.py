"""The server's parts on their own: the gate, the worker thread, the token and path rules."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import HTTPException
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import SecretStr

from rag.errors import PathOutsideRoot, QueueFull, RagError
from rag.serve.gate import Gate
from rag.serve.security import Access, inside_root, is_loopback, upload_name
from rag.serve.worker import Worker


def run(coroutine):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coroutine, timeout=30))


# --- the gate ------------------------------------------------------------------------------


def test_the_gate_lets_one_in_and_queues_the_rest_in_order() -> None:
    async def scenario() -> list[str]:
        gate = Gate(queue_size=2)
        order: list[str] = []
        first = gate.reserve()
        second, third = gate.reserve(), gate.reserve()
        assert gate.busy and gate.queued == 2
        with pytest.raises(QueueFull) as refused:
            gate.reserve()
        assert refused.value.retry_after >= 1

        async def use(name: str, turn) -> None:  # type: ignore[no-untyped-def]
            await turn.wait()
            order.append(name)
            await asyncio.sleep(0.01)
            turn.done()

        await asyncio.gather(use("third", third), use("second", second), use("first", first))
        assert not gate.busy and gate.queued == 0
        return order

    assert run(scenario()) == ["first", "second", "third"]


def test_a_question_that_gives_up_waiting_frees_its_place() -> None:
    async def scenario() -> None:
        gate = Gate(queue_size=1)
        running = gate.reserve()
        waiting = gate.reserve()
        task = asyncio.create_task(waiting.wait())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert gate.queued == 0
        gate.reserve().done()  # the freed place can be taken (and given up)
        running.done()
        assert not gate.busy

    run(scenario())


def test_a_turn_ended_from_the_worker_thread_lets_the_next_in() -> None:
    async def scenario() -> None:
        gate = Gate(queue_size=1)
        first, second = gate.reserve(), gate.reserve()
        await first.wait()
        threading.Thread(target=first.done_threadsafe).start()
        await second.wait()
        assert gate.busy and gate.queued == 0
        second.done()
        second.done()  # idempotent
        assert not gate.busy

    run(scenario())


def test_a_gate_without_a_queue_refuses_while_busy() -> None:
    async def scenario() -> None:
        gate = Gate(queue_size=0)
        turn = gate.reserve()
        with pytest.raises(QueueFull):
            gate.reserve()
        turn.done()
        gate.reserve().done()

    run(scenario())


# --- the worker ----------------------------------------------------------------------------


def test_the_worker_hands_over_every_item_then_reports_it_finished() -> None:
    finished: list[bool] = []

    async def scenario() -> list[int]:
        worker = Worker(lambda: iter(range(5)), finished.append, name="test")
        items = [item async for item in worker.items()]
        await worker.join()
        return items

    assert run(scenario()) == [0, 1, 2, 3, 4]
    assert finished == [False]


def test_stopping_the_worker_closes_the_generator_in_its_own_thread() -> None:
    closed = threading.Event()
    finished: list[bool] = []

    def endless() -> Iterator[int]:
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.set()

    async def scenario() -> None:
        worker = Worker(endless, finished.append, name="test")
        async for item in worker.items():
            if item == 3:
                worker.stop()
                break
        await worker.join()

    run(scenario())
    assert closed.is_set() and finished == [True]


def test_the_worker_raises_the_iterators_error_in_the_reader() -> None:
    def failing() -> Iterator[int]:
        yield 1
        raise RagError("broken")

    async def scenario() -> list[int]:
        seen = []
        worker = Worker(failing, lambda stopped: None, name="test")
        with pytest.raises(RagError, match="broken"):
            async for item in worker.items():
                seen.append(item)
        return seen

    assert run(scenario()) == [1]


# --- tokens --------------------------------------------------------------------------------


def bearer(token: str) -> HTTPAuthorizationCredentials:
    return HTTPAuthorizationCredentials(scheme="Bearer", credentials=token)


def status(check, credentials) -> int:  # type: ignore[no-untyped-def]
    try:
        check(credentials)
    except HTTPException as error:
        return error.status_code
    return 200


def test_writes_are_disabled_without_a_token_and_need_the_right_one_with_it() -> None:
    closed = Access(None, token_for_reads=False)
    assert status(closed.check_write, None) == 403
    assert status(closed.check_write, bearer("anything")) == 403
    assert status(closed.check_read, None) == 200
    assert status(closed.check_read, bearer("anything")) == 401  # a token that cannot be right

    guarded = Access(SecretStr("s3cret"), token_for_reads=False)
    assert status(guarded.check_write, None) == 401
    assert status(guarded.check_write, bearer("wrong")) == 401
    assert status(guarded.check_write, bearer("s3cret")) == 200
    assert status(guarded.check_read, None) == 200
    assert status(guarded.check_read, bearer("s3cret")) == 200
    assert status(guarded.check_read, bearer("wrong")) == 401


def test_reads_can_be_made_to_need_the_token_but_only_when_there_is_one() -> None:
    strict = Access(SecretStr("s3cret"), token_for_reads=True)
    assert status(strict.check_read, None) == 401
    assert status(strict.check_read, bearer("s3cret")) == 200
    with pytest.raises(RagError, match="RAG_API_TOKEN"):
        Access(None, token_for_reads=True)


def test_loopback_addresses() -> None:
    for host in ("127.0.0.1", "127.8.9.1", "::1", "[::1]", "localhost"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "192.168.1.5", "example.org"):
        assert not is_loopback(host), host


# --- paths ---------------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An ingest root with a file and a folder, beside a folder outside it with a secret."""
    (tmp_path / "root" / "news" / "sub").mkdir(parents=True)
    (tmp_path / "root" / "news" / "a.txt").write_text("A story.")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("A secret.")
    return tmp_path / "root"


def test_paths_inside_the_ingest_root_are_resolved(root: Path) -> None:
    assert inside_root("news/a.txt", root) == (root / "news" / "a.txt").resolve()
    assert inside_root("news/sub/../a.txt", root) == (root / "news" / "a.txt").resolve()
    assert inside_root(str(root / "news"), root) == (root / "news").resolve()
    (root / "news" / "alias.txt").symlink_to(root / "news" / "a.txt")  # a link within: fine
    assert inside_root("news", root) == (root / "news").resolve()


@pytest.mark.parametrize(
    "given",
    [
        "..",
        "../outside/secret.txt",
        "news/../../outside",
        "/etc/passwd",
        "~",
        "~nobody-here~",
        "a\x00b",
    ],
)
def test_paths_that_leave_the_ingest_root_are_refused(root: Path, given: str) -> None:
    with pytest.raises(PathOutsideRoot):
        inside_root(given, root)


def test_links_out_of_the_ingest_root_are_refused(root: Path) -> None:
    (root / "link.txt").symlink_to(root.parent / "outside" / "secret.txt")
    with pytest.raises(PathOutsideRoot, match="outside the ingest root"):
        inside_root("link.txt", root)
    # A folder that holds a link out is refused whole, naming the link.
    (root / "news" / "sub" / "away").symlink_to(root.parent / "outside")
    with pytest.raises(PathOutsideRoot, match="news/sub/away"):
        inside_root("news", root)


def test_upload_names_are_names_not_paths() -> None:
    assert upload_name("story.txt") == "story.txt"
    assert upload_name("../../etc/story.txt") == "story.txt"
    assert upload_name("C:\\Users\\me\\story.md") == "story.md"
    for bad in ("", "..", ".hidden", "../", None):
        with pytest.raises(RagError):
            upload_name(bad)
