"""What an answer is scored by: SQuAD's answer metrics, stated facts, retrieval and latency."""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Iterable

__all__ = [
    "contains_answer",
    "exact_match",
    "f1_score",
    "mean_reciprocal_rank",
    "normalize_answer",
    "percentile",
    "recall_at",
    "states",
]

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
# Facts stated (the news question set)

_QUOTES = str.maketrans({"‘": "'", "’": "'", "“": '"', "”": '"', "–": "-", "—": "-"})


def _fold(text: str) -> str:
    """Lower case, one kind of quote and dash, accents dropped, spaces folded."""
    text = unicodedata.normalize("NFKD", text.translate(_QUOTES).lower())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return " ".join(text.split())


def states(text: str, forms: Iterable[str]) -> bool:
    """Whether ``text`` states one of the accepted ``forms`` of a fact, as whole words.

    Word-bounded on both sides, and a figure is not found inside a longer one: "200" is not
    stated by "200,000" or "200.5", "$1" not by "$10". Case, quotes, dashes and accents do not
    count.
    """
    folded = _fold(text)
    for form in forms:
        wanted = _fold(form)
        if not wanted:
            continue
        before = r"(?<![\w$£€¥])" if wanted[0].isalnum() else r"(?<!\w)"
        after = r"(?![\w%])(?![.,]\d)" if wanted[-1].isalnum() else r"(?![.,]?\d)"
        if re.search(before + re.escape(wanted) + after, folded):
            return True
    return False


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


def share(flags: Iterable[bool]) -> float:
    """The share of true flags (NaN for none)."""
    flags = list(flags)
    return sum(flags) / len(flags) if flags else math.nan


def mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else math.nan
