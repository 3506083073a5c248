"""Answer quality on 100 SQuAD questions (fixed seed), retrieving over all its paragraphs.

Reports the share of answers containing a gold answer, the share of citations
that point at the gold paragraph or a paragraph containing a gold answer, the
share of answers citing the gold paragraph, and the median seconds per answer.

    .venv/bin/python benchmarks/answers.py                          # default model
    .venv/bin/python benchmarks/answers.py --model qwen2.5-coder-0.5b
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rag import RAG
from rag.evaluate import Judged, answer_accuracy, sample, squad_to_jsonl
from rag.settings import Settings

SQUAD = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "squad" / "squad-v1.1-dev-tune.json"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/rag-bench/answers"))
    parser.add_argument("--model", default=Settings().model)
    parser.add_argument("-n", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write every judged answer here (JSON)")
    args = parser.parse_args()

    jsonl = args.workdir / "squad-tune.jsonl"
    questions = sample(squad_to_jsonl(SQUAD, jsonl), args.n, args.seed)
    rag = RAG(args.workdir / "index", model=args.model)
    rag.ingest([jsonl])

    def show(r: Judged) -> None:
        mark = "ok " if r.answer_correct else ("-- " if r.abstained else "no ")
        print(f"{mark} gold¶ {'y' if r.cites_gold else 'n'} {r.seconds:5.1f}s  {r.question}")
        print(f"      → {r.text[:150]}   (gold: {r.gold_answers[0]})", flush=True)

    report = answer_accuracy(rag, questions, jsonl, on_result=show)
    print(json.dumps(report.summary(), indent=2))
    if args.out:
        args.out.write_text(
            json.dumps([r.__dict__ for r in report.results], indent=2, default=list)
        )


if __name__ == "__main__":
    main()
