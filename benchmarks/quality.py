"""Answer quality next to the speed figures: 100 SQuAD tune questions with the default model.

A speed change may not cost quality, so every full benchmark run measures it
again with the same code ``rag eval`` uses (fixed seed, retrieval over every
SQuAD tune paragraph), for the default backend and the transformers backend, whose speed
figures stand next to these.
``--model NAME`` measures another preset instead (its figures carry its name).

    .venv/bin/python -m benchmarks --only quality
    .venv/bin/python -m benchmarks --only quality --model qwen2.5-coder-0.5b
"""

from __future__ import annotations

from benchmarks.common import SQUAD, BenchContext
from rag import RAG
from rag.evaluate import evaluate, load_squad
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
# Another preset's figures (``--model``) go under the same keys with the preset's name.
OTHER_MODELS = [name for name in PRESETS if name != DEFAULT_MODEL]

KEYS = {
    "quality_model": "generator the answer figures below were measured with",
    "quality_n": "questions answered",
    **{key: about for key, (_, about) in FIGURES.items()},
    **{f"{key}{OTHER}": f"the same, backend {OTHER_BACKEND}" for key in FIGURES},
    **{f"{key}_{model}": f"the same, model {model}" for model in OTHER_MODELS for key in FIGURES},
}


def run(ctx: BenchContext) -> dict[str, float | int | str | None]:
    """The default model with each installed backend; with ``--model``, that model only."""
    model = ctx.model or DEFAULT_MODEL
    folder = ctx.folder("quality")
    squad = load_squad(SQUAD, folder)
    n = 10 if ctx.quick else 100
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
    return figures
