"""What the models and the embedder take from the machine: its cores and its files' hashes.

One copy of each for every caller: the thread count a model or the embedder uses when none is
set, and the streamed SHA-256 that preparing, checking and exporting models rely on.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from rag.feedback import byte_progress

__all__ = ["cores", "file_sha256", "hash_files"]

# Read size: large enough that hashing runs at the disk's speed, small enough to stay in cache.
_BLOCK = 8 * 1024 * 1024


def cores() -> int:
    """CPU cores this process may run on (its affinity), the default thread count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def hash_files(
    paths: list[Path], out: Path | None, total: int, label: str, progress: bool
) -> list[str]:
    """SHA-256 of each file, streamed; when ``out`` is given the files are also joined into it.

    ``total`` is the bytes to read, for the bar in bytes labelled ``label`` that ``progress``
    shows.
    """
    digests: list[str] = []
    with byte_progress(label, total, progress) as advance, contextlib.ExitStack() as stack:
        sink = stack.enter_context(open(out, "wb")) if out is not None else None
        for path in paths:
            digest = hashlib.sha256()
            with open(path, "rb") as source:
                while block := source.read(_BLOCK):
                    digest.update(block)
                    if sink is not None:
                        sink.write(block)
                    advance(len(block))
            digests.append(digest.hexdigest())
    return digests


def file_sha256(path: Path, label: str = "", progress: bool = False) -> str:
    """SHA-256 of one file, streamed; with ``progress``, a bar in bytes labelled ``label``."""
    return hash_files([path], None, path.stat().st_size, label, progress)[0]
