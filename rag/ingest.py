"""Ingest: files → paragraphs → passages → embeddings → store, then publish.

Work is incremental at three levels: a file whose bytes did not change is not
even parsed; an article whose content did not change is not rewritten; a
passage text that already has an embedding (in any article) is not embedded
again. Changes are committed in groups, so an interrupted ingest keeps what it
finished and the next run picks up the rest.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import Progress, TaskID

from rag.embed import Embedder
from rag.feedback import progress_bar
from rag.parsers import (
    NOT_A_REGULAR_FILE,
    UnsupportedFile,
    check_supported,
    iter_files,
    os_error_reason,
    read_file,
)
from rag.parsers.common import path_text, resolved
from rag.passages import split_passages
from rag.settings import default
from rag.stores.base import (
    ArticleWrite,
    IndexStore,
    StoredFile,
    WriteBatch,
    document_hash,
    text_hash,
)
from rag.types import Document, FileFailure, IngestReport

# Passages embedded per commit: small enough that an interruption loses little,
# large enough that commits don't dominate.
COMMIT_EVERY = 512
_MB = 1024 * 1024

log = logging.getLogger(__name__)


@dataclass
class FileChange:
    """What one changed file does to the store."""

    stored: StoredFile
    write: list[tuple[Document, str]] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    pieces: list[list[list[str]]] = field(default_factory=list)
    """Per written document, per paragraph, its passages."""


def file_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def list_files(paths: Iterable[str | Path], report: IngestReport) -> list[Path]:
    """The files under ``paths`` (folders read recursively); what cannot be listed is named
    in ``report``."""
    found: list[Path] = []
    for given in map(Path, paths):
        try:
            os.stat(given)
        except OSError as exc:  # a missing path is named; the other paths are still read
            report.failed.append(FileFailure(path_text(given), os_error_reason(given, exc)))
            continue
        found.append(given)
    files = list(iter_files(found, skipped=report.skipped, failed=report.failed))
    _drop_repeats(report.failed)  # a bad link both given and inside a given folder
    _drop_repeats(report.skipped)
    return files


@dataclass
class ParsedFile:
    """One file read and parsed, or why not: what reading hands to :func:`consider`
    (from this process, or from a worker that cannot ask the store)."""

    name: str
    source: str = ""
    digest: str = ""
    size: int = 0
    documents: list[Document] = field(default_factory=list)
    failures: list[FileFailure] = field(default_factory=list)
    skipped: str | None = None
    """Why it was left out by design (its type, its size, not a regular file)."""
    failed: str | None = None
    """Why it could not be read or parsed."""
    unchanged: bool = False
    """Its bytes are those already ingested: it was not parsed."""


def read_and_parse(
    path: Path, known_hash: Callable[[str], str | None], max_file_mb: float
) -> ParsedFile:
    """Read one file (unless its type or size rules it out) and parse it, unless its bytes
    hash to ``known_hash(source)``, the hash it was last ingested with."""
    name = path_text(path)
    limit = int(max_file_mb * _MB)
    try:
        check_supported(path)
    except UnsupportedFile as exc:
        return ParsedFile(name, skipped=str(exc))
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # reading a pipe would block for ever
            return ParsedFile(name, skipped=NOT_A_REGULAR_FILE)
        if info.st_size > limit:
            return ParsedFile(name, skipped=_too_large(info.st_size, max_file_mb))
        data = _read_at_most(path, info.st_size, limit)
    except OSError as exc:
        return ParsedFile(name, failed=f"cannot read: {os_error_reason(path, exc)}")
    if len(data) > limit:
        return ParsedFile(name, skipped=_too_large(len(data), max_file_mb))
    source = resolved(path)
    digest = file_hash(data)
    parsed = ParsedFile(name, source, digest, len(data))
    if known_hash(source) == digest:
        parsed.unchanged = True
        return parsed
    try:
        parsed.documents, parsed.failures = read_file(path, data)
    except ValueError as exc:  # the parsers' own reasons: empty, binary, no article text
        parsed.failed = str(exc)
    except Exception as exc:  # a bug or a library choking must not stop the other 2,000
        parsed.failed = f"unexpected {type(exc).__name__}: {exc}"
    return parsed


def consider(parsed: ParsedFile, store: IndexStore, report: IngestReport) -> FileChange | None:
    """What a parsed file changes in the store (None: nothing), counted in ``report``."""
    if parsed.skipped is not None:
        report.skipped.append(FileFailure(parsed.name, parsed.skipped))
        return None
    if parsed.failed is not None:
        report.failed.append(FileFailure(parsed.name, parsed.failed))
        return None
    if parsed.unchanged:
        report.unchanged += store.count_articles(parsed.source)
        return None
    documents, failures = parsed.documents, parsed.failures
    report.failed.extend(failures)
    fmt = documents[0].format if documents else ""
    # A file with bad JSONL lines is recorded without its hash, so that the next run
    # reads it again and names those lines again (its good articles come out unchanged).
    recorded = "" if failures else parsed.digest
    change = FileChange(StoredFile(parsed.source, recorded, parsed.size, fmt))
    existing = store.article_hashes(parsed.source)
    for doc in documents:
        if not doc.paragraphs:
            report.failed.append(FileFailure(doc.source, "no paragraphs of text found"))
            continue
        content = document_hash(doc)
        if existing.get(doc.source) == content:
            report.unchanged += 1
            continue
        if doc.source in existing:
            report.updated += 1
        else:
            report.added += 1
        change.write.append((doc, content))
    kept = {doc.source for doc in documents}
    change.delete = [old for old in existing if old not in kept]
    report.removed += len(change.delete)
    return change


def scan(
    paths: Iterable[str | Path],
    store: IndexStore,
    report: IngestReport,
    progress: Progress,
    *,
    max_file_mb: float = default("max_file_mb"),
) -> list[FileChange]:
    """Find what changed: parse new and modified files, count unchanged ones.

    People point this at messy folders, so no file stops the others: each one that
    is not read is named in ``report`` with its reason, under ``skipped`` when it is
    left out by design (a type no parser reads, over ``max_file_mb``, a pipe or
    device, a link to a folder) and under ``failed`` when it should have been read
    but could not be (missing, unreadable, empty, binary, no article text, bad JSONL
    lines). The type and size are judged from the name and ``stat`` before a byte is
    read, so a video or a huge log costs nothing, and memory stays bounded by the
    size limit.
    """
    files = list_files(paths, report)
    task = progress.add_task("Reading", total=len(files))
    changes: list[FileChange] = []

    def known_hash(source: str) -> str | None:
        stored = store.get_file(source)
        return None if stored is None else stored.hash

    for path in files:
        progress.advance(task)
        change = consider(read_and_parse(path, known_hash, max_file_mb), store, report)
        if change is not None:
            changes.append(change)
    return changes


def _read_at_most(path: Path, size: int, limit: int) -> bytes:
    """The file's bytes, but no more than ``limit + 1`` even if it grew since ``stat``.

    Not ``read(limit + 1)``: that allocates the whole limit up front for every file.
    """
    chunks: list[bytes] = []
    total = 0
    want = min(size, limit) + 1  # one read for a file as big as stat said, then EOF
    with path.open("rb") as handle:
        while total <= limit and (chunk := handle.read(min(want, limit + 1 - total))):
            chunks.append(chunk)
            total += len(chunk)
            want = _MB
    return b"".join(chunks)


def _drop_repeats(entries: list[FileFailure]) -> None:
    """Keep the first of entries that name the same file for the same reason."""
    seen: set[tuple[str, str]] = set()
    kept: list[FileFailure] = []
    for entry in entries:
        key = (os.path.abspath(entry.path), entry.reason)
        if key not in seen:
            seen.add(key)
            kept.append(entry)
    entries[:] = kept


def _too_large(size: int, max_file_mb: float) -> str:
    return (
        f"too large: {size / _MB:.1f} MB, over the {max_file_mb:g} MB limit "
        "(raise it with --max-file-mb or RAG_MAX_FILE_MB)"
    )


def ingest(
    paths: Iterable[str | Path],
    store: IndexStore,
    embedder: Callable[[], Embedder],
    *,
    batch_size: int = default("batch_size"),
    max_passage_tokens: int = default("max_passage_tokens"),
    console: Console | None = None,
    show_progress: bool = default("progress"),
    max_file_mb: float = default("max_file_mb"),
) -> IngestReport:
    """Bring the store up to date with ``paths`` (files and folders).

    ``embedder`` is called only when something must be embedded, so a run over
    unchanged files never loads a model. The store publishes what was written (the
    folder index builds its search indexes) only when something changed. Files larger
    than ``max_file_mb`` are skipped, unread (see :func:`scan`).
    """
    started = time.perf_counter()
    report = IngestReport()
    console = console or Console(stderr=True)
    with progress_bar(console, show_progress) as progress:
        changes = scan(paths, store, report, progress, max_file_mb=max_file_mb)
        log.info("%d files to add, update or remove", len(changes))
        if changes:
            loading = time.perf_counter()
            model = embedder()  # the first time, this may export the embedder (once per machine)
            report.embedder_seconds = time.perf_counter() - loading
            for change in changes:
                change.pieces = [
                    split_for(model, [p.text for p in doc.paragraphs], max_passage_tokens)
                    for doc, _ in change.write
                ]
            writing = time.perf_counter()
            _embed_and_write(changes, store, model, batch_size, report, progress)
            report.embed_seconds = time.perf_counter() - writing
    if changes:
        log.info("building the search indexes")
        with console.status("Building the search indexes…") if show_progress else nullcontext():
            store.publish()
        log.info("search indexes published")
    report.seconds = time.perf_counter() - started
    return report


def _embed_and_write(
    changes: list[FileChange],
    store: IndexStore,
    model: Embedder,
    batch_size: int,
    report: IngestReport,
    progress: Progress,
) -> None:
    """Embed new passage texts and write each group of files as one batch."""
    texts_of: dict[str, str] = {}
    for change in changes:
        for pieces in change.pieces:
            for parts in pieces:
                for part in parts:
                    texts_of.setdefault(text_hash(part), part)
    missing = store.missing_embeddings(texts_of)
    task = progress.add_task("Embedding", total=len(missing))
    group: list[FileChange] = []
    group_hashes: list[str] = []
    number = 0
    for index, change in enumerate(changes):
        group.append(change)
        for pieces in change.pieces:
            for parts in pieces:
                for part in parts:
                    digest = text_hash(part)
                    if digest in missing:
                        missing.discard(digest)
                        group_hashes.append(digest)
        if len(group_hashes) < COMMIT_EVERY and index < len(changes) - 1:
            continue
        number += 1
        log.info(
            "group %d: embedding %d passages of %d files", number, len(group_hashes), len(group)
        )
        vectors = embed_texts(
            model, [texts_of[h] for h in group_hashes], batch_size, progress, task
        )
        store.write(batch_of(group, dict(zip(group_hashes, vectors, strict=True))))
        report.paragraphs += sum(len(doc.paragraphs) for item in group for doc, _ in item.write)
        log.info("group %d: committed", number)
        report.embedded += len(group_hashes)
        group, group_hashes = [], []


def batch_of(changes: list[FileChange], vectors: dict[str, np.ndarray]) -> WriteBatch:
    """The store's batch for a group of changed files (their passages already split)."""
    batch = WriteBatch(vectors=vectors)
    for change in changes:
        batch.delete += change.delete
        for (doc, content), pieces in zip(change.write, change.pieces, strict=True):
            batch.write.append(ArticleWrite(doc, content, pieces))
        batch.files.append(change.stored)
    return batch


def split_for(model: Embedder, texts: list[str], max_passage_tokens: int) -> list[list[str]]:
    """Each text (a paragraph) cut into the passages ``model`` reads whole."""
    limit = min(max_passage_tokens, model.max_tokens)
    return [split_passages(text, model.count_tokens, limit) for text in texts]


def embed_texts(
    model: Embedder,
    texts: list[str],
    batch_size: int,
    progress: Progress | None = None,
    task: TaskID | None = None,
) -> np.ndarray:
    """Embed in slices so that a bar (when given) moves while a large group is worked on."""
    parts = []
    step = max(batch_size * 4, 1)
    for i in range(0, len(texts), step):
        parts.append(model.embed(texts[i : i + step], batch_size))
        if progress is not None and task is not None:
            progress.advance(task, len(texts[i : i + step]))
    if not parts:
        return np.zeros((0, model.info.dimension), dtype=np.float32)
    return np.vstack(parts)
