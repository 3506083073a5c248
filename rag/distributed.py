"""Ingest spread over a Ray cluster (``rag ingest PATHS --ray [ADDRESS]``; the ``ray`` extra).

The same work as :func:`rag.ingest.ingest`, in a Ray Data pipeline: the files are listed
here; Ray tasks read and parse them (a file whose bytes were ingested before is not parsed);
one actor per worker loads the embedder once and cuts each article into passages and embeds
them (``map_batches`` with an ``ActorPoolStrategy``); the batches come back here, where the
store is written, one batch of files at a time, by this process alone: the folder index's
single writer, or the one process a Milvus Lite file allows. What is written, and the
report, are those of a local ingest.

A worker that dies is replaced and its batch run again (Ray retries actor tasks); a batch
that arrives twice finds its files already handled and is skipped, and a rewrite of the same
article writes the same rows (the folder index replaces the article in a transaction, Milvus
upserts by passage key), so a retry loses and duplicates nothing.

Ray costs seconds to start and seconds of fixed overhead per run (BENCHMARKS.md): it pays
for ingests that are large, or spread over several machines. On a cluster, every worker must
have rag and its embedder installed, and read the files at the paths given here (a shared
file system): the files are listed here and read where they are parsed.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.errors import RagError
from rag.ingest import (
    FileChange,
    ParsedFile,
    batch_of,
    consider,
    list_files,
    read_and_parse,
    split_for,
)
from rag.settings import Settings
from rag.stores.base import IndexStore, text_hash
from rag.types import Document, FileFailure, IngestReport, Paragraph

if TYPE_CHECKING:
    from rag.embed import EmbedderInfo

log = logging.getLogger(__name__)

# Files per embedding batch, and so per write: small enough that a retried batch costs
# little, large enough that per-batch overhead does not dominate.
FILES_PER_BATCH = 16
# Of each CPU given to the pipeline, what the parsing tasks keep: embedding actors on every
# CPU would leave the tasks that feed them none.
PARSE_CPUS = 0.25
# Blocks (one parse task each) at most: a block of a few batches lets embedding start as
# soon as the first files are parsed, but each task has a fixed cost.
MAX_BLOCKS = 4096


def ingest_on_ray(
    paths: Iterable[str | Path],
    store: IndexStore,
    settings: Settings,
    check_embedder: Callable[[EmbedderInfo], None],
) -> IngestReport:
    """Ingest ``paths`` into ``store`` on the Ray cluster the settings name (or a local one).

    ``check_embedder`` is given the workers' embedder before anything is written: it refuses
    one that is not the index's (and records it in a new index).
    """
    try:
        import ray
    except ImportError as error:
        raise RagError(
            f"Ingest on Ray needs Ray Data ({error}): pip install 'rag-news[ray]'."
        ) from None

    started = time.perf_counter()
    report = IngestReport()
    files = list_files(paths, report)
    known = store.known_files()
    ours = _start(settings)
    try:
        working = time.perf_counter()
        changed = _run(files, known, store, settings, check_embedder, report)
        report.embed_seconds = time.perf_counter() - working
    finally:
        if ours:
            ray.shutdown()
    if changed:
        log.info("publishing")
        store.publish()
        log.info("search indexes published")
    report.seconds = time.perf_counter() - started
    return report


def _start(settings: Settings) -> bool:
    """Join the cluster, or start a local one; True when this call started it."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # nothing is sent anywhere
    # Ray's own loggers print on their own handlers: only their warnings, unless debugging.
    level = logging.DEBUG if log.isEnabledFor(logging.DEBUG) else logging.WARNING
    logging.getLogger("ray").setLevel(level)
    options: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": level == logging.DEBUG,
        "logging_level": level,
    }
    if settings.ray_address:
        ray.init(address=settings.ray_address, **options)
    else:
        ray.init(num_cpus=settings.ray_cpus or os.cpu_count() or 1, **options)
    return True


def _run(
    files: list[Path],
    known: dict[str, str],
    store: IndexStore,
    settings: Settings,
    check_embedder: Callable[[EmbedderInfo], None],
    report: IngestReport,
) -> bool:
    """The pipeline, and the writes of its batches; whether anything changed."""
    import ray
    from ray.data import ActorPoolStrategy, DataContext

    if not files:
        return False
    # Ray Data sets up its logger when imported: quieted here, after that.
    quiet = not log.isEnabledFor(logging.DEBUG)
    logging.getLogger("ray.data").setLevel(logging.WARNING if quiet else logging.DEBUG)
    context = DataContext.get_current()
    context.enable_progress_bars = settings.progress
    context.print_on_execution_start = not quiet
    # Files are written in the order given, as a local ingest writes them.
    context.execution_options.preserve_order = True
    resources: dict[str, float] = ray.available_resources()  # type: ignore[no-untyped-call]
    cpus = max(1.0, float(resources.get("CPU", 1.0)))
    blocks = min(math.ceil(len(files) / FILES_PER_BATCH), MAX_BLOCKS)
    workers = max(1, min(int(cpus), blocks))  # an actor with no block to embed is idle
    max_file_mb = settings.max_file_mb

    def parse(row: dict[str, Any]) -> dict[str, Any]:
        parsed = read_and_parse(Path(row["path"]), known.get, max_file_mb)
        return {"parsed": json.dumps(asdict(parsed))}

    pipeline = (
        ray.data.from_items(
            [{"path": str(path)} for path in files],
            override_num_blocks=blocks,
        )
        .map(parse, num_cpus=PARSE_CPUS)
        # A worker that dies is replaced and its batch run again: Ray Data's default for
        # an actor pool (max_restarts and max_task_retries -1).
        .map_batches(
            _Embedding,
            fn_constructor_kwargs={"settings": settings.model_dump(mode="json")},
            batch_size=FILES_PER_BATCH,
            compute=ActorPoolStrategy(size=workers),
            num_cpus=(cpus - PARSE_CPUS * 2) / workers,
        )
    )
    changed = False
    checked = False
    handled: set[str] = set()
    number = 0
    for batch in pipeline.iter_batches(batch_size=None, batch_format="default"):
        if not checked:
            from rag.embed import EmbedderInfo

            check_embedder(EmbedderInfo(**json.loads(str(batch["embedder"][0]))))
            checked = True
        group: list[FileChange] = []
        vectors: dict[str, np.ndarray] = {}
        for parsed_text, pieces_text, hashes_text, blob, dimension in zip(
            batch["parsed"],
            batch["pieces"],
            batch["hashes"],
            batch["vectors"],
            batch["dimension"],
            strict=True,
        ):
            parsed = _parsed(json.loads(str(parsed_text)))
            key = parsed.source or parsed.name
            if key in handled:  # a batch run twice (a retry): already written
                continue
            handled.add(key)
            change = consider(parsed, store, report)
            if change is None:
                continue
            pieces_of: dict[str, list[list[str]]] = json.loads(str(pieces_text))
            change.pieces = [pieces_of[doc.source] for doc, _ in change.write]
            found = np.frombuffer(bytes(blob), dtype=np.float32).reshape(-1, int(dimension))
            vectors.update(zip(json.loads(str(hashes_text)), found, strict=True))
            group.append(change)
        if not group:
            continue
        changed = True
        number += 1
        wanted = {text_hash(p) for c in group for pieces in c.pieces for ps in pieces for p in ps}
        missing = store.missing_embeddings(wanted)
        log.info(
            "ray group %d: writing %d files, %d new passages", number, len(group), len(missing)
        )
        store.write(batch_of(group, {h: vectors[h] for h in missing}))
        report.paragraphs += sum(len(doc.paragraphs) for c in group for doc, _ in c.write)
        report.embedded += len(missing)
        log.info("ray group %d: committed", number)
    return changed


class _Embedding:
    """A Ray actor: loads the embedder once, then cuts and embeds batches of parsed files."""

    def __init__(self, settings: dict[str, Any]) -> None:
        from rag.embed import Embedder

        s = Settings.model_validate(settings)
        self.model = Embedder(
            s.embedder, threads=s.threads or 1, backend=s.embed_backend, home=s.home, progress=False
        )
        self.batch_size = s.batch_size
        self.max_passage_tokens = s.max_passage_tokens

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        from rag.ingest import embed_texts

        out: dict[str, list[Any]] = {
            "parsed": [],
            "pieces": [],
            "hashes": [],
            "vectors": [],
            "dimension": [],
            "embedder": [],
        }
        info = self.model.info
        for parsed_text in batch["parsed"]:
            parsed = _parsed(json.loads(str(parsed_text)))
            pieces_of = {
                doc.source: split_for(
                    self.model, [p.text for p in doc.paragraphs], self.max_passage_tokens
                )
                for doc in parsed.documents
                if doc.paragraphs
            }
            texts = {text_hash(p): p for d in pieces_of.values() for ps in d for p in ps}
            vectors = embed_texts(self.model, list(texts.values()), self.batch_size)
            out["parsed"].append(str(parsed_text))
            out["pieces"].append(json.dumps(pieces_of))
            out["hashes"].append(json.dumps(list(texts)))
            out["vectors"].append(np.ascontiguousarray(vectors, np.float32).tobytes())
            out["dimension"].append(info.dimension)
            out["embedder"].append(json.dumps(asdict(info)))
        return out


def _parsed(data: dict[str, Any]) -> ParsedFile:
    """A ParsedFile from its JSON form (what crosses between Ray processes)."""
    documents = [
        Document(**{**d, "paragraphs": [Paragraph(**p) for p in d["paragraphs"]]})
        for d in data.pop("documents")
    ]
    failures = [FileFailure(**f) for f in data.pop("failures")]
    return ParsedFile(**data, documents=documents, failures=failures)
