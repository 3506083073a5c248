"""Evaluation: retrieval recall, answer accuracy, citations, abstention and latency.

A question set (:class:`EvalSet`) is a list of questions with accepted answers
and, where known, the gold paragraph they were written from, plus the corpus
files to index. Two formats load:

* SQuAD v1.1 JSON (:func:`load_squad`). The file defines its own corpus: each
  article (one per title, paragraphs in order) becomes one JSONL article, so a
  question's gold paragraph is ``(file#title, paragraph number)``, exactly what
  a citation points at. Articles left out of the index (``holdout``) turn their
  questions into unanswerable ones, which the right answer declines.
* A simple question set in JSON or JSONL (:func:`load_questions`): ``question``,
  ``answers`` (or ``answer``), optional ``source`` (a path, file name or glob),
  ``paragraph``, ``evidence`` (gold text) and ``answerable: false``.

:func:`evaluate` samples questions with a seed and goes through the public API
only (:meth:`RAG.search`, :meth:`RAG.ask`), keeping one :class:`EvalRecord` per
question so that errors can be read one by one. The CLI (``rag eval``), the
benchmarks and the notebooks are thin layers over it.
"""

from __future__ import annotations

import json
import math
import random
import re
import string
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.errors import RagError
from rag.feedback import progress_bar
from rag.types import Answer, Passage

if TYPE_CHECKING:  # pandas is an optional dependency (the "eval" extra)
    import pandas

    from rag.api import RAG

RECALL_AT = (1, 3, 5, 10, 20)
"""The k of the reported paragraph recall@k; retrieval fetches the largest."""

DEFAULT_ANSWER_LIMIT = 100
"""Questions answered when no limit is given (answering all of SQuAD takes a day)."""


# ---------------------------------------------------------------------------
# Answer metrics (SQuAD's official definitions)

_PUNCTUATION = set(string.punctuation) | {"‘", "’", "“", "”", "–", "—"}
_POSSESSIVE = re.compile(r"(?<=\w)['’]s\b")


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, answers: Iterable[str]) -> float:
    """1.0 when the normalised prediction equals a normalised gold answer."""
    normalized = normalize_answer(prediction)
    return float(any(normalized == normalize_answer(a) for a in answers))


def _f1(prediction: str, answer: str) -> float:
    predicted = normalize_answer(prediction).split()
    gold = normalize_answer(answer).split()
    common = sum((Counter(predicted) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def f1_score(prediction: str, answers: Iterable[str]) -> float:
    """Token F1 between prediction and gold answer, the best over the gold answers."""
    return max((_f1(prediction, a) for a in answers), default=0.0)


def contains_answer(text: str, answers: Iterable[str]) -> bool:
    """Whether a normalised gold answer appears, as whole words, in the normalised text.

    Exact match and F1 punish a full-sentence answer ("Microsoft invested $1
    billion in 2019") against a span ("$1 billion"); this is what a reader checks.
    A possessive names its owner: "Luther's writings" contains "Luther" (SQuAD's
    normalisation alone would make it "luthers").
    """
    haystack = f" {normalize_answer(_POSSESSIVE.sub('', text))} "
    golds = (normalize_answer(_POSSESSIVE.sub("", a)) for a in answers)
    return any(f" {n} " in haystack for n in golds if n)


# ---------------------------------------------------------------------------
# Retrieval and latency metrics


def recall_at(ranks: Iterable[int | None], k: int) -> float:
    """Share of questions whose gold paragraph is ranked ``k`` or better (ranks from 1)."""
    ranks = list(ranks)
    return sum(r is not None and r <= k for r in ranks) / len(ranks) if ranks else math.nan


def mean_reciprocal_rank(ranks: Iterable[int | None]) -> float:
    """Mean of 1/rank of the gold paragraph (0 when not retrieved)."""
    ranks = list(ranks)
    return sum(1 / r for r in ranks if r) / len(ranks) if ranks else math.nan


def percentile(values: Iterable[float], q: float) -> float:
    """The ``q``-th percentile (0..100), linearly interpolated; NaN for no values."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _share(flags: Iterable[bool]) -> float:
    flags = list(flags)
    return sum(flags) / len(flags) if flags else math.nan


# ---------------------------------------------------------------------------
# Question sets


@dataclass(frozen=True)
class EvalQuestion:
    """One question with what counts as right."""

    question: str
    answers: tuple[str, ...]
    answerable: bool = True
    source: str | None = None
    """Gold article: its source as stored, a file name, or a glob on the source."""
    paragraph: int | None = None
    """Gold paragraph number within ``source`` (from 1)."""
    evidence: str | None = None
    """Gold text: a passage containing it (normalised) is gold."""
    id: str = ""

    @property
    def has_gold(self) -> bool:
        return self.answerable and (self.source is not None or self.evidence is not None)

    def is_gold(self, passage: Passage) -> bool:
        """Whether ``passage`` is the question's gold paragraph."""
        if not self.answerable:
            return False
        if self.source is not None:
            if not _source_matches(passage.source, self.source):
                return False
            if self.paragraph is not None:
                return passage.paragraph == self.paragraph
        if self.evidence is not None:
            return normalize_answer(self.evidence) in normalize_answer(passage.text)
        return self.source is not None


def _source_matches(source: str, wanted: str) -> bool:
    if source == wanted or fnmatch(source, wanted):
        return True
    # A question set written by hand names the file ("cnn.txt" or "cnn.txt#3"),
    # not the absolute path the index stores.
    return source.endswith("/" + wanted.lstrip("/"))


@dataclass
class EvalSet:
    """Questions and the corpus files that answer them."""

    name: str
    questions: list[EvalQuestion]
    corpus: list[Path] = field(default_factory=list)
    held_out: list[str] = field(default_factory=list)
    """SQuAD articles left out of the corpus (their questions are unanswerable)."""


def load_squad(
    path: str | Path, corpus_dir: str | Path, holdout: int = 0, seed: int = 0
) -> EvalSet:
    """Load SQuAD v1.1 JSON and write its corpus as one JSONL file in ``corpus_dir``.

    ``holdout`` articles (drawn with ``seed``) are left out of the corpus; their
    questions are kept, marked unanswerable.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))["data"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RagError(f"{path} is not a SQuAD v1.1 JSON file: {exc}") from exc
    titles = [article["title"] for article in data]
    if holdout >= len(titles):
        raise RagError(f"Cannot hold out {holdout} of the {len(titles)} articles in {path}.")
    held_out = set(random.Random(seed).sample(titles, holdout)) if holdout else set()
    jsonl = (Path(corpus_dir) / f"{path.stem}.jsonl").resolve()
    lines, questions = [], []
    for article in data:
        title = article["title"]
        answerable = title not in held_out
        if answerable:
            text = "\n\n".join(p["context"] for p in article["paragraphs"])
            record = {"id": title, "title": title.replace("_", " "), "text": text}
            lines.append(json.dumps(record, ensure_ascii=False))
        for number, paragraph in enumerate(article["paragraphs"], start=1):
            for qa in paragraph["qas"]:
                questions.append(
                    EvalQuestion(
                        question=qa["question"],
                        answers=tuple(dict.fromkeys(a["text"] for a in qa["answers"])),
                        answerable=answerable,
                        source=f"{jsonl}#{title}" if answerable else None,
                        paragraph=number if answerable else None,
                        id=str(qa.get("id", "")),
                    )
                )
    jsonl.parent.mkdir(parents=True, exist_ok=True)
    content = "\n".join(lines) + "\n"
    # Rewriting an unchanged file would only cost a re-hash; skipping it keeps mtimes.
    if not jsonl.exists() or jsonl.read_text(encoding="utf-8") != content:
        jsonl.write_text(content, encoding="utf-8")
    return EvalSet(path.stem, questions, [jsonl], sorted(held_out))


def load_questions(path: str | Path) -> EvalSet:
    """Load a simple question set: a JSON list (or ``{"questions": [...]}``) or JSONL."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".jsonl":
            items = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            loaded = json.loads(text)
            items = loaded["questions"] if isinstance(loaded, dict) else loaded
    except (ValueError, KeyError) as exc:
        raise RagError(f"{path} is not a question set (JSON or JSONL): {exc}") from exc
    questions = []
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict) or not str(item.get("question", "")).strip():
            raise RagError(f"{path}: question {number} has no 'question' field.")
        given = item.get("answers", item.get("answer", []))
        answers = (given,) if isinstance(given, str) else tuple(given or ())
        answerable = bool(item.get("answerable", True))
        if answerable and not answers:
            raise RagError(f"{path}: question {number} has no 'answers' (or answerable: false).")
        paragraph = item.get("paragraph")
        questions.append(
            EvalQuestion(
                question=item["question"],
                answers=answers,
                answerable=answerable,
                source=item.get("source"),
                paragraph=int(paragraph) if paragraph is not None else None,
                evidence=item.get("evidence"),
                id=str(item.get("id", number)),
            )
        )
    return EvalSet(path.stem, questions)


def is_squad(path: str | Path) -> bool:
    """Whether ``path`` looks like SQuAD JSON (a top-level ``data`` list of articles)."""
    path = Path(path)
    if path.suffix.lower() != ".json":
        return False
    with path.open(encoding="utf-8") as handle:
        head = handle.read(4096)
    return bool(re.match(r'\s*\{\s*"(?:version"\s*:\s*"[^"]*"\s*,\s*")?data"', head))


def load_dataset(
    path: str | Path, corpus_dir: str | Path, holdout: int = 0, seed: int = 0
) -> EvalSet:
    """SQuAD JSON or a simple question set, told apart by content."""
    path = Path(path)
    if not path.is_file():
        raise RagError(f"No question set at {path}.")
    if is_squad(path):
        return load_squad(path, corpus_dir, holdout, seed)
    if holdout:
        raise RagError("--holdout works with SQuAD files only (they define their own corpus).")
    return load_questions(path)


def sample(questions: list[EvalQuestion], n: int | None, seed: int = 0) -> list[EvalQuestion]:
    """``n`` questions drawn with ``seed`` (the same set every run); all when ``n`` is None."""
    if n is None or n >= len(questions):
        return list(questions)
    return random.Random(seed).sample(questions, n)


# ---------------------------------------------------------------------------
# Running an evaluation


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
    record.citations = [
        {
            "number": c.number,
            "source": c.passage.source,
            "paragraph": c.passage.paragraph,
            "supported": c.supported,
            "gold": q.is_gold(c.passage),
            "text": c.passage.text,
        }
        for c in answer.citations
    ]
    if q.answerable:
        record.exact_match = exact_match(text, q.answers)
        record.f1 = f1_score(text, q.answers)
        record.contains = contains_answer(text, q.answers)
        record.cites_gold = any(c["gold"] for c in record.citations)
    record.good_citations = sum(
        1
        for c in record.citations
        if c["gold"] or (q.answerable and contains_answer(c["text"], q.answers))
    )
    record.unsupported_citations = sum(not c.supported for c in answer.citations)


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
    """The metrics over ``records`` (retrieval metrics over ``with_gold``, default all)."""
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
    answerable = [r for r in answered if r.answerable]
    unanswerable = [r for r in answered if not r.answerable]
    citations = sum(len(r.citations) for r in answered)
    good = sum(r.good_citations or 0 for r in answered)
    unsupported = sum(r.unsupported_citations or 0 for r in answered)
    seconds = [r.answer_seconds or 0.0 for r in answered]
    metrics |= {
        "exact_match": _mean([r.exact_match or 0.0 for r in answerable]),
        "f1": _mean([r.f1 or 0.0 for r in answerable]),
        "contains": _share(bool(r.contains) for r in answerable),
        "citation_precision": good / citations if citations else math.nan,
        "citation_recall": _share(bool(r.cites_gold) for r in answerable),
        "unsupported_citation_rate": unsupported / citations if citations else math.nan,
        "declined_unanswerable": _share(bool(r.abstained) for r in unanswerable),
        "false_decline": _share(bool(r.abstained) for r in answerable),
        "second_reading": _share(r.attempts == 2 for r in answered),
        "citations": citations,
        "answer_p50_s": percentile(seconds, 50),
        "answer_p95_s": percentile(seconds, 95),
    }
    return metrics


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan
