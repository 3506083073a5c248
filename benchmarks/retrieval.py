"""Retrieval quality on SQuAD v1.1 (tuning half of dev): paragraph recall@1 and @5.

Each SQuAD article becomes one article (its title, its paragraphs in order);
a question's gold paragraph is the one its answers come from. With
``--distractors``, the whole BBC News corpus is added to the same index and the
figures are measured again.

    .venv/bin/python benchmarks/retrieval.py                      # default settings
    .venv/bin/python benchmarks/retrieval.py --sweep              # compare fusion settings
    .venv/bin/python benchmarks/retrieval.py --distractors        # + the whole BBC corpus

The index is kept in --workdir, so a second run only re-reads it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rag import RAG
from rag.evaluate import evaluate, load_squad

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SQUAD = SHARED / "squad" / "squad-v1.1-dev-tune.json"
BBC = SHARED / "bbc-news"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/rag-bench/squad"))
    parser.add_argument("--distractors", action="store_true", help="add the BBC corpus too")
    parser.add_argument("--sweep", action="store_true", help="compare fusion settings")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N questions")
    args = parser.parse_args()

    squad = load_squad(SQUAD, args.workdir)
    if args.limit:
        squad.questions = squad.questions[: args.limit]
    questions = squad.questions

    rag = RAG(args.workdir / "index", progress=False)
    report = rag.ingest(squad.corpus)
    print(
        f"SQuAD ingest: {report.added} added, {report.unchanged} unchanged, "
        f"{report.paragraphs} paragraphs in {report.seconds:.1f} s"
    )
    # Embed all questions in one batch, so the sweep measures fusion, not the embedder.
    started = time.perf_counter()
    texts = sorted({q.question for q in questions})
    cache = dict(zip(texts, rag.embedder.embed(texts, batch_size=64), strict=True))
    print(f"embedded {len(texts)} questions in {time.perf_counter() - started:.1f} s")

    configs: dict[str, dict] = {"default": {}}
    if args.sweep:
        configs |= {
            "lexical": {"fusion": "lexical"},
            "dense": {"fusion": "dense"},
            "rrf k=60": {"fusion": "rrf", "rrf_k": 60},
        }
        configs |= {
            f"weighted w={w}": {"fusion": "weighted", "dense_weight": w}
            for w in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
        }

    def run(label: str) -> dict[str, float]:
        rag.retriever.embed_query = cache.__getitem__
        at5 = {}
        for name, options in configs.items():
            m = evaluate(
                rag, squad, retrieval_only=True, search_options=options, ingest=False
            ).metrics
            at5[name] = m["recall@5"]
            print(
                f"{label:>10} {name:<16} recall@1 {m['recall@1']:.4f}  "
                f"recall@5 {m['recall@5']:.4f}  mrr {m['mrr']:.4f}  "
                f"{m['retrieval_p50_s'] * 1e3:.1f} ms/question (p50, n={m['n']})",
                flush=True,
            )
        return at5

    base = run("SQuAD")
    if args.distractors:
        report = rag.ingest([BBC])
        print(
            f"BBC ingest: {report.added} added, {report.unchanged} unchanged, "
            f"{report.paragraphs} paragraphs in {report.seconds:.1f} s "
            f"({report.paragraphs_per_second:.1f} paragraphs/s)"
        )
        with_bbc = run("SQuAD+BBC")
        for name, value in base.items():
            print(f"{name:<16} recall@5 change with BBC distractors: {with_bbc[name] - value:+.4f}")
    print(f"index: {rag.info().articles} articles, {rag.info().paragraphs} paragraphs")


if __name__ == "__main__":
    main()
