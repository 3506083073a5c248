"""Scale-out: the Milvus store beside the folder index, and ingest on Ray (issue 17).

* Recall@5 on the SQuAD tune set, the same questions over the folder index and a Milvus Lite
  collection (each question embedded once, so both stores are asked the same vectors).
* The BBC corpus ingested into a new folder index locally, then on a local Ray cluster of two
  workers: paragraphs/s of each, Ray's start, its fixed cost per run (a one-file ingest on
  Ray minus the same ingest locally, both into a new index, both loading the embedder), the
  rate per worker once running, and where Ray starts to pay on this machine (the paragraphs
  at which the two ingests take equally long; none when Ray's rate is not above the local
  one, as on one machine, where the local ingest already uses every core).
* Search p50 through ``RAG.search`` (the query's embedding included) at 10k and 100k passages,
  folder index and Milvus Lite. The collections are synthetic, as in benchmarks/search.py:
  passages made of real BBC sentences drawn at random (so BM25 sees real postings) with random
  unit vectors, written through each store's own ``write``; they are kept in the work folder
  and reused by a rerun.
* Bytes per passage (computed, not timed): on disk in Milvus Lite, and the fields a Milvus
  server holds per passage, for the memory plan in docs/scaling.md.

    .venv/bin/python -m benchmarks --only scale           # SQuAD tune, all of BBC, 10k and 100k
    .venv/bin/python -m benchmarks --only scale --quick   # 3 SQuAD articles, 40 BBC files, 2k
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import BBC, SQUAD, BenchContext, percentile
from benchmarks.retrieval import embed_questions
from rag import RAG
from rag.evaluate import evaluate, load_squad
from rag.parsers import read_file
from rag.settings import Settings
from rag.stores.base import ArticleWrite, StoredFile, WriteBatch, document_hash, text_hash
from rag.stores.factory import open_store
from rag.types import Document, Paragraph

SIZES = {"2k": 2_000, "10k": 10_000, "100k": 100_000}
STORES = ("folder", "milvus")
QUICK_SQUAD_ARTICLES = 3
QUICK_BBC_FILES = 40
PARAGRAPHS_PER_ARTICLE = 10
TIMED_QUERIES = 100

KEYS = {
    "scale_questions": "SQuAD tune questions searched in both stores",
    "scale_recall5_folder": "paragraph recall@5, folder index, defaults",
    "scale_recall5_milvus": "paragraph recall@5, Milvus Lite, defaults",
    "scale_recall5_delta": "Milvus minus folder recall@5 (the issue asks within 0.01)",
    "scale_ingest_paragraphs": "paragraphs of the BBC ingests below",
    "scale_ingest_pps_local": "paragraphs/s, BBC into a new folder index, local ingest",
    "scale_ingest_pps_ray2": "paragraphs/s, the same on a local Ray cluster of 2 workers",
    "scale_ray_start_s": "seconds for ray.init of a local 2-CPU cluster",
    "scale_ray_overhead_s": "fixed seconds per Ray ingest (one file on Ray minus locally)",
    "scale_ray_pps_per_worker": "paragraphs/s per Ray worker once running (overhead taken off)",
    "scale_ray_breakeven_paragraphs": "paragraphs where Ray on 2 workers pays here (n/a: never)",
    **{
        f"scale_search_p50_ms_{size}_{store}": f"RAG.search p50 ms, {size} passages, {store}"
        for size in SIZES
        for store in STORES
    },
    "scale_lite_bytes_per_passage": "Milvus Lite bytes on disk per passage (100k or 2k)",
    "scale_row_bytes_per_passage": "mean bytes of a BBC passage row's text and scalar fields",
}


def run(ctx: BenchContext) -> dict[str, float | int | str | None]:
    figures: dict[str, float | int | str | None] = {}
    # Ray first: its start forks, which fails once Milvus Lite's gRPC threads run in the process.
    figures |= _ingest(ctx)
    figures |= _recall(ctx)
    figures |= _search(ctx)
    return figures


def _where(store: str, folder: Path) -> dict[str, Any]:
    if store == "milvus":
        return {"store": "milvus", "milvus_uri": str(folder / "milvus.db")}
    return {"index": folder / "index"}


def _recall(ctx: BenchContext) -> dict[str, float | int | str | None]:
    folder = ctx.folder("scale/squad")
    source = SQUAD
    if ctx.quick:
        data = json.loads(SQUAD.read_text())
        data["data"] = data["data"][:QUICK_SQUAD_ARTICLES]
        source = folder / "squad-quick.json"
        source.write_text(json.dumps(data))
    squad = load_squad(source, folder / "corpus")
    figures: dict[str, float | int | str | None] = {"scale_questions": len(squad.questions)}
    vectors: dict[str, Any] = {}
    for store in STORES:
        with RAG(progress=False, **_where(store, folder / store)) as rag:
            rag.ingest(squad.corpus)
            vectors = vectors or embed_questions(rag, [q.question for q in squad.questions])
            rag.retriever.embed_query = vectors.__getitem__
            metrics = evaluate(rag, squad, retrieval_only=True, ingest=False).metrics
        figures[f"scale_recall5_{store}"] = metrics["recall@5"]
        ctx.log(f"{store}: recall@5 {metrics['recall@5']:.4f}")
    folder_recall, milvus_recall = figures["scale_recall5_folder"], figures["scale_recall5_milvus"]
    assert isinstance(folder_recall, float) and isinstance(milvus_recall, float)
    figures["scale_recall5_delta"] = milvus_recall - folder_recall
    return figures


def _bbc_files(ctx: BenchContext) -> list[Path]:
    files = sorted(BBC.rglob("*.txt"))
    if ctx.quick:
        files = random.Random(0).sample(files, QUICK_BBC_FILES)
    return files


def _ingest(ctx: BenchContext) -> dict[str, float | int | str | None]:
    """Every ingest here writes a new index: an index kept from a run before embeds nothing."""
    import ray

    folder = ctx.folder("scale/ingest")
    files = _bbc_files(ctx)

    def ingest(name: str, paths: list[Path], **settings: Any) -> tuple[float, int]:
        shutil.rmtree(folder / name, ignore_errors=True)
        with RAG(folder / name, progress=False, **settings) as rag:
            report = rag.ingest(paths)
        ctx.log(f"{name}: {report.paragraphs} paragraphs in {report.seconds:.1f} s")
        return report.seconds, report.paragraphs

    local_seconds, paragraphs = ingest("local", files)
    one_local, _ = ingest("one-local", files[:1])
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    start_seconds = time.perf_counter() - started
    try:
        one_ray, _ = ingest("one-ray", files[:1], ray=True)
        ray_seconds, ray_paragraphs = ingest("ray", files, ray=True)
    finally:
        ray.shutdown()
    assert ray_paragraphs == paragraphs
    overhead = max(one_ray - one_local, 0.0)
    steady = paragraphs / max(ray_seconds - overhead, 1e-9)
    local_rate = paragraphs / local_seconds
    gain = 1 / local_rate - 1 / steady  # seconds per paragraph that Ray saves once running
    return {
        "scale_ingest_paragraphs": paragraphs,
        "scale_ingest_pps_local": local_rate,
        "scale_ingest_pps_ray2": paragraphs / ray_seconds,
        "scale_ray_start_s": start_seconds,
        "scale_ray_overhead_s": overhead,
        "scale_ray_pps_per_worker": steady / 2,
        "scale_ray_breakeven_paragraphs": overhead / gain if gain > 0 else float("nan"),
        "scale_row_bytes_per_passage": _row_bytes(files),
    }


def _row_bytes(files: list[Path]) -> float:
    """Mean bytes of a Milvus passage row besides its vectors, for the BBC paragraphs: the text
    twice (as read, and stemmed for BM25), source and path, title, the text hash, the integer
    fields (docs/scaling.md adds the vectors and the index)."""
    sizes = []
    for path in files[:200]:
        for doc in read_file(path, path.read_bytes())[0]:
            fixed = 2 * len(doc.source.encode()) + len(doc.title.encode()) + 64 + 7 * 8
            sizes += [2 * len(p.text.encode()) + fixed for p in doc.paragraphs]
    return float(np.mean(sizes)) if sizes else float("nan")


def _search(ctx: BenchContext) -> dict[str, float | int | str | None]:
    figures: dict[str, float | int | str | None] = {}
    questions = [q.question for q in load_squad(SQUAD, ctx.folder("scale/questions")).questions]
    timed = random.Random(0).sample(questions, 20 if ctx.quick else TIMED_QUERIES)
    sentences = _sentences(_bbc_files(ctx))
    for label in ("2k",) if ctx.quick else ("10k", "100k"):
        for store in STORES:
            folder = ctx.folder(f"scale/search-{label}-{store}")
            where = _where(store, folder)
            _synthetic(where, SIZES[label], sentences, ctx)
            with RAG(progress=False, **where) as rag:
                rag.search(timed[0])  # the first search opens the indexes
                seconds = []
                for question in timed:
                    started = time.perf_counter()
                    rag.search(question)
                    seconds.append(time.perf_counter() - started)
            figures[f"scale_search_p50_ms_{label}_{store}"] = percentile(seconds, 50) * 1000
            if store == "milvus":
                size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
                figures["scale_lite_bytes_per_passage"] = size / SIZES[label]
    return figures


def _sentences(files: list[Path]) -> list[str]:
    found: list[str] = []
    for path in files:
        for line in path.read_text(errors="replace").splitlines()[1:]:
            found += [s for s in re.split(r"(?<=[.!?])\s+", line.strip()) if len(s) > 20]
    return found


def _synthetic(where: dict[str, Any], size: int, sentences: list[str], ctx: BenchContext) -> None:
    """``size`` passages of real sentences with random unit vectors in the store ``where``
    names, unless it already holds them; articles of a few paragraphs, written in batches."""
    settings = Settings(progress=False, **where)
    with RAG(settings=settings) as rag:
        info = rag.embedder.info
    store = open_store(settings, create=True, dimension=lambda: info.dimension)
    try:
        if store.has_passages() and store.stats().passages == size:
            return
        if store.has_passages():
            raise SystemExit(f"{where} holds another collection: delete it and run again")
        if store.embedder() is None:
            store.record_embedder(info)
        rng = np.random.default_rng(0)
        pick = random.Random(0)
        articles = size // PARAGRAPHS_PER_ARTICLE
        with store.writing("benchmark"):
            for first in range(0, articles, 100):
                batch = WriteBatch()
                for n in range(first, min(first + 100, articles)):
                    texts = [
                        f"{' '.join(pick.sample(sentences, 3))} ({n}.{i})"
                        for i in range(PARAGRAPHS_PER_ARTICLE)
                    ]
                    document = _document(n, texts)
                    batch.write.append(ArticleWrite(document, document_hash(document), _one(texts)))
                    batch.files.append(StoredFile(document.path, "", 0, "text"))
                    vectors = rng.standard_normal((len(texts), info.dimension)).astype(np.float32)
                    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
                    batch.vectors |= {text_hash(t): v for t, v in zip(texts, vectors, strict=True)}
                store.write(batch)
                if first % 2000 == 0:
                    ctx.log(f"{where}: {first * PARAGRAPHS_PER_ARTICLE} of {size} passages")
            store.publish()
    finally:
        store.close()


def _one(texts: list[str]) -> list[list[str]]:
    return [[t] for t in texts]


def _document(n: int, texts: list[str]) -> Document:
    path = f"/synthetic/{n // 1000:03d}/{n:07d}.txt"
    paragraphs, at = [], 0
    for number, text in enumerate(texts, start=1):
        paragraphs.append(Paragraph(number, text, at, at + len(text)))
        at += len(text) + 2
    published = f"20{n % 24:02d}-{n % 12 + 1:02d}-01"
    return Document(path, path, f"Synthetic article {n}", paragraphs, published=published)
