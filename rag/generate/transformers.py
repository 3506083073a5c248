"""The transformers engine: the model's converted bf16 folder, run by transformers on torch.

Works after the plain install. :func:`load_model` loads a prepared folder (preparing a preset on
first use, through :mod:`rag.models`) and repairs a damaged one; :class:`TransformersGenerator`
answers chat messages with it. The part of the prompt that every answer shares (the system
message and the worked examples) is read once and its KV cache kept, in memory and in
``RAG_HOME/prompt-cache`` for the next process (:mod:`rag.generate.prompt_cache`), so answers and
chat turns read only their own passages and question. torch and transformers are imported only
when a model is loaded.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rag import models
from rag.environment import OMP_WAIT_POLICY_IN_TIME
from rag.errors import ModelError
from rag.generate.base import MAX_CONTEXT, Generation, drain
from rag.generate.prompt_cache import (
    PROMPT_CACHE,
    prompt_cache_file,
    save_prompt_cache,
    worth_caching,
)
from rag.quiet import quiet_transformers
from rag.settings import default
from rag.system import cores

__all__ = ["TransformersGenerator", "load_model"]

log = logging.getLogger(__name__)


class TransformersGenerator:
    """A loaded chat model that turns messages into replies, a :class:`rag.generate.ChatModel`.

    Loading happens once, here; each call then only runs the model. Not safe to call from two
    threads at once (one model, one set of CPU cores: running two replies together would only
    make both slower).
    """

    def __init__(
        self,
        name_or_path: str,
        home: Path,
        progress: bool = default("progress"),
        threads: int | None = default("threads"),
    ) -> None:
        self.name = name_or_path
        self.model, self.tokenizer = load_model(
            name_or_path, home, progress=progress, threads=threads
        )
        self.load_seconds: float = getattr(self.model, "rag_load_seconds", 0.0)
        declared = getattr(self.model.config, "max_position_embeddings", None) or MAX_CONTEXT
        self.context_length: int = min(int(declared), MAX_CONTEXT)
        self.stop_token_ids: list[int] = models.stop_token_ids(
            self.tokenizer, self.model.generation_config
        )
        if not self.stop_token_ids:
            raise ModelError(
                f"Model {name_or_path!r} declares no end-of-sequence token, so a reply would never "
                f"stop before max_new_tokens."
            )
        pad = self.tokenizer.pad_token_id
        self._pad_token_id: int = pad if pad is not None else self.stop_token_ids[0]
        # The shared part of the last prompt (see _prefix_cache) and its KV cache.
        self._prefix_ids: list[int] = []
        self._prefix_kv: Any = None
        self.prompt_cache: Path | None = Path(home).expanduser() / PROMPT_CACHE
        self._cache_key = _weights_identity(Path(self.model.name_or_path))

    def __repr__(self) -> str:
        return f"TransformersGenerator({self.name!r}, context_length={self.context_length})"

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes in this model's vocabulary (no special tokens added)."""
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        """The prompt text for ``messages`` in the model's own chat format, ready for a reply."""
        if not getattr(self.tokenizer, "chat_template", None):
            raise ModelError(f"Model {self.name!r} has no chat template; use an instruct model.")
        prompt = self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        return str(prompt)

    def stream(
        self,
        messages: list[dict[str, str]],
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        stop_penalty: float = 0.0,
    ) -> Iterator[str | Generation]:
        """Yield the reply's text pieces as they are written, then one final :class:`Generation`.

        The contract of :meth:`rag.generate.ChatModel.stream`. The model runs in a worker thread
        while this generator hands out text; closing the generator early (``break``) stops the
        model at its next token instead of letting it run on.
        """
        import torch
        from transformers import (
            LogitsProcessor,
            LogitsProcessorList,
            StoppingCriteria,
            StoppingCriteriaList,
        )

        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        prompt = self.chat_prompt(messages)
        encoded = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        prompt_tokens = int(encoded["input_ids"].shape[1])
        room = self.context_length - prompt_tokens
        if room < 1:
            raise ModelError(
                f"The prompt has {prompt_tokens} tokens, more than the {self.context_length} the "
                f"model can read; give it fewer or shorter passages."
            )
        max_new_tokens = min(max_new_tokens, room)

        streamer = _timed_streamer(self.tokenizer)
        cancel = threading.Event()

        class _Cancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                return cancel.is_set()

        sampling: dict[str, Any] = (
            {"do_sample": True, "temperature": temperature}
            if temperature > 0
            # top_p/top_k are nulled so the model's own sampling defaults don't warn in greedy mode.
            else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        )
        stop_ids = self.stop_token_ids

        class _StopPenalty(LogitsProcessor):
            def __call__(self, input_ids: Any, scores: Any) -> Any:
                scores[:, stop_ids] -= stop_penalty
                return scores

        processors = [_StopPenalty()] if stop_penalty else []
        result: dict[str, Any] = {}

        def run() -> None:
            try:
                with torch.inference_mode():
                    cache = self._prefix_cache(messages, encoded["input_ids"][0].tolist())
                    result["sequences"] = self.model.generate(
                        **encoded,
                        cache=cache,
                        max_new_tokens=max_new_tokens,
                        eos_token_id=self.stop_token_ids,
                        pad_token_id=self._pad_token_id,
                        streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([_Cancelled()]),
                        logits_processor=LogitsProcessorList(processors),
                        **sampling,
                    )
            except BaseException as error:  # handed to the consumer thread, which re-raises
                result["error"] = error
                streamer.end()  # unblock the consumer
            finally:
                result["finished_at"] = time.perf_counter()

        started = time.perf_counter()
        worker = threading.Thread(target=run, name="rag-generate", daemon=True)
        worker.start()
        pieces: list[str] = []
        try:
            for piece in streamer:
                if piece:
                    pieces.append(piece)
                    yield piece
        finally:
            cancel.set()
            worker.join()
        if "error" in result:
            raise result["error"]

        new_tokens = int(result["sequences"].shape[1]) - prompt_tokens
        first = streamer.first_token_at or result["finished_at"]
        yield Generation(
            text="".join(pieces),
            prompt_tokens=prompt_tokens,
            new_tokens=new_tokens,
            prefill_seconds=first - started,
            generation_seconds=result["finished_at"] - first,
        )

    def generate(
        self,
        messages: list[dict[str, str]],
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        stop_penalty: float = 0.0,
    ) -> Generation:
        """The whole reply at once (same as draining :meth:`stream`)."""
        return drain(self.stream(messages, max_new_tokens, temperature, stop_penalty))

    def _prefix_cache(self, messages: list[dict[str, str]], prompt: list[int]) -> Any:
        """A copy of the KV cache of the prompt's shared part, or None to read it all.

        Every answer's prompt starts with the same messages (the system message and the worked
        examples, most of its tokens); all but the last message are read once and kept, so
        each later answer reads only its passages and question. The copy is what ``generate``
        extends; the kept cache stays as it was. Runs in the generation thread, under
        ``torch.inference_mode``.
        """
        if len(messages) < 2:
            return None
        text = self.tokenizer.apply_chat_template(
            messages[:-1], tokenize=False, add_generation_prompt=False
        )
        prefix = self.tokenizer.encode(str(text), add_special_tokens=False)
        if not worth_caching(prefix, prompt):
            return None
        if prefix != self._prefix_ids:
            self._prefix_kv = self._saved_prefix(prefix) or self._read_prefix(prefix)
            self._prefix_ids = prefix
        return copy.deepcopy(self._prefix_kv)

    def _prefix_file(self, prefix: list[int]) -> Path | None:
        if self.prompt_cache is None:
            return None
        return prompt_cache_file(self.prompt_cache, self._cache_key, prefix, ".safetensors")

    def _read_prefix(self, prefix: list[int]) -> Any:
        """Read ``prefix`` with the model, and save its KV cache for the next process."""
        import torch
        from safetensors import SafetensorError
        from safetensors.torch import save_file

        # One position of logits, not one per prefix token over the whole vocabulary: only the
        # cache is kept.
        output = self.model(input_ids=torch.tensor([prefix]), use_cache=True, logits_to_keep=1)
        cache = output.cache
        file = self._prefix_file(prefix)
        if file is not None:
            tensors = {}
            for layer, (keys, values, *_) in enumerate(cache):
                tensors[f"{layer}.keys"] = keys.contiguous()
                tensors[f"{layer}.values"] = values.contiguous()

            def write(partial: Path) -> bool:
                try:
                    save_file(tensors, partial)
                except SafetensorError as error:  # a full disk or an unwritable folder
                    raise OSError(str(error)) from error
                return True

            save_prompt_cache(file, write)
        return cache

    def _saved_prefix(self, prefix: list[int]) -> Any:
        """The KV cache of ``prefix`` as an earlier process saved it, or None."""
        file = self._prefix_file(prefix)
        if file is None or not file.is_file():
            return None
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        from transformers import DynamicCache

        try:
            tensors = load_file(file)
            layers = len(tensors) // 2
            data = [(tensors[f"{i}.keys"], tensors[f"{i}.values"]) for i in range(layers)]
            if not data or any(keys.shape[-2] != len(prefix) for keys, _ in data):
                raise ValueError(f"not a cache of {len(prefix)} tokens")
            cache = DynamicCache(ddp_cache_data=data, config=self.model.config)
        except (OSError, ValueError, KeyError, SafetensorError) as error:
            # Cut off or not what its name says: read the prompt instead (and save it anew).
            log.debug("discarding the saved prompt %s: %s", file, error)
            file.unlink(missing_ok=True)
            return None
        with contextlib.suppress(OSError):
            os.utime(file)  # recently used: kept by prune_prompt_cache
        log.debug("prompt prefix of %d tokens loaded from %s", len(prefix), file)
        return cache


def load_model(
    name_or_path: str,
    home: Path,
    progress: bool = default("progress"),
    threads: int | None = default("threads"),
) -> tuple[Any, Any]:
    """Load a model (preparing it first if needed) in bf16, eval mode, offline: (model, tokenizer).

    bf16 rather than fp32: faster decoding and half the memory on a CPU. Torch gets ``threads``
    threads, by default one per available core (decode is memory-bound, more threads than cores
    only contend). A prepared folder that fails to load is checked in full and, when damaged,
    prepared again (:func:`rag.models.repair_after_failure`). The load time is logged and kept as
    ``model.rag_load_seconds``.
    """
    folder = models.resolve(name_or_path, home, progress=progress)
    import torch

    if not OMP_WAIT_POLICY_IN_TIME:
        log.warning(
            "torch was imported before rag set OMP_WAIT_POLICY=PASSIVE; generation may be many "
            "times slower. Set OMP_WAIT_POLICY=PASSIVE in the environment."
        )
    torch.set_num_threads(threads or cores())
    started = time.perf_counter()
    try:
        model, tokenizer = _load_folder(folder)
    except Exception as error:  # safetensors, tokenizers and transformers each raise their own
        folder = models.repair_after_failure(folder, error, progress)
        started = time.perf_counter()
        try:
            model, tokenizer = _load_folder(folder)
        except Exception as again:
            raise ModelError(
                f"Could not load the model in {folder}, even just prepared anew: {again}"
            ) from again
    model.eval()
    seconds = time.perf_counter() - started
    model.rag_load_seconds = seconds
    log.info("loaded %s from %s in %.1f s", name_or_path, folder, seconds)
    return model, tokenizer


class _MissingWeights(ValueError):
    """The weights file lacks tensors the model needs (transformers would fill them at random)."""


def _load_folder(folder: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # No status line of our own here: loading takes seconds, and callers that want one
    # (rag.api) show theirs; two live displays on one terminal garble each other.
    with quiet_transformers():
        # Typed as Any: with output_loading_info the stubs' return type is wrong (a pair).
        loaded: Any = AutoModelForCausalLM.from_pretrained(
            str(folder), dtype=torch.bfloat16, local_files_only=True, output_loading_info=True
        )
        model, loading = loaded
        # transformers only logs these (silenced above) and fills such tensors with random
        # values: the model would load and write nonsense.
        lacking = sorted(loading.get("missing_keys") or ()) + sorted(
            str(key) for key in loading.get("mismatched_keys") or ()
        )
        if lacking:
            raise _MissingWeights(
                f"its weights lack or misshape {len(lacking)} tensors ({', '.join(lacking[:3])})"
            )
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    return model, tokenizer


def _weights_identity(folder: Path) -> bytes:
    """What a saved KV cache is only valid for: these weight files (a model prepared anew
    writes new ones) and the torch and transformers that computed it."""
    import torch
    import transformers

    parts = [str(folder.resolve()), torch.__version__, transformers.__version__]
    for file in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("config.json")):
        stat = file.stat()
        parts.append(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}")
    return "|".join(parts).encode()


def _timed_streamer(tokenizer: Any) -> Any:
    """A TextIteratorStreamer that also notes when the first new token arrived.

    A factory so that transformers is imported only when a model is actually used.
    """
    from transformers import TextIteratorStreamer

    class TimedStreamer(TextIteratorStreamer):
        first_token_at: float | None = None

        def put(self, value: Any) -> None:
            # The first put carries the prompt; the next one is the first generated token.
            if not self.next_tokens_are_prompt and self.first_token_at is None:
                self.first_token_at = time.perf_counter()
            super().put(value)  # type: ignore[no-untyped-call]

    return TimedStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
