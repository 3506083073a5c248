"""Running an evaluation: every question searched and answered, judged, and summed up.

:func:`evaluate` samples questions with a seed and goes through the public API only
(:meth:`RAG.search`, :meth:`RAG.ask`), keeping one :class:`EvalRecord` per question so that
errors can be read one by one; :func:`summarize` turns them into metrics, overall and (for the
news set) per kind of question. The CLI (``rag eval``), the benchmarks and the notebooks are
thin layers over it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.cite.refusal import is_refusal, is_refusal_sentence
from rag.evaluate.datasets import EvalQuestion, EvalSet, sample
from rag.evaluate.metrics import (
    contains_answer,
    exact_match,
    f1_score,
    mean,
    mean_reciprocal_rank,
    percentile,
    recall_at,
    share,
    states,
)
from rag.feedback import progress_bar
from rag.types import Answer, Passage, Reading

if TYPE_CHECKING:  # pandas is an optional dependency (the "eval" extra)
    import pandas

    from rag.api import RAG

__all__ = [
    "DEFAULT_ANSWER_LIMIT",
    "KINDS",
    "RECALL_AT",
    "EvalRecord",
    "EvalResult",
    "evaluate",
    "kind_table",
    "summarize",
]

RECALL_AT = (1, 3, 5, 10, 20)
"""The k of the reported paragraph recall@k; retrieval fetches the largest."""

DEFAULT_ANSWER_LIMIT = 100
"""Questions answered when no limit is given (answering all of SQuAD takes a day)."""

KINDS = ("single", "two-part", "cross-article", "unanswerable")
"""The news set's kinds of question, in the order they are reported."""


@dataclass
class EvalRecord:
    """One question, what was retrieved and answered, and how it was judged."""

    question: str
    answers: list[str]
    answerable: bool
    gold: str | None
    """The gold paragraph as ``source ¶ n`` (or the evidence), when known."""
    retrieved: list[str]
    """Texts of the retrieved passages, best first."""
    retrieved_ids: list[str]
    """The same passages as ``source ¶ paragraph``."""
    gold_rank: int | None
    """Rank (from 1) of the first gold passage among those retrieved."""
    retrieval_seconds: float
    id: str = ""
    answer: str | None = None
    abstained: bool | None = None
    citations: list[dict[str, Any]] = field(default_factory=list)
    exact_match: float | None = None
    f1: float | None = None
    contains: bool | None = None
    cites_gold: bool | None = None
    good_citations: int | None = None
    """Citations to the gold paragraph or to a paragraph that contains a gold answer."""
    unsupported_citations: int | None = None
    answer_seconds: float | None = None
    raw_answer: str | None = None
    attempts: int | None = None
    """2 when the best passage alone gave no supported answer (setting ``best_first``)."""
    kind: str = ""
    given: list[str] = field(default_factory=list)
    """The passages the answer was written from (``source ¶ n``), in prompt order."""
    sentences: list[dict[str, Any]] = field(default_factory=list)
    """The checked answer's sentences: text, citations, supported."""
    readings: list[dict[str, Any]] = field(default_factory=list)
    """Each reading of the model: the passages it read, its raw text, what the check made of it."""
    facts_stated: list[bool] = field(default_factory=list)
    """For each fact the question asks for: whether the answer states it."""
    facts_cited: list[bool] = field(default_factory=list)
    """For each stated fact: whether its sentence cites a paragraph that states it."""
    said_missing: bool | None = None
    """Whether the answer says plainly that something asked for is not in the articles."""
    check: str | None = None
    """What the citation check made of the first reading, judged against the gold facts:
    ``kept right``, ``dropped right``, ``caught wrong`` or ``kept wrong`` (none when the model
    declined itself or stated only some of the facts)."""


@dataclass
class EvalResult:
    """Metrics over the sample and the per-question records behind them."""

    metrics: dict[str, Any]
    records: list[EvalRecord]

    def dataframe(self) -> pandas.DataFrame:
        """The records as a pandas DataFrame (one row per question)."""
        import pandas

        return pandas.DataFrame([asdict(r) for r in self.records])

    def to_jsonl(self, path: str | Path) -> None:
        """Write the records, one JSON object per line."""
        with Path(path).open("w", encoding="utf-8") as out:
            for record in self.records:
                out.write(json.dumps(asdict(record), ensure_ascii=False) + "\n")


def _passage_id(passage: Passage) -> str:
    return f"{passage.source} ¶ {passage.paragraph}"


def _gold_label(q: EvalQuestion) -> str | None:
    if not q.answerable:
        return None
    if q.source is not None:
        return f"{q.source} ¶ {q.paragraph}" if q.paragraph is not None else q.source
    return q.evidence


def _judge_answer(record: EvalRecord, q: EvalQuestion, answer: Answer, seconds: float) -> None:
    text = "" if answer.abstained else answer.text
    record.answer = answer.text
    record.raw_answer = answer.raw_text
    record.attempts = answer.attempts
    record.abstained = answer.abstained
    record.answer_seconds = seconds
    record.given = [_passage_id(p) for p in answer.passages]
    record.sentences = [asdict(s) for s in answer.sentences]
    record.readings = [asdict(r) for r in getattr(answer, "readings", [])]
    record.citations = [
        {
            "number": c.number,
            "source": c.passage.source,
            "paragraph": c.passage.paragraph,
            "supported": c.supported,
            "support": c.support,
            "gold": q.is_gold(c.passage),
            "backs": q.backs(c.passage),
            "text": c.passage.text,
        }
        for c in answer.citations
    ]
    record.said_missing = any(is_refusal_sentence(s.text) for s in answer.sentences)
    if q.answerable:
        record.exact_match = exact_match(text, q.answers)
        record.f1 = f1_score(text, q.answers)
        record.contains = contains_answer(text, q.answers)
        record.cites_gold = any(c["gold"] for c in record.citations)
    if q.facts:
        record.facts_stated = [states(text, forms) for forms in q.facts]
        cited = {c.number: c.passage for c in answer.citations}
        record.facts_cited = [
            any(
                states(s.text, forms)
                and any(
                    states(cited[n].text, forms) or q.is_gold(cited[n])
                    for n in s.citations
                    if n in cited
                )
                for s in answer.sentences
            )
            for forms, stated in zip(q.facts, record.facts_stated, strict=True)
            if stated
        ]
    record.good_citations = sum(1 for c in record.citations if c["backs"])
    record.unsupported_citations = sum(not c.supported for c in answer.citations)
    if readings := getattr(answer, "readings", []):
        record.check = _judge_check(q, readings[0])


def _judge_check(q: EvalQuestion, reading: Reading) -> str | None:
    """The check's verdict on one reading, against the truth: a model answer stating every gold
    fact is right, one stating none (or any answer to an unanswerable question) is wrong.

    These are the pairs the check must tell apart on the model's own answers: right ones kept,
    wrong ones caught.
    """
    if is_refusal(reading.raw_text):
        return None
    kept = "" if reading.abstained else reading.text

    def stated(text: str) -> list[bool]:
        if q.facts:
            return [states(text, forms) for forms in q.facts]
        return [contains_answer(text, q.answers)]

    raw = stated(reading.raw_text) if q.answerable else [False]
    if all(raw):
        return "kept right" if all(stated(kept)) else "dropped right"
    if not any(raw):
        return "caught wrong" if reading.abstained else "kept wrong"
    return None


def evaluate(
    rag: RAG,
    evalset: EvalSet,
    *,
    limit: int | None = None,
    seed: int = 0,
    retrieval_only: bool = False,
    recall_at: tuple[int, ...] = RECALL_AT,
    search_options: dict[str, Any] | None = None,
    ingest: bool = True,
    on_record: Callable[[EvalRecord], None] | None = None,
) -> EvalResult:
    """Evaluate ``rag`` on a sample of ``evalset``'s questions.

    The corpus is ingested first (incremental: a second run embeds nothing).
    ``limit`` questions are drawn with ``seed``: all of them by default for
    ``retrieval_only``, :data:`DEFAULT_ANSWER_LIMIT` otherwise. Every question is
    searched (``recall_at``'s largest k, with ``search_options`` such as
    ``fusion="lexical"``); unless ``retrieval_only``, it is also answered with
    :meth:`RAG.ask`.
    """
    if ingest and evalset.corpus:
        rag.ingest(evalset.corpus)
    if limit is None and not retrieval_only:
        limit = DEFAULT_ANSWER_LIMIT
    questions = sample(evalset.questions, limit, seed)
    depth = max(recall_at)
    if questions:  # load the models first, so that no question's latency includes it
        rag.search(questions[0].question, k=1)
        if not retrieval_only:
            rag.generator  # noqa: B018 - loading on first use is the point

    records: list[EvalRecord] = []
    with progress_bar(rag.console, rag.settings.progress) as bar:
        task = bar.add_task("Evaluating", total=len(questions))
        for q in questions:
            started = time.perf_counter()
            passages = rag.search(q.question, k=depth, **(search_options or {}))
            searched = time.perf_counter() - started
            ranks = [i for i, p in enumerate(passages, start=1) if q.is_gold(p)]
            record = EvalRecord(
                kind=q.kind,
                question=q.question,
                answers=list(q.answers),
                answerable=q.answerable,
                gold=_gold_label(q),
                retrieved=[p.text for p in passages],
                retrieved_ids=[_passage_id(p) for p in passages],
                gold_rank=ranks[0] if ranks else None,
                retrieval_seconds=searched,
                id=q.id,
            )
            if not retrieval_only:
                started = time.perf_counter()
                answer = rag.ask(q.question)
                _judge_answer(record, q, answer, time.perf_counter() - started)
            records.append(record)
            if on_record:
                on_record(record)
            bar.advance(task)
    gold_known = {id(q) for q in questions if q.has_gold}
    with_gold = [r for r, q in zip(records, questions, strict=True) if id(q) in gold_known]
    return EvalResult(summarize(records, with_gold, recall_at), records)


def summarize(
    records: list[EvalRecord],
    with_gold: list[EvalRecord] | None = None,
    recall_ks: tuple[int, ...] = RECALL_AT,
) -> dict[str, Any]:
    """The metrics over ``records`` (retrieval metrics over ``with_gold``, default all).

    When the records carry kinds (the news set), the answer metrics are also given per kind:
    ``accuracy_single`` (an accepted form of the fact, word-bounded), ``complete_two_part`` and
    ``complete_cross_article`` (every fact stated), ``declined_unanswerable`` (declined, or the
    missing part named), ``partial`` answers (some facts, not all) and how many of those
    ``partial_said`` so, and ``fact_citation`` (each stated fact's sentence cites a paragraph
    that states it).
    """
    with_gold = records if with_gold is None else with_gold
    ranks = [r.gold_rank for r in with_gold]
    metrics: dict[str, Any] = {
        "n": len(records),
        "n_answerable": sum(r.answerable for r in records),
        "n_unanswerable": sum(not r.answerable for r in records),
        "n_with_gold_paragraph": len(with_gold),
    }
    metrics |= {f"recall@{k}": recall_at(ranks, k) for k in recall_ks}
    metrics["mrr"] = mean_reciprocal_rank(ranks)
    searched = [r.retrieval_seconds for r in records]
    metrics["retrieval_p50_s"] = percentile(searched, 50)
    metrics["retrieval_p95_s"] = percentile(searched, 95)
    answered = [r for r in records if r.answer is not None]
    if not answered:
        return metrics
    metrics |= _answer_metrics(answered)
    if any(r.kind for r in answered):
        metrics |= _kind_metrics(answered)
    return metrics


def _answer_metrics(answered: list[EvalRecord]) -> dict[str, Any]:
    answerable = [r for r in answered if r.answerable]
    unanswerable = [r for r in answered if not r.answerable]
    citations = sum(len(r.citations) for r in answered)
    good = sum(r.good_citations or 0 for r in answered)
    unsupported = sum(r.unsupported_citations or 0 for r in answered)
    seconds = [r.answer_seconds or 0.0 for r in answered]
    return {
        "exact_match": mean([r.exact_match or 0.0 for r in answerable]),
        "f1": mean([r.f1 or 0.0 for r in answerable]),
        "contains": share(bool(r.contains) for r in answerable),
        "citation_precision": good / citations if citations else math.nan,
        "citation_recall": share(bool(r.cites_gold) for r in answerable),
        "unsupported_citation_rate": unsupported / citations if citations else math.nan,
        "declined_unanswerable": share(_declined(r) for r in unanswerable),
        "false_decline": share(bool(r.abstained) for r in answerable),
        "second_reading": share((r.attempts or 1) > 1 for r in answered),
        "check_kept_right": share(
            r.check == "kept right" for r in answered if r.check in ("kept right", "dropped right")
        ),
        "check_caught_wrong": share(
            r.check == "caught wrong" for r in answered if r.check in ("caught wrong", "kept wrong")
        ),
        "n_check_right": sum(r.check in ("kept right", "dropped right") for r in answered),
        "n_check_wrong": sum(r.check in ("caught wrong", "kept wrong") for r in answered),
        "citations": citations,
        "answer_p50_s": percentile(seconds, 50),
        "answer_p95_s": percentile(seconds, 95),
    }


def _declined(record: EvalRecord) -> bool:
    """An unanswerable question declined: abstained, nothing cited, or the gap named."""
    return bool(record.abstained or not record.citations or record.said_missing)


def _kind_metrics(answered: list[EvalRecord]) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    by_kind = {kind: [r for r in answered if r.kind == kind] for kind in KINDS}
    single = by_kind["single"]
    metrics["accuracy_single"] = share(bool(r.facts_stated and r.facts_stated[0]) for r in single)
    for kind in ("two-part", "cross-article"):
        metrics[f"complete_{kind.replace('-', '_')}"] = share(
            bool(r.facts_stated) and all(r.facts_stated) for r in by_kind[kind]
        )
    several = by_kind["two-part"] + by_kind["cross-article"]
    partial = [r for r in several if any(r.facts_stated) and not all(r.facts_stated)]
    metrics["partial"] = share(r in partial for r in several)
    metrics["partial_said"] = share(bool(r.said_missing) for r in partial)
    cited = [flag for r in answered for flag in r.facts_cited]
    metrics["fact_citation"] = share(cited)
    for kind, group in by_kind.items():
        if group:
            key = kind.replace("-", "_")
            metrics[f"n_{key}"] = len(group)
            metrics[f"answer_p50_s_{key}"] = percentile(
                [r.answer_seconds or 0.0 for r in group], 50
            )
            citations = sum(len(r.citations) for r in group)
            metrics[f"citation_precision_{key}"] = (
                sum(r.good_citations or 0 for r in group) / citations if citations else math.nan
            )
    return metrics


def kind_table(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-kind figures of :func:`summarize` as rows (kind, n, score, what the score is,
    citation precision, median seconds), for a table."""
    scores = {
        "single": ("accuracy_single", "fact stated"),
        "two-part": ("complete_two_part", "every fact stated"),
        "cross-article": ("complete_cross_article", "every fact stated"),
        "unanswerable": ("declined_unanswerable", "declined or gap named"),
    }
    rows: list[dict[str, Any]] = []
    if "accuracy_single" not in metrics:  # not the news set
        return rows
    for kind, (key, what) in scores.items():
        name = kind.replace("-", "_")
        if f"n_{name}" in metrics:
            rows.append(
                {
                    "kind": kind,
                    "n": metrics[f"n_{name}"],
                    "score": metrics.get(key, math.nan),
                    "what": what,
                    "citation_precision": metrics.get(f"citation_precision_{name}", math.nan),
                    "median_s": metrics.get(f"answer_p50_s_{name}", math.nan),
                }
            )
    return rows
