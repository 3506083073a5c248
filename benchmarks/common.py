"""What every benchmark module shares: paths, the run context, timing and memory helpers.

A module ``benchmarks/<name>.py`` defines::

    KEYS: dict[str, str]          # key in latest.json -> what it measures (for the table/docs)
    def run(ctx: BenchContext) -> dict[str, float | int | str | None]

and is listed in ``benchmarks.__main__.MODULES``. Comparisons are ratios measured
in the same run, over medians of repeated runs: these machines are noisy.
"""

from __future__ import annotations

import os
import platform
import resource
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rag import RAG

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SQUAD = SHARED / "data" / "squad" / "squad-v1.1-dev-tune.json"
BBC = SHARED / "data" / "bbc-news"
NEWS = SHARED / "data" / "news-qa" / "news-tune.json"
SAMPLE_ARTICLES = SHARED / "articles"
SAMPLE_QUESTION = "How much did Microsoft invest in OpenAI?"
RESULTS = ROOT / "benchmarks" / "results"


@dataclass
class BenchContext:
    """How a run was asked for: ``quick`` shrinks sizes and repeats for a smoke run."""

    quick: bool = False
    workdir: Path = Path("/tmp/rag-bench")
    repeats: int = 5
    model: str | None = None
    """A generator preset other than the default, for the areas that answer (``--model``)."""
    log: Callable[[str], None] = field(default=print)

    def folder(self, name: str) -> Path:
        """A work folder for one benchmark (kept between runs, so indexes are reused)."""
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path


def current_index(folder: Path, corpus: list[Path], ctx: BenchContext, **settings: Any) -> RAG:
    """``folder``'s index (kept between runs) brought up to date with ``corpus``, open.

    An index an earlier run built with another embedder (another backend or export: the
    fingerprint differs) is deleted and built anew, rather than failing the benchmark.
    """
    from rag import RAG, EmbedderMismatch

    rag = RAG(folder, progress=False, **settings)
    try:
        rag.embedder  # noqa: B018 - loading checks it against the index
    except EmbedderMismatch:
        rag.close()
        ctx.log(f"{folder} was built by another embedder; building it again")
        shutil.rmtree(folder)
        rag = RAG(folder, progress=False, **settings)
    report = rag.ingest(corpus)
    ctx.log(f"{folder.name}: {report.added} added, {report.unchanged} unchanged")
    return rag


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear interpolation, as numpy does it."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def repeat(fn: Callable[[], object], times: int) -> list[float]:
    """Wall seconds of ``times`` calls of ``fn``."""
    seconds = []
    for _ in range(times):
        started = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - started)
    return seconds


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def children_peak_rss_gb() -> float:
    """Largest peak resident memory of any waited-for child process."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6


def machine() -> dict[str, object]:
    """What the figures were measured on."""
    info: dict[str, object] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cores": os.cpu_count(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_gb"] = round(int(line.split()[1]) / 1e6, 1)
                break
    except OSError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info
