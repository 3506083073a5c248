"""Saved KV caches of the prompt part every answer shares, for both engines.

Every answer's prompt starts with the same messages (the system message and the worked examples,
most of a typical prompt). An engine reads them once, keeps their KV cache in memory, and saves it
in ``RAG_HOME/prompt-cache`` so that a new process loads it (milliseconds) instead of reading the
prefix again (seconds). Here: where such a file lives, when one is worth having, how it is written
so that a reader never sees half of it, and how the folder is kept small.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "MAX_CACHED_PREFIXES",
    "MIN_CACHED_PREFIX",
    "PROMPT_CACHE",
    "prompt_cache_file",
    "prune_prompt_cache",
    "save_prompt_cache",
    "worth_caching",
]

log = logging.getLogger(__name__)

# The folder under RAG_HOME.
PROMPT_CACHE = "prompt-cache"
# A shared prefix shorter than this is read faster than its cache is found and loaded.
MIN_CACHED_PREFIX = 64
# Saved prefixes kept (the newest used); one per model and prompt template in practice.
MAX_CACHED_PREFIXES = 16


def worth_caching(prefix: list[int], prompt: list[int]) -> bool:
    """Whether ``prefix`` (the prompt's shared messages, tokenised alone) is long enough to pay
    for a cache and begins ``prompt`` token for token (a template may not end a turn on a token
    edge)."""
    return MIN_CACHED_PREFIX <= len(prefix) < len(prompt) and prompt[: len(prefix)] == prefix


def prompt_cache_file(folder: Path, key: bytes, prefix: list[int], suffix: str) -> Path:
    """Where the KV cache of ``prefix`` is saved, for a model and runtime named by ``key``."""
    digest = hashlib.sha256(key + json.dumps(prefix).encode()).hexdigest()
    return folder / f"{digest[:32]}{suffix}"


def save_prompt_cache(file: Path, write: Callable[[Path], bool]) -> None:
    """Save a prompt prefix's KV cache as ``file``: ``write`` fills a scratch file, which is
    renamed into place when it returns True, so a reader never sees half a file. A cache that
    cannot be written (read-only home, full disk) only costs the next start a read."""
    partial = file.with_name(f".{file.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        if write(partial):
            os.replace(partial, file)
        prune_prompt_cache(file.parent)
    except OSError as error:
        log.debug("could not save the prompt cache %s: %s", file, error)
    finally:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)


def prune_prompt_cache(folder: Path) -> None:
    """Keep the most recently used saved prompts (of either engine), delete the rest.

    A loaded file's modification time is set to now, so the files kept are those last used.
    """
    files = [f for f in folder.iterdir() if f.is_file() and not f.name.startswith(".")]
    files.sort(key=lambda f: f.stat().st_mtime, reverse=True)
    for stale in files[MAX_CACHED_PREFIXES:]:
        stale.unlink(missing_ok=True)
