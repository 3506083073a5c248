"""Retrieval quality on SQuAD v1.1 (tuning half of dev): paragraph recall@1 and @5.

Each SQuAD article becomes one article (its title, its paragraphs in order);
a question's gold paragraph is the one its answers come from. With
``--distractors``, the BBC News corpus is added to the same index and the
figures are measured again.

    .venv/bin/python benchmarks/retrieval.py                      # default settings
    .venv/bin/python benchmarks/retrieval.py --sweep              # compare fusion settings
    .venv/bin/python benchmarks/retrieval.py --distractors        # + the whole BBC corpus

The index is kept in --workdir, so a second run only re-reads it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from rag import RAG
from rag.retrieve import SearchOptions

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SQUAD = SHARED / "squad" / "squad-v1.1-dev-tune.json"
BBC = SHARED / "bbc-news"


def squad_articles(path: Path) -> tuple[list[dict], list[tuple[str, str, int]]]:
    """JSONL records (one per SQuAD article) and (question, article id, paragraph number)."""
    data = json.loads(path.read_text())["data"]
    records, questions = [], []
    for article in data:
        ident = article["title"]
        paragraphs = [p["context"] for p in article["paragraphs"]]
        records.append(
            {"id": ident, "title": ident.replace("_", " "), "text": "\n\n".join(paragraphs)}
        )
        for number, paragraph in enumerate(article["paragraphs"], start=1):
            for qa in paragraph["qas"]:
                questions.append((qa["question"], ident, number))
    return records, questions


def recall(
    rag: RAG, questions: list[tuple[str, str, int]], jsonl: Path, options: SearchOptions
) -> tuple[float, float, float]:
    """(recall@1, recall@k, seconds per question) over all questions."""
    hits1 = hitsk = 0
    started = time.perf_counter()
    retriever = rag.retriever
    for question, ident, number in questions:
        found = retriever.search(question, options)
        gold = (f"{jsonl.resolve()}#{ident}", number)
        ranks = [(p.source, p.paragraph) for p in found]
        hits1 += bool(ranks) and ranks[0] == gold
        hitsk += gold in ranks
    n = len(questions)
    return hits1 / n, hitsk / n, (time.perf_counter() - started) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/rag-bench/squad"))
    parser.add_argument("--distractors", action="store_true", help="add the BBC corpus too")
    parser.add_argument("--sweep", action="store_true", help="compare fusion settings")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N questions")
    args = parser.parse_args()

    args.workdir.mkdir(parents=True, exist_ok=True)
    records, questions = squad_articles(SQUAD)
    if args.limit:
        questions = questions[: args.limit]
    jsonl = args.workdir / "squad-tune.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in records))

    rag = RAG(args.workdir / "index")
    report = rag.ingest([jsonl])
    print(
        f"SQuAD ingest: {report.added} added, {report.unchanged} unchanged, "
        f"{report.paragraphs} paragraphs in {report.seconds:.1f} s"
    )
    # Embed all questions in one batch: the sweep then measures fusion, not the embedder.
    started = time.perf_counter()
    texts = sorted({q for q, _, _ in questions})
    vectors = rag.embedder.embed(texts, batch_size=64)
    cache = dict(zip(texts, vectors, strict=True))
    print(f"embedded {len(texts)} questions in {time.perf_counter() - started:.1f} s")
    rag.retriever.embed_query = lambda q: cache[q]

    s = rag.settings
    default = SearchOptions(
        k=5, fusion=s.fusion, dense_weight=s.dense_weight, rrf_k=s.rrf_k, candidates=s.candidates
    )
    configs = [("default", default)]
    if args.sweep:
        configs += [
            ("lexical", SearchOptions(k=5, fusion="lexical")),
            ("dense", SearchOptions(k=5, fusion="dense")),
            ("rrf k=60", SearchOptions(k=5, fusion="rrf", rrf_k=60)),
        ]
        configs += [
            (f"weighted w={w}", SearchOptions(k=5, fusion="weighted", dense_weight=w))
            for w in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
        ]

    def run(label: str) -> dict[str, tuple[float, float]]:
        results = {}
        for name, options in configs:
            r1, r5, seconds = recall(rag, questions, jsonl, options)
            results[name] = (r1, r5)
            print(
                f"{label:>12} {name:<16} recall@1 {r1:.3f}  recall@5 {r5:.3f}  "
                f"{seconds * 1000:.1f} ms/question  (n={len(questions)})"
            )
        return results

    base = run("SQuAD")
    if args.distractors:
        report = rag.ingest([BBC])
        print(
            f"BBC ingest: {report.added} added, {report.unchanged} unchanged, "
            f"{report.paragraphs} paragraphs in {report.seconds:.1f} s "
            f"({report.paragraphs_per_second:.1f} paragraphs/s)"
        )
        rag.retriever.embed_query = lambda q: cache[q]
        with_bbc = run("SQuAD+BBC")
        for name in base:
            drop = base[name][1] - with_bbc[name][1]
            print(f"{name:<16} recall@5 drop with BBC distractors: {drop:+.3f}")
    print(f"stats: {np.round(len(questions))} questions, index {rag.info().paragraphs} paragraphs")


if __name__ == "__main__":
    main()
