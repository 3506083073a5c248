"""Answer quality next to the speed figures: 100 SQuAD tune questions with the default model.

A speed change may not cost quality, so every full benchmark run measures it
again with the same code ``rag eval`` uses (fixed seed, retrieval over every
SQuAD tune paragraph), for the default backend and, when llama-cpp-python is
installed, for the llama.cpp backend too: its speed figures stand next to these.
"""

from __future__ import annotations

from benchmarks.answer import llama_cpp_installed
from benchmarks.common import SQUAD, BenchContext
from rag import RAG
from rag.evaluate import evaluate, load_squad
from rag.settings import Settings

# The llama.cpp backend's figures go under the same keys with this suffix.
LLAMACPP = "_llamacpp_backend"

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
KEYS = {
    "quality_model": "generator the answer figures below were measured with",
    "quality_n": "questions answered",
    **{key: about for key, (_, about) in FIGURES.items()},
    **{f"{key}{LLAMACPP}": "the same, backend llama.cpp" for key in FIGURES},
}


def run(ctx: BenchContext) -> dict[str, float | int | str | None]:
    model = Settings().model
    folder = ctx.folder("quality")
    squad = load_squad(SQUAD, folder)
    n = 10 if ctx.quick else 100
    figures: dict[str, float | int | str | None] = {"quality_model": model}
    backends = {"transformers": ""} | ({"llama.cpp": LLAMACPP} if llama_cpp_installed() else {})
    for backend, suffix in backends.items():
        with RAG(folder / "index", progress=False, backend=backend) as rag:
            result = evaluate(rag, squad, limit=n, seed=0)
        figures["quality_n"] = result.metrics["n"]
        figures |= {
            f"{key}{suffix}": result.metrics[metric] for key, (metric, _) in FIGURES.items()
        }
    return figures
