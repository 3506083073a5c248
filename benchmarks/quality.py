"""Answer quality next to the speed figures: SQuAD and the news set with the default model.

A speed change may not cost quality, so every full benchmark run measures it
again with the same code ``rag eval`` uses, for the default backend and the transformers
backend, whose speed figures stand next to these: 100 SQuAD tune questions (fixed seed,
retrieval over every SQuAD tune paragraph), the single-fact reading check, and the 80 questions
of the news set over the sample article and the whole BBC corpus, scored per kind.
``--model NAME`` measures another preset instead (its figures carry its name).

    .venv/bin/python -m benchmarks --only quality
    .venv/bin/python -m benchmarks --only quality --model qwen2.5-coder-0.5b
"""

from __future__ import annotations

import math

from benchmarks.common import NEWS, SAMPLE_ARTICLES, SQUAD, BenchContext, current_index
from rag import RAG
from rag.evaluate import evaluate, load_news, load_squad
from rag.models import PRESETS
from rag.settings import DEFAULT_MODEL, Settings

# The other backend's figures go under the same keys with this suffix.
OTHER_BACKEND = "transformers"
OTHER = "_transformers_backend"

# Each figure: the metric of rag.evaluate it reports, and what it is.
FIGURES = {
    "answer_contains": (
        "contains",
        "share of answers containing a gold answer (SQuAD normalisation)",
    ),
    "answer_f1": ("f1", "token F1 against the gold answers (max over them)"),
    "answer_citation_precision": (
        "citation_precision",
        "share of citations to the gold paragraph or one with an answer",
    ),
    "answer_citation_recall": ("citation_recall", "share of answers citing the gold paragraph"),
    "answer_false_decline": ("false_decline", "share of answerable questions declined"),
    "answer_second_reading": (
        "second_reading",
        "share of answers for which the best paragraph alone was not enough (best_first)",
    ),
    "answer_p50_s": (
        "answer_p50_s",
        "median seconds per answer (retrieval, prompt and generation)",
    ),
}
# The news set's figures: the metric of rag.evaluate and what it is.
NEWS_FIGURES = {
    "news_accuracy_single": ("accuracy_single", "single-fact questions: the fact stated"),
    "news_complete_two_part": ("complete_two_part", "two-part questions: every fact stated"),
    "news_complete_cross_article": (
        "complete_cross_article",
        "questions needing two articles: every fact stated",
    ),
    "news_declined_unanswerable": (
        "declined_unanswerable",
        "questions no article answers: declined or the gap named",
    ),
    "news_citation_precision": (
        "citation_precision",
        "share of citations to a paragraph stating the evidence (source or a near-copy)",
    ),
    "news_fact_citation": (
        "fact_citation",
        "share of stated facts whose sentence cites a paragraph stating them",
    ),
    "news_false_decline": ("false_decline", "share of answerable questions declined"),
    "news_check_kept_right": (
        "check_kept_right",
        "model answers stating every fact that the citation check kept",
    ),
    "news_check_caught_wrong": (
        "check_caught_wrong",
        "model answers stating no fact (or answering the unanswerable) that the check declined",
    ),
    "news_answer_p50_s": ("answer_p50_s", "median seconds per news answer (every reading)"),
}
# Another preset's figures (``--model``) go under the same keys with the preset's name.
OTHER_MODELS = [name for name in PRESETS if name != DEFAULT_MODEL]

KEYS = {
    "quality_model": "generator the answer figures below were measured with",
    "quality_n": "questions answered",
    "quality_news_n": "news questions answered",
    **{key: about for key, (_, about) in (FIGURES | NEWS_FIGURES).items()},
    **{f"{key}{OTHER}": f"the same, backend {OTHER_BACKEND}" for key in FIGURES | NEWS_FIGURES},
    **{
        f"{key}_{model}": f"the same, model {model}"
        for model in OTHER_MODELS
        for key in FIGURES | NEWS_FIGURES
    },
}


def run(ctx: BenchContext) -> dict[str, float | int | str | None]:
    """The default model with each installed backend; with ``--model``, that model only."""
    model = ctx.model or DEFAULT_MODEL
    folder = ctx.folder("quality")
    squad = load_squad(SQUAD, folder)
    n = 10 if ctx.quick else 100
    # A quick run reads 8 news questions over only the articles they name (no BBC ingest).
    news = load_news(NEWS).quick(8) if ctx.quick else load_news(NEWS)
    news.corpus.append(SAMPLE_ARTICLES)
    figures: dict[str, float | int | str | None] = {}
    default_backend = Settings().backend
    if model == DEFAULT_MODEL:
        figures["quality_model"] = model
        backends = {default_backend: ""}
        if default_backend != OTHER_BACKEND and not ctx.quick:
            backends[OTHER_BACKEND] = OTHER
    else:
        backends = {default_backend: f"_{model}"}
    for backend, suffix in backends.items():
        with RAG(folder / "index", progress=False, backend=backend, model=model) as rag:
            result = evaluate(rag, squad, limit=n, seed=0)
        figures["quality_n"] = result.metrics["n"]
        figures |= {
            f"{key}{suffix}": result.metrics[metric] for key, (metric, _) in FIGURES.items()
        }
        news_index = folder / ("news-quick" if ctx.quick else "news")
        with current_index(news_index, news.corpus, ctx, backend=backend, model=model) as rag:
            result = evaluate(rag, news, ingest=False)
        figures["quality_news_n"] = result.metrics["n"]
        figures |= {
            f"{key}{suffix}": result.metrics.get(metric, math.nan)
            for key, (metric, _) in NEWS_FIGURES.items()
        }
    return figures
