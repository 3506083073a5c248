"""Answer quality on 100 SQuAD questions (fixed seed), retrieving over all its paragraphs.

Reports the share of answers containing a gold answer (``contains``), the share
of citations that point at the gold paragraph or a paragraph containing a gold
answer (``citation_precision``), the share of answers citing the gold paragraph
(``citation_recall``), and the median seconds per answer (``answer_p50_s``).

    .venv/bin/python benchmarks/answers.py                          # default model
    .venv/bin/python benchmarks/answers.py --model qwen2.5-coder-0.5b
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rag import RAG
from rag.evaluate import EvalRecord, evaluate, load_squad
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
    parser.add_argument("--out", type=Path, help="write every judged answer here (JSONL)")
    args = parser.parse_args()

    squad = load_squad(SQUAD, args.workdir)
    rag = RAG(args.workdir / "index", model=args.model, progress=False)

    def show(r: EvalRecord) -> None:
        mark = "ok " if r.contains else ("-- " if r.abstained else "no ")
        gold = "y" if r.cites_gold else "n"
        print(f"{mark} gold¶ {gold} {r.answer_seconds:5.1f}s  {r.question}")
        print(f"      → {(r.answer or '')[:150]}   (gold: {r.answers[0]})", flush=True)

    result = evaluate(rag, squad, limit=args.n, seed=args.seed, on_record=show)
    print(json.dumps({"model": args.model, **result.metrics}, indent=2))
    if args.out:
        result.to_jsonl(args.out)


if __name__ == "__main__":
    main()
