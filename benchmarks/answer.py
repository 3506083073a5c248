"""Answer speed against llama.cpp, peak memory of ``rag ask``, and cold start to the first token.

The comparison (``answer_time_ratio_vs_llamacpp``): our end-to-end answer to the sample
question over the sample article (``RAG.ask``: retrieval, prompt, generation, citation check)
against llama-cpp-python reading the SAME joined GGUF file of the model (verified against its
pinned SHA-256), fed the SAME prompt text our prompt builder made for the retrieved passages,
and writing the SAME number of new tokens: the length of our natural answer, forced on both
sides by banning the end-of-turn tokens (our ``stop_penalty`` set huge, a logits processor
for llama.cpp). llama.cpp runs as a user would run it: the stock ``Llama.generate`` (the token
loop of ``create_completion``) with its defaults, one thread per core, greedy, its KV cache
emptied before each run. Ours runs with the configured backend (``RAG_BACKEND``, default the
prebuilt llama.cpp) as a new ``rag ask`` process would run it (the saved shared prompt prefix
loaded from disk, see rag.generate.llamacpp), and with that cache off; the transformers backend
and, when installed, the llama-cpp-python backend are timed beside it. Runs are interleaved
and medians taken, so a busy machine slows every side alike. The same is then timed with
another process keeping one core busy, as other work on a user's machine would.

Memory and cold start are measured on real ``rag ask`` processes: the peak resident memory of
each (``ru_maxrss`` from ``wait4``), and the seconds from launching it to the first answer
character on its terminal (a pseudo-terminal, so it streams as it does for a person) and to its
exit, models already prepared and the index built. Last, an empty RAG_HOME: the time
``rag models prepare`` takes there and the disk RAG_HOME holds after an ingest and an answer.

    .venv/bin/python -m benchmarks --only answer
    .venv/bin/pip install -e ".[bench]"      # llama-cpp-python, built from source (~5 min)
"""

from __future__ import annotations

import contextlib
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.common import (
    SAMPLE_ARTICLES,
    SAMPLE_QUESTION,
    BenchContext,
    current_index,
    median,
)
from rag import RAG, models
from rag.generate import Generation
from rag.settings import Settings

KEYS = {
    "answer_backend": "backend of our figures below (setting backend / RAG_BACKEND)",
    "answer_prompt_tokens": "sample question's prompt tokens (rules, examples, passages)",
    "answer_new_tokens": "new tokens written by both sides (our natural answer length, forced)",
    "answer_s": "our end-to-end answer time on the sample question (RAG.ask), median s",
    "llamacpp_answer_s": "llama-cpp-python, same GGUF, prompt and new tokens, median s",
    "answer_time_ratio_vs_llamacpp": "answer_s / llamacpp_answer_s (same run; target <= 0.6)",
    "ours_prefill_tps": "our prompt reading speed, tokens/s (median)",
    "ours_decode_tps": "our writing speed after the first token, tokens/s (median)",
    "llamacpp_prefill_tps": "llama-cpp-python prompt reading speed, tokens/s (median)",
    "llamacpp_decode_tps": "llama-cpp-python writing speed, tokens/s (median)",
    "answer_s_uncached": "ours with the saved prompt prefix off (the whole prompt read), median s",
    "answer_time_ratio_uncached": "the same over llamacpp_answer_s (same run)",
    "answer_s_transformers_backend": "ours with backend transformers (bf16), median s",
    "answer_time_ratio_transformers_backend": "the same over llamacpp_answer_s (same run)",
    "answer_s_llama_cpp_python_backend": "ours with backend llama-cpp-python, median s",
    "answer_time_ratio_llama_cpp_python_backend": "the same over llamacpp_answer_s (same run)",
    "answer_s_one_core_busy": "ours (default threads) while another process keeps a core busy",
    "answer_s_one_core_busy_1_thread": "the same with --threads 1",
    "llamacpp_answer_s_one_core_busy": "llama-cpp-python (2 threads), one core busy, median s",
    "ask_peak_rss_gb": "peak resident memory of one `rag ask` process, default settings, GB",
    "cold_start_s": "launching `rag ask` to its first streamed answer character, median s",
    "ask_total_s": "launching `rag ask` to its exit (answer and sources printed), median s",
    "ask_peak_rss_gb_transformers_backend": "peak memory of `rag ask --backend transformers`, GB",
    "cold_start_s_transformers_backend": "cold start of `rag ask --backend transformers`, s",
    "fresh_home_prepare_s": "`rag models prepare` of the default preset in an empty RAG_HOME, s",
    "fresh_home_disk_gb": "RAG_HOME after that prepare, an ingest and an answer, GB",
}

# Subtracted from the end-of-turn logits so neither side can stop before the forced length.
BAN = 1e9


class Recorder:
    """Wraps a generator and keeps the messages and the Generation of its last reply.

    Lets the benchmark see exactly the prompt ``RAG.ask`` built and how many tokens it wrote,
    without a second code path for either.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.messages: list[dict[str, str]] | None = None
        self.last: Generation | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def stream(self, messages: list[dict[str, str]], *args: Any, **kwargs: Any) -> Iterator[Any]:
        self.messages = messages
        for item in self.inner.stream(messages, *args, **kwargs):
            if isinstance(item, Generation):
                self.last = item
            yield item


def llama_cpp_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def open_rag(index: Path, backend: str, **settings: Any) -> tuple[RAG, Recorder]:
    rag = RAG(index, progress=False, backend=backend, **settings)
    recorder = Recorder(rag.generator)
    rag._generator = recorder  # type: ignore[assignment]  # see Recorder
    return rag, recorder


def time_ours(rag: RAG, recorder: Recorder) -> dict[str, float]:
    forget = getattr(recorder.inner, "forget", None)
    if forget is not None:
        forget()  # a cold prompt, as in a new `rag ask` process
    started = time.perf_counter()
    rag.ask(SAMPLE_QUESTION)
    seconds = time.perf_counter() - started
    g = recorder.last
    assert g is not None
    return {
        "s": seconds,
        "new": g.new_tokens,
        "prefill_tps": g.prefill_tokens_per_second,
        "decode_tps": g.decode_tokens_per_second,
    }


def time_llamacpp(llm: Any, prompt: str, new_tokens: int, stops: list[int]) -> dict[str, float]:
    """One stock ``Llama.generate`` (what ``create_completion`` runs): a cold KV cache, greedy,
    the end-of-turn tokens banned, stopped after exactly ``new_tokens`` tokens."""
    import numpy as np
    from llama_cpp import LogitsProcessorList

    def ban(input_ids: Any, scores: Any) -> Any:
        scores[stops] = -np.inf
        return scores

    llm.reset()  # no reuse of the previous run's prompt
    started = time.perf_counter()
    tokens = llm.tokenize(prompt.encode(), add_bos=False, special=True)
    first = None
    written = 0
    for _token in llm.generate(tokens, temp=0.0, logits_processor=LogitsProcessorList([ban])):
        written += 1
        if first is None:
            first = time.perf_counter()
        if written == new_tokens:
            break
    finished = time.perf_counter()
    assert first is not None
    return {
        "s": finished - started,
        "new": written,
        "prompt_tokens": len(tokens),
        "prefill_tps": len(tokens) / (first - started),
        "decode_tps": (written - 1) / (finished - first) if finished > first else 0.0,
    }


_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]|\x1b\][^\x07]*\x07|[\r\n]")


# Runs `rag ask` and writes its peak RSS: from this small process the child's ru_maxrss is its
# own. Linux carries a process's peak over fork and exec, so a child of the benchmark itself
# would report the benchmark's peak (models loaded above) if that was higher.
_LAUNCHER = """
import os, subprocess, sys, time
started = time.time()
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(f"{started} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}")
"""


def cold_start(
    index: Path, env: dict[str, str], timeout: float = 900
) -> tuple[float, float, float]:
    """(seconds to the first answer character, to the exit, peak RSS in GB) of one `rag ask`.

    Its stdout is a pseudo-terminal, so rich streams the answer as the model writes it, as a
    person sees it; stderr (status lines) is dropped, so it is not mistaken for the answer.
    """
    rag = Path(sys.executable).with_name("rag")
    report = index.parent / "ask-rusage.txt"
    report.unlink(missing_ok=True)
    leader, follower = pty.openpty()
    command = [str(rag), "ask", SAMPLE_QUESTION, "--index", str(index)]
    process = subprocess.Popen(
        [sys.executable, "-c", _LAUNCHER, str(report), *command],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    os.close(follower)
    first: float | None = None
    seen = ""
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            ready, _, _ = select.select([leader], [], [], 1.0)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                data = os.read(leader, 65536)
            except OSError:  # the terminal closed: the process ended
                break
            if not data:
                break
            seen += _ANSI_RE.sub("", data.decode("utf-8", "replace"))
            if first is None and seen.strip():
                first = time.time()
    finally:
        os.close(leader)
    process.wait(timeout=60)
    ended = time.time()
    started, peak_kb, code = report.read_text().split()
    if int(code) != 0 or first is None:
        raise RuntimeError(f"rag ask failed (exit {code}): {seen[-500:]}")
    return first - float(started), ended - float(started), int(peak_kb) / 1e6


@contextlib.contextmanager
def one_core_busy() -> Iterator[None]:
    """Another process spinning on one core for the duration, as other work on a laptop."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        yield
    finally:
        spinner.kill()
        spinner.wait()


def run(ctx: BenchContext) -> dict[str, float | int | str | None]:
    settings = Settings()
    backend = settings.backend
    folder = ctx.folder("answer")
    index = folder / "index"
    current_index(index, [SAMPLE_ARTICLES], ctx).close()
    repeats = ctx.repeats
    with_llama = llama_cpp_installed()
    figures: dict[str, float | int | str | None] = {"answer_backend": backend}

    # Our natural answer fixes the length both sides write and the prompt both read.
    rag, recorder = open_rag(index, backend)
    answer = rag.ask(SAMPLE_QUESTION)
    assert recorder.messages is not None and recorder.last is not None
    new_tokens = recorder.last.new_tokens
    prompt = recorder.chat_prompt(recorder.messages)
    ctx.log(f"natural answer: {new_tokens} tokens, {recorder.last.prompt_tokens} prompt tokens")
    ctx.log(f"  {answer.text}")
    figures["answer_prompt_tokens"] = recorder.last.prompt_tokens
    figures["answer_new_tokens"] = new_tokens
    forced = {"stop_penalty": BAN, "max_new_tokens": new_tokens}
    rag.close()

    # Our sides, each timed as RAG.ask: the configured backend as `rag ask` runs it (its
    # saved prompt prefix loaded), the same with that cache off, and the other backends.
    sides = {"": open_rag(index, backend, **forced)}
    uncached = open_rag(index, backend, **forced)
    uncached[1].inner.prompt_cache = None
    sides["_uncached"] = uncached
    others = ["transformers"] + (["llama-cpp-python"] if with_llama else [])
    for other in others:
        if other != backend:
            sides[f"_{other.replace('-', '_')}_backend"] = open_rag(index, other, **forced)
    llm = None
    if with_llama:
        from llama_cpp import Llama

        gguf = models.gguf_file(settings.model, settings.home, progress=False)
        llm = Llama(model_path=str(gguf), n_ctx=8192, n_threads=os.cpu_count(), verbose=False)
    stops = list(recorder.stop_token_ids)
    times: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
    base: list[dict[str, float]] = []
    for n in range(repeats):
        for name, (side_rag, side_recorder) in sides.items():
            times[name].append(time_ours(side_rag, side_recorder))
        if llm is not None:
            base.append(time_llamacpp(llm, prompt, new_tokens, stops))
        ctx.log(
            f"run {n + 1}/{repeats}: "
            + ", ".join(f"ours{name} {times[name][-1]['s']:.1f} s" for name in sides)
            + (f", llama-cpp-python {base[-1]['s']:.1f} s" if base else "")
        )
    lengths = {r["new"] for runs in [*times.values(), base] for r in runs}
    assert lengths == {new_tokens}, f"unequal lengths: {lengths}"
    ours = times[""]
    figures["answer_s"] = median([r["s"] for r in ours])
    figures["ours_prefill_tps"] = median([r["prefill_tps"] for r in ours])
    figures["ours_decode_tps"] = median([r["decode_tps"] for r in ours])
    for name, runs in times.items():
        if name:
            figures[f"answer_s{name}"] = median([r["s"] for r in runs])
    if base:
        if base[0]["prompt_tokens"] != figures["answer_prompt_tokens"]:
            ctx.log(f"note: llama.cpp reads the prompt as {base[0]['prompt_tokens']} tokens")
        figures["llamacpp_answer_s"] = median([r["s"] for r in base])
        figures["llamacpp_prefill_tps"] = median([r["prefill_tps"] for r in base])
        figures["llamacpp_decode_tps"] = median([r["decode_tps"] for r in base])
        for name, runs in times.items():
            ratio = median([o["s"] / b["s"] for o, b in zip(runs, base, strict=True)])
            figures[f"answer_time_ratio{name}" if name else "answer_time_ratio_vs_llamacpp"] = ratio
    else:
        ctx.log("llama-cpp-python is not installed (pip install -e '.[bench]'): no comparison")

    # Under load: another process keeps one core busy, as other work on a user's machine.
    one_thread = open_rag(index, backend, threads=1, **forced)
    loaded: dict[str, list[float]] = {"ours": [], "ours_1": [], "base": []}
    with one_core_busy():
        for _ in range(max(1, repeats // 2)):
            loaded["ours"].append(time_ours(*sides[""])["s"])
            loaded["ours_1"].append(time_ours(*one_thread)["s"])
            if llm is not None:
                loaded["base"].append(time_llamacpp(llm, prompt, new_tokens, stops)["s"])
    one_thread[0].close()
    figures["answer_s_one_core_busy"] = median(loaded["ours"])
    figures["answer_s_one_core_busy_1_thread"] = median(loaded["ours_1"])
    if loaded["base"]:
        figures["llamacpp_answer_s_one_core_busy"] = median(loaded["base"])
    for side_rag, _ in sides.values():
        side_rag.close()
    del sides, llm

    # Separate processes, the way a person runs it.
    env = {k: v for k, v in os.environ.items() if k != "RAG_BACKEND"}
    env.update({"COLUMNS": "100", "LINES": "40", "TERM": "xterm-256color"})
    runs = 1 if ctx.quick else 3
    variants = [(backend, "")]
    if backend != "transformers":
        variants.append(("transformers", "_transformers_backend"))
    for name, suffix in variants:
        starts, totals, peaks = [], [], []
        for _ in range(runs):
            try:
                first, total, peak = cold_start(index, {**env, "RAG_BACKEND": name})
            except RuntimeError as error:  # keep the figures measured above
                ctx.log(f"rag ask ({name}) failed: {error}")
                continue
            starts.append(first)
            totals.append(total)
            peaks.append(peak)
            ctx.log(f"rag ask ({name}): first character {first:.1f} s, exit {total:.1f} s, "
                    f"peak RSS {peak:.2f} GB")  # fmt: skip
        figures[f"cold_start_s{suffix}"] = median(starts) if starts else float("nan")
        figures[f"ask_peak_rss_gb{suffix}"] = max(peaks) if peaks else float("nan")
        if not suffix:
            figures["ask_total_s"] = median(totals) if totals else float("nan")
    figures |= fresh_home(ctx, folder, env)
    return figures


def fresh_home(ctx: BenchContext, folder: Path, env: dict[str, str]) -> dict[str, float]:
    """What the default preset costs a new machine: `rag models prepare` in an empty RAG_HOME,
    then an ingest of the sample and one answer; the disk RAG_HOME holds afterwards."""
    home = folder / "fresh-home"
    shutil.rmtree(home, ignore_errors=True)
    rag = Path(sys.executable).with_name("rag")
    run_env = {**env, "RAG_HOME": str(home), "RAG_PROGRESS": "false"}
    started = time.perf_counter()
    subprocess.run([str(rag), "models", "prepare"], env=run_env, check=True, capture_output=True)
    prepared = time.perf_counter() - started
    index = folder / "fresh-index"
    shutil.rmtree(index, ignore_errors=True)
    subprocess.run(
        [str(rag), "ingest", str(SAMPLE_ARTICLES), "--index", str(index)],
        env=run_env, check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        [str(rag), "ask", SAMPLE_QUESTION, "--index", str(index)],
        env=run_env, check=True, capture_output=True,
    )  # fmt: skip
    size = sum(f.stat().st_size for f in home.rglob("*") if f.is_file())
    ctx.log(f"fresh RAG_HOME: prepared in {prepared:.0f} s, {size / 1e9:.2f} GB after an answer")
    shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(index, ignore_errors=True)
    return {"fresh_home_prepare_s": prepared, "fresh_home_disk_gb": size / 1e9}
