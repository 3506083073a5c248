"""One writer at a time per index folder, and a clear message for the second one.

Ingest, remove and rebuild take an exclusive lock on ``<index>/lock`` for as long
as they write. It is an OS file lock (``flock`` through filelock), so it dies
with its process: a writer killed with SIGKILL leaves no stale lock behind.
Readers (search, ask) never take it; they read the last published state (see
``rag.index``), so they are not blocked by a long ingest.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from types import TracebackType

from filelock import FileLock, Timeout

from rag.errors import IndexBusy

LOCK_FILE = "lock"
WRITER_FILE = "writer.json"


class IndexLock:
    """The write lock of one index folder; re-entrant within a thread."""

    def __init__(self, folder: Path, wait: float = 0.0) -> None:
        self.folder = folder
        self.wait = wait
        self._lock = FileLock(folder / LOCK_FILE)

    @property
    def held(self) -> bool:
        """Whether this object holds the lock (not whether anyone does)."""
        return self._lock.is_locked

    def acquire(self, wait: float | None = None, what: str = "write to") -> None:
        """Take the lock, waiting up to ``wait`` seconds; IndexBusy if another process holds it."""
        wait = self.wait if wait is None else wait
        first = not self._lock.is_locked
        try:
            self._lock.acquire(timeout=wait)
        except Timeout:
            raise IndexBusy(self._busy_message(what, wait)) from None
        if first:
            self._write_holder()

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it; never waits."""
        try:
            self.acquire(wait=0)
        except IndexBusy:
            return False
        return True

    def release(self) -> None:
        if self._lock.lock_counter == 1:
            (self.folder / WRITER_FILE).unlink(missing_ok=True)
        self._lock.release()

    def __enter__(self) -> IndexLock:
        self.acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def _write_holder(self) -> None:
        holder = {"pid": os.getpid(), "command": " ".join(sys.argv), "since": time.time()}
        tmp = self.folder / f"{WRITER_FILE}.{os.getpid()}"
        tmp.write_text(json.dumps(holder))
        os.replace(tmp, self.folder / WRITER_FILE)

    def holder(self) -> dict[str, object] | None:
        """Who holds the lock, as written by the holder; None if unknown."""
        try:
            data = json.loads((self.folder / WRITER_FILE).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _busy_message(self, what: str, waited: float) -> str:
        holder = self.holder()
        who = "another process"
        if holder:
            who = f"another process (pid {holder.get('pid')}: {holder.get('command')})"
        waited_text = f" after waiting {waited:g} s" if waited > 0 else ""
        return (
            f"The index in {self.folder} is busy{waited_text}: {who} is writing to it. "
            f"Cannot {what} it now; try again when that finishes, or pass --wait SECONDS "
            f"(RAG_WAIT) to wait for it."
        )
