"""Retrieval quality on SQuAD v1.1 (tuning half of dev): paragraph recall@1, @5 and MRR.

Each SQuAD article becomes one article (its title, its paragraphs in order); a question's
gold paragraph is the one its answers come from. Every question (5,397; ``--quick`` the
first 500) is searched with the default settings and with each fusion method; then over a
second index that also holds the whole BBC News corpus, as distractors, with the default
settings, and the ingest rate of the BBC corpus is reported (both indexes are kept in the
work folder, so a rerun embeds nothing and reports no rate).

    .venv/bin/python -m benchmarks --only retrieval
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.common import BBC, SQUAD, BenchContext
from rag import RAG
from rag.evaluate import evaluate, load_squad

QUICK_QUESTIONS = 500

# Label in the keys -> retrieval settings for the search.
CONFIGS: dict[str, dict[str, Any]] = {
    "lexical": {"fusion": "lexical"},
    "dense": {"fusion": "dense"},
    "rrf": {"fusion": "rrf"},
    **{f"weighted_w{int(w * 10)}": {"fusion": "weighted", "dense_weight": w} for w in (0.3, 0.7)},
}

KEYS = {
    "retrieval_questions": "SQuAD tune questions searched",
    "retrieval_recall1": "paragraph recall@1, RAG.search defaults (weighted fusion)",
    "retrieval_recall5": "paragraph recall@5, defaults",
    "retrieval_mrr": "mean reciprocal rank of the gold paragraph (top 20), defaults",
    **{f"retrieval_recall5_{label}": f"recall@5, {label} fusion settings" for label in CONFIGS},
    "retrieval_recall1_bbc": "recall@1 with the whole BBC corpus in the same index",
    "retrieval_recall5_bbc": "recall@5 with the whole BBC corpus in the same index",
    "retrieval_recall5_bbc_delta": "recall@5 with BBC minus without (distractors' cost)",
    "ingest_bbc_pps": "paragraphs/s embedding the BBC corpus into the index (when it was added)",
}


def run(ctx: BenchContext) -> dict[str, float | int | str | None]:
    folder = ctx.folder("retrieval")
    squad = load_squad(SQUAD, folder / "corpus")
    if ctx.quick:
        squad.questions = squad.questions[:QUICK_QUESTIONS]
    figures: dict[str, float | int | str | None] = {"retrieval_questions": len(squad.questions)}
    # Two indexes, each kept between runs: SQuAD alone, and SQuAD with the BBC corpus.
    with RAG(folder / "squad", progress=False, create=True) as rag:
        rag.ingest(squad.corpus)
        vectors = embed_questions(rag, [q.question for q in squad.questions])

        def recall(**options: Any) -> dict[str, Any]:
            rag.retriever.embed_query = vectors.__getitem__
            return evaluate(
                rag, squad, retrieval_only=True, search_options=options, ingest=False
            ).metrics

        default = recall()
        figures |= {
            "retrieval_recall1": default["recall@1"],
            "retrieval_recall5": default["recall@5"],
            "retrieval_mrr": default["mrr"],
        }
        for label, options in CONFIGS.items():
            figures[f"retrieval_recall5_{label}"] = recall(**options)["recall@5"]
            ctx.log(f"{label}: recall@5 {figures[f'retrieval_recall5_{label}']:.4f}")

    with RAG(folder / "squad-bbc", progress=False, create=True) as rag:
        rag.ingest(squad.corpus)
        started = time.perf_counter()
        report = rag.ingest([BBC])
        ctx.log(f"BBC ingest: {report.added} added in {time.perf_counter() - started:.0f} s")
        figures["ingest_bbc_pps"] = report.paragraphs_per_second if report.embedded else None
        rag.retriever.embed_query = vectors.__getitem__
        with_bbc = evaluate(rag, squad, retrieval_only=True, ingest=False).metrics
    figures |= {
        "retrieval_recall1_bbc": with_bbc["recall@1"],
        "retrieval_recall5_bbc": with_bbc["recall@5"],
        "retrieval_recall5_bbc_delta": with_bbc["recall@5"] - default["recall@5"],
    }
    return figures


def embed_questions(rag: RAG, questions: list[str]) -> dict[str, Any]:
    """Every question embedded once, in batches, so that the configurations compare fusion,
    not the embedder's speed."""
    texts = sorted(set(questions))
    return dict(zip(texts, rag.embedder.embed(texts, batch_size=64), strict=True))
