"""Ingest embedding: our embedder against plain sentence-transformers, speed and recall.

Speed: the SQuAD tune paragraphs (all 1,023; ``--quick`` the first articles, about 300)
embedded by plain ``SentenceTransformer.encode`` (fp32, default settings: batches of 32,
torch's default threads) and by our ingest embedding (the passages ``rag.ingest`` cuts them
into, embedded by ``rag.ingest._embed`` in its slices, with the default backend). The two
alternate within each repeat, in turns, so a busy machine slows both alike; figures are
medians of ``ctx.repeats`` and the speed-up is the ratio of the two medians.

Recall: the same corpus ingested twice through the real ``RAG`` (once with
``embed_backend="torch"``, the plain pipeline, once with the default backend), then every
SQuAD tune question (5,397; ``--quick`` 300 of the quick corpus's) searched one at a time through
``RAG.search`` with default settings (hybrid) and dense-only. Also measured: passages from
our backend with questions embedded in fp32 (``mixed``), which the index's fingerprint
forbids in normal use; it shows what that mix would cost.

Both models run in this process, after ``import rag`` (which sets ``OMP_WAIT_POLICY=PASSIVE``
for torch, as every use of the project does). The indexes are kept in the work folder and
reused by a rerun (an index built by another version of our export is rebuilt).

    .venv/bin/python -m benchmarks --only embed
    .venv/bin/python -m benchmarks --only embed --quick
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import SQUAD, BenchContext, current_index, median
from rag import RAG
from rag.embed import Embedder, load_sentence_transformer, resolve_embedder_path
from rag.evaluate import EvalSet, evaluate, load_squad
from rag.ingest import embed_texts
from rag.passages import split_passages
from rag.settings import DEFAULT_EMBEDDER, Settings

KEYS = {
    "embed_backend": "our embedder's backend and fingerprint (plain: torch fp32)",
    "embed_paragraphs": "SQuAD tune paragraphs embedded per timed run (passages: ours cuts >256)",
    "embed_plain_pps": "plain SentenceTransformer.encode, fp32 defaults: paragraphs/s, median",
    "embed_ours_pps": "our ingest embedding (ingest's passages and slices): paragraphs/s, median",
    "embed_speedup_vs_plain": "ours over plain, ratio of the medians, same run (target >= 3)",
    "embed_cosine_mean": "cosine between plain and our vector of each paragraph, mean",
    "embed_cosine_min": "the same, lowest",
    "embed_query_ms_plain": "one question embedded alone, plain, median ms",
    "embed_query_ms_ours": "one question embedded alone, ours, median ms",
    "embed_load_s": "loading our embedder once its export exists, median s",
    "embed_export_s": "the one-time export (ONNX, int8 weights) when it was made, s",
    "embed_questions": "SQuAD tune questions searched for the recall figures",
    "embed_recall5_plain": "recall@5, RAG.search defaults (hybrid), plain torch fp32 index",
    "embed_recall5_ours": "recall@5, RAG.search defaults (hybrid), our index",
    "embed_recall5_delta": "ours minus plain, hybrid (target >= -0.01)",
    "embed_recall5_dense_plain": "recall@5, dense only, plain",
    "embed_recall5_dense_ours": "recall@5, dense only, ours",
    "embed_recall5_dense_delta": "ours minus plain, dense only",
    "embed_recall5_mixed_delta": "our passages with fp32 questions, minus plain, hybrid",
    "embed_recall5_dense_mixed_delta": "our passages with fp32 questions, minus plain, dense",
}

QUICK_ARTICLES = 6  # the first six SQuAD tune articles hold 311 paragraphs
QUICK_QUESTIONS = 300


def run(ctx: BenchContext) -> dict[str, float | int | str | None]:
    # Apart: the quick corpus is a subset, and its articles in the full index would be
    # duplicates (another source) that tie with the gold paragraphs.
    root = ctx.folder("embed-quick" if ctx.quick else "embed")
    squad_file = _squad_file(root, ctx.quick)
    paragraphs = [
        p["context"]
        for article in json.loads(squad_file.read_text())["data"]
        for p in article["paragraphs"]
    ]
    settings = Settings(progress=False)  # RAG_EMBED_BACKEND picks the backend measured
    started = time.perf_counter()
    ours = Embedder(
        DEFAULT_EMBEDDER, backend=settings.embed_backend, home=settings.home, progress=True
    )
    seconds = time.perf_counter() - started
    ctx.log(f"our embedder {ours.info.fingerprint} ready in {seconds:.1f} s")
    plain = _plain_model()
    figures: dict[str, float | int | str | None] = {
        "embed_backend": f"{ours.info.backend} {ours.info.fingerprint}",
        "embed_paragraphs": len(paragraphs),
    }
    figures |= _speed(ctx, plain, ours, paragraphs, settings)
    figures |= _load_and_export(ctx, ours, settings)
    figures |= _recall(ctx, root, squad_file, plain, ours)
    return figures


def _squad_file(root: Path, quick: bool) -> Path:
    """The SQuAD tune file, or (quick) a copy of its first few articles."""
    if not quick:
        return SQUAD
    data = json.loads(SQUAD.read_text())
    data["data"] = data["data"][:QUICK_ARTICLES]
    path = root / "squad-quick.json"
    text = json.dumps(data)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def _plain_model() -> Any:
    """sentence-transformers as anyone would load it: fp32, CPU, default settings."""
    return load_sentence_transformer(DEFAULT_EMBEDDER, resolve_embedder_path(DEFAULT_EMBEDDER))


def _speed(
    ctx: BenchContext, plain: Any, ours: Embedder, paragraphs: list[str], settings: Settings
) -> dict[str, float | int | str | None]:
    from rich.progress import Progress

    limit = min(settings.max_passage_tokens, ours.max_tokens)
    passages = [part for p in paragraphs for part in split_passages(p, ours.count_tokens, limit)]
    ctx.log(f"{len(paragraphs)} paragraphs, {len(passages)} passages as ingest cuts them")

    def plain_run() -> np.ndarray:
        return plain.encode(paragraphs)

    def ours_run() -> np.ndarray:
        with Progress(disable=True) as progress:
            task = progress.add_task("Embedding", total=len(passages))
            return embed_texts(ours, passages, settings.batch_size, progress, task)

    # Once each first, untimed: warms caches and allocators, and compares the vectors.
    cosine = np.sum(plain_run() * ours.embed(paragraphs), axis=1)
    ours_run()
    seconds: dict[str, list[float]] = {"plain": [], "ours": []}
    runs = {"plain": plain_run, "ours": ours_run}
    for turn in range(ctx.repeats):
        # Alternate who goes first, so a drift in the machine's load hits both alike.
        for name in ("plain", "ours") if turn % 2 == 0 else ("ours", "plain"):
            started = time.perf_counter()
            runs[name]()
            seconds[name].append(time.perf_counter() - started)
        ctx.log(
            f"turn {turn + 1}/{ctx.repeats}: plain {seconds['plain'][-1]:.1f} s, "
            f"ours {seconds['ours'][-1]:.1f} s"
        )
    plain_s, ours_s = median(seconds["plain"]), median(seconds["ours"])
    questions = _questions(paragraphs)[:100]
    query_ms: dict[str, list[float]] = {"plain": [], "ours": []}
    for question in questions:
        for name, embed in (
            ("plain", lambda q: plain.encode([q])),
            ("ours", lambda q: ours.embed([q])),
        ):
            started = time.perf_counter()
            embed(question)
            query_ms[name].append((time.perf_counter() - started) * 1e3)
    return {
        "embed_cosine_mean": round(float(cosine.mean()), 4),
        "embed_cosine_min": round(float(cosine.min()), 4),
        "embed_plain_pps": round(len(paragraphs) / plain_s, 2),
        "embed_ours_pps": round(len(paragraphs) / ours_s, 2),
        "embed_speedup_vs_plain": round(plain_s / ours_s, 3),
        "embed_query_ms_plain": round(median(query_ms["plain"]), 2),
        "embed_query_ms_ours": round(median(query_ms["ours"]), 2),
    }


def _questions(paragraphs: list[str]) -> list[str]:
    wanted = set(paragraphs)
    return [
        qa["question"]
        for article in json.loads(SQUAD.read_text())["data"]
        for p in article["paragraphs"]
        if p["context"] in wanted
        for qa in p["qas"]
    ]


def _load_and_export(
    ctx: BenchContext, ours: Embedder, settings: Settings
) -> dict[str, float | int | str | None]:
    loads = []
    for _ in range(ctx.repeats):
        started = time.perf_counter()
        Embedder(DEFAULT_EMBEDDER, backend=ours.backend, home=settings.home, progress=False)
        loads.append(time.perf_counter() - started)
    manifest = getattr(ours._impl, "manifest", {})
    return {
        "embed_load_s": round(median(loads), 3),
        "embed_export_s": manifest.get("seconds"),
    }


def _recall(
    ctx: BenchContext, root: Path, squad_file: Path, plain: Any, ours: Embedder
) -> dict[str, float | int | str | None]:
    squad = load_squad(squad_file, root / "corpus")
    # The same seeded sample for every pass, so the deltas compare like with like.
    limit = QUICK_QUESTIONS if ctx.quick else None
    questions = min(limit or len(squad.questions), len(squad.questions))
    ctx.log(f"{questions} of {len(squad.questions)} questions")
    figures: dict[str, float | int | str | None] = {"embed_questions": questions}
    results: dict[str, float] = {}
    for label, backend in (("plain", "torch"), ("ours", ours.backend)):
        rag = current_index(root / f"index-{backend}", squad.corpus, ctx, embed_backend=backend)
        for fusion in ("hybrid", "dense"):
            results[f"{fusion}_{label}"] = _recall5(rag, squad, fusion, limit)
            ctx.log(f"{label} {fusion}: recall@5 {results[f'{fusion}_{label}']:.4f}")
        if label == "ours":
            # Questions in fp32 against our passages: replace the retriever's query embedding.
            rag.retriever.embed_query = lambda q: np.asarray(plain.encode([q])[0], np.float32)
            for fusion in ("hybrid", "dense"):
                results[f"{fusion}_mixed"] = _recall5(rag, squad, fusion, limit)
                ctx.log(f"mixed {fusion}: recall@5 {results[f'{fusion}_mixed']:.4f}")
        rag.close()
    figures |= {
        "embed_recall5_plain": round(results["hybrid_plain"], 4),
        "embed_recall5_ours": round(results["hybrid_ours"], 4),
        "embed_recall5_delta": round(results["hybrid_ours"] - results["hybrid_plain"], 4),
        "embed_recall5_dense_plain": round(results["dense_plain"], 4),
        "embed_recall5_dense_ours": round(results["dense_ours"], 4),
        "embed_recall5_dense_delta": round(results["dense_ours"] - results["dense_plain"], 4),
        "embed_recall5_mixed_delta": round(results["hybrid_mixed"] - results["hybrid_plain"], 4),
        "embed_recall5_dense_mixed_delta": round(
            results["dense_mixed"] - results["dense_plain"], 4
        ),
    }
    return figures


def _recall5(rag: RAG, squad: EvalSet, fusion: str, limit: int | None) -> float:
    options = {} if fusion == "hybrid" else {"fusion": "dense"}
    result = evaluate(
        rag, squad, limit=limit, retrieval_only=True, search_options=options, ingest=False
    )
    return float(result.metrics["recall@5"])
