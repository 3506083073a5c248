"""Answer quality next to the speed figures: 100 SQuAD tune questions with the default model.

A speed change may not cost quality, so every full benchmark run measures it
again with the same code ``rag eval`` uses (fixed seed, retrieval over every
SQuAD tune paragraph).
"""

from __future__ import annotations

from benchmarks.common import SQUAD, BenchContext
from rag import RAG
from rag.evaluate import evaluate, load_squad
from rag.settings import Settings

KEYS = {
    "quality_model": "generator the answer figures below were measured with",
    "quality_n": "questions answered",
    "answer_contains": "share of answers containing a gold answer (SQuAD normalisation)",
    "answer_f1": "token F1 against the gold answers (max over them)",
    "answer_citation_precision": "share of citations to the gold paragraph or one with an answer",
    "answer_citation_recall": "share of answers citing the gold paragraph",
    "answer_false_decline": "share of answerable questions declined",
    "answer_p50_s": "median seconds per answer (retrieval, prompt and generation)",
}


def run(ctx: BenchContext) -> dict[str, float | int | str | None]:
    model = Settings().model
    folder = ctx.folder("quality")
    squad = load_squad(SQUAD, folder)
    n = 10 if ctx.quick else 100
    with RAG(folder / "index", progress=False) as rag:
        result = evaluate(rag, squad, limit=n, seed=0)
    m = result.metrics
    return {
        "quality_model": model,
        "quality_n": m["n"],
        "answer_contains": m["contains"],
        "answer_f1": m["f1"],
        "answer_citation_precision": m["citation_precision"],
        "answer_citation_recall": m["citation_recall"],
        "answer_false_decline": m["false_decline"],
        "answer_p50_s": m["answer_p50_s"],
    }
