"""Evaluation: retrieval recall, answer accuracy and completeness, citations, abstention, latency.

- :mod:`rag.evaluate.datasets`: the question sets (SQuAD, the news set, simple lists) and what
  counts as right for each question.
- :mod:`rag.evaluate.metrics`: SQuAD's answer metrics, facts stated (word-bounded), recall@k.
- :mod:`rag.evaluate.run`: :func:`evaluate` through the public API, one record per question,
  and :func:`summarize` into metrics (per kind for the news set).
"""

from __future__ import annotations

from rag.evaluate.datasets import (
    EvalQuestion,
    EvalSet,
    is_squad,
    load_dataset,
    load_news,
    load_questions,
    load_squad,
    sample,
)
from rag.evaluate.metrics import (
    contains_answer,
    exact_match,
    f1_score,
    mean_reciprocal_rank,
    normalize_answer,
    percentile,
    recall_at,
    states,
)
from rag.evaluate.run import (
    DEFAULT_ANSWER_LIMIT,
    KINDS,
    RECALL_AT,
    EvalRecord,
    EvalResult,
    evaluate,
    kind_table,
    summarize,
)

__all__ = [
    "DEFAULT_ANSWER_LIMIT",
    "KINDS",
    "RECALL_AT",
    "EvalQuestion",
    "EvalRecord",
    "EvalResult",
    "EvalSet",
    "contains_answer",
    "evaluate",
    "exact_match",
    "f1_score",
    "is_squad",
    "kind_table",
    "load_dataset",
    "load_news",
    "load_questions",
    "load_squad",
    "mean_reciprocal_rank",
    "normalize_answer",
    "percentile",
    "recall_at",
    "sample",
    "states",
    "summarize",
]
