"""Evaluation on SQuAD-format data: retrieval recall and answer accuracy with citations.

SQuAD gives real questions, each with the paragraph it was written from and
crowd-sourced answer spans. Each SQuAD article becomes one article of the
index (its title, its paragraphs in order), so a question's gold paragraph is
``(article, paragraph number)``. Used by ``benchmarks/`` and ``notebooks/``.
"""

from __future__ import annotations

import json
import random
import re
import statistics
import string
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rag.api import RAG
from rag.types import Answer


@dataclass(frozen=True)
class Question:
    question: str
    article: str
    """SQuAD title, used as the JSONL id (so the source is ``file#title``)."""
    paragraph: int
    answers: tuple[str, ...]


def squad_to_jsonl(squad: Path, out: Path) -> list[Question]:
    """Write one JSONL article per SQuAD title (paragraphs in order) and return the questions."""
    data = json.loads(Path(squad).read_text(encoding="utf-8"))["data"]
    lines, questions = [], []
    for article in data:
        title = article["title"]
        contexts = [p["context"] for p in article["paragraphs"]]
        record = {"id": title, "title": title.replace("_", " "), "text": "\n\n".join(contexts)}
        lines.append(json.dumps(record, ensure_ascii=False))
        for number, paragraph in enumerate(article["paragraphs"], start=1):
            for qa in paragraph["qas"]:
                answers = tuple(dict.fromkeys(a["text"] for a in qa["answers"]))
                questions.append(Question(qa["question"], title, number, answers))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return questions


def sample(questions: list[Question], n: int, seed: int = 0) -> list[Question]:
    """``n`` questions drawn with a fixed seed: the same set every run."""
    return random.Random(seed).sample(questions, min(n, len(questions)))


def normalize(text: str) -> str:
    """SQuAD's answer normalisation: lower case, no punctuation, articles or extra spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation) | {"‘", "’", "“", "”"})
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def contains_answer(text: str, answers: tuple[str, ...]) -> bool:
    """Whether any gold answer appears in ``text`` (both normalised)."""
    haystack = f" {normalize(text)} "
    return any(f" {normalize(a)} " in haystack for a in answers if normalize(a))


@dataclass
class Recall:
    at1: float
    atk: float
    k: int
    questions: int
    ms_per_question: float


def retrieval_recall(
    rag: RAG, questions: list[Question], jsonl: Path, k: int = 5, **options: Any
) -> Recall:
    """Paragraph recall@1 and @k: the share of questions whose gold paragraph is ranked there."""
    hits1 = hitsk = 0
    started = time.perf_counter()
    prefix = f"{Path(jsonl).resolve()}#"
    for q in questions:
        ranked = [(p.source, p.paragraph) for p in rag.search(q.question, k=k, **options)]
        gold = (prefix + q.article, q.paragraph)
        hits1 += bool(ranked) and ranked[0] == gold
        hitsk += gold in ranked
    n = max(len(questions), 1)
    return Recall(
        hits1 / n, hitsk / n, k, len(questions), (time.perf_counter() - started) / n * 1e3
    )


@dataclass
class Judged:
    """One question answered and judged against SQuAD's gold data."""

    question: str
    gold_answers: tuple[str, ...]
    text: str
    raw_text: str
    """What the model wrote, before the citation check (tells a refusal from a rejection)."""
    abstained: bool
    seconds: float
    answer_correct: bool
    """A gold answer appears in the answer text."""
    cites_gold: bool
    """The answer cites the gold paragraph."""
    citations: int
    good_citations: int
    """Citations to the gold paragraph or to a paragraph containing a gold answer."""
    gold_retrieved: bool


@dataclass
class AnswerReport:
    model: str
    questions: int
    answer_in_text: float
    citation_precision: float
    cites_gold: float
    abstained: float
    gold_retrieved: float
    median_seconds: float
    results: list[Judged] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("results")
        return data


def judge(answer: Answer, q: Question, source_prefix: str, seconds: float) -> Judged:
    gold = (source_prefix + q.article, q.paragraph)
    cited = [(c.passage.source, c.passage.paragraph) for c in answer.citations]
    good = sum(
        1
        for c in answer.citations
        if (c.passage.source, c.passage.paragraph) == gold
        or contains_answer(c.passage.text, q.answers)
    )
    return Judged(
        question=q.question,
        gold_answers=q.answers,
        text=answer.text,
        raw_text=answer.raw_text,
        abstained=answer.abstained,
        seconds=seconds,
        answer_correct=not answer.abstained and contains_answer(answer.text, q.answers),
        cites_gold=gold in cited,
        citations=len(cited),
        good_citations=good,
        gold_retrieved=gold in [(p.source, p.paragraph) for p in answer.passages],
    )


def answer_accuracy(
    rag: RAG,
    questions: list[Question],
    jsonl: Path,
    on_result: Callable[[Judged], None] | None = None,
) -> AnswerReport:
    """Ask each question and judge the answer and its citations against the gold data."""
    prefix = f"{Path(jsonl).resolve()}#"
    results: list[Judged] = []
    for q in questions:
        started = time.perf_counter()
        answer = rag.ask(q.question)
        judged = judge(answer, q, prefix, time.perf_counter() - started)
        results.append(judged)
        if on_result:
            on_result(judged)
    return summarize(rag.settings.model, results)


def summarize(model: str, results: list[Judged]) -> AnswerReport:
    n = max(len(results), 1)
    citations = sum(r.citations for r in results)
    return AnswerReport(
        model=model,
        questions=len(results),
        answer_in_text=sum(r.answer_correct for r in results) / n,
        citation_precision=sum(r.good_citations for r in results) / citations if citations else 0,
        cites_gold=sum(r.cites_gold for r in results) / n,
        abstained=sum(r.abstained for r in results) / n,
        gold_retrieved=sum(r.gold_retrieved for r in results) / n,
        median_seconds=statistics.median(r.seconds for r in results) if results else 0.0,
        results=results,
    )
