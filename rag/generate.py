"""Text generation with a local chat model, streamed piece by piece, with timings.

:class:`Generator` loads a model once (through :mod:`rag.models`, so presets are prepared on first
use) and answers chat messages. :meth:`Generator.stream` yields text as the model writes it, which
matters on a CPU where a 200-token answer takes tens of seconds, and ends with a
:class:`Generation` that carries the whole text, the token counts and the prefill/decode split
that tells where the time went. The part of the prompt that every answer shares (the system
message and the worked examples) is read once and its KV cache kept, in memory and in
``RAG_HOME/prompt-cache`` for the next process, so answers and chat turns read only their own
passages and question.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from rag import models
from rag.models import ModelError

__all__ = ["MAX_CONTEXT", "ChatModel", "Generation", "Generator", "load_generator"]

log = logging.getLogger(__name__)

# The Qwen2.5 models declare 32k positions, but on 2 CPU cores a prompt that long takes minutes to
# read (about 120 tokens/s for the 1.5B) and attention cost grows with it; 8k is already far more
# than a handful of news paragraphs and a question need.
MAX_CONTEXT = 8192

# Saved KV caches of shared prompt prefixes live in RAG_HOME/prompt-cache, so that a new process
# loads them (milliseconds) instead of reading the prefix again (seconds).
PROMPT_CACHE = "prompt-cache"
# A shared prefix shorter than this is read faster than its cache is found and loaded.
MIN_CACHED_PREFIX = 64
# Saved prefixes kept (the newest used); one per model and prompt template in practice.
MAX_CACHED_PREFIXES = 16


@dataclass
class Generation:
    """One finished reply and what it cost."""

    text: str
    """The reply, exactly the streamed pieces joined (end-of-turn tokens are not included)."""
    prompt_tokens: int
    new_tokens: int
    """Tokens the model produced, counting the end-of-turn token when it stopped on one."""
    prefill_seconds: float
    """From the start to the first new token: reading the prompt."""
    generation_seconds: float
    """From the first new token to the last."""

    @property
    def prefill_tokens_per_second(self) -> float:
        return self.prompt_tokens / self.prefill_seconds if self.prefill_seconds > 0 else 0.0

    @property
    def decode_tokens_per_second(self) -> float:
        """Speed of writing, over the tokens after the first (the first comes with the prefill)."""
        if self.generation_seconds <= 0 or self.new_tokens < 2:
            return 0.0
        return (self.new_tokens - 1) / self.generation_seconds


def drain(stream: Iterator[str | Generation]) -> Generation:
    """The final :class:`Generation` of a backend's ``stream``, its text pieces consumed."""
    final: Generation | None = None
    for item in stream:
        if isinstance(item, Generation):
            final = item
    assert final is not None  # every stream ends with one
    return final


class Generator:
    """A loaded chat model that turns messages into replies.

    Loading happens once, here; each call then only runs the model. Not safe to call from two
    threads at once (one model, one set of CPU cores: running two replies together would only
    make both slower).
    """

    def __init__(
        self, name_or_path: str, home: Path, progress: bool = True, threads: int | None = None
    ) -> None:
        self.name = name_or_path
        self.model, self.tokenizer = models.load(
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
        return f"Generator({self.name!r}, context_length={self.context_length})"

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

        ``temperature == 0`` decodes greedily, so the same messages give the same reply.
        ``stop_penalty`` is subtracted from the end-of-turn logits: small models tend to
        stop after the first fact of a paragraph that states two (a measured 0.60 for
        stopping against 0.17 for going on), while a finished reply, such as a refusal,
        still stops, its end token being near certain. The model
        runs in a worker thread while this generator hands out text; closing the generator early
        (``break``) stops the model at its next token instead of letting it run on.
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
        examples, 514 of the sample question's 643 tokens); all but the last message are
        read once and kept, so each later answer reads only its passages and question. The
        copy is what ``generate`` extends; the kept cache stays as it was. Runs in the
        generation thread, under ``torch.inference_mode``.
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

        # One position of logits, not the prefix's (514 x 152k floats); only the cache is kept.
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


class ChatModel(Protocol):
    """What rag.answer and rag.api use of a generator; each backend implements all of it."""

    name: str
    context_length: int
    stop_token_ids: list[int]
    load_seconds: float

    def count_tokens(self, text: str) -> int: ...

    def chat_prompt(self, messages: list[dict[str, str]]) -> str: ...

    def stream(
        self,
        messages: list[dict[str, str]],
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        stop_penalty: float = 0.0,
    ) -> Iterator[str | Generation]: ...

    def generate(
        self,
        messages: list[dict[str, str]],
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        stop_penalty: float = 0.0,
    ) -> Generation: ...


def load_generator(
    name_or_path: str,
    home: Path,
    backend: Literal["transformers", "llama.cpp"] = "transformers",
    progress: bool = True,
    threads: int | None = None,
) -> ChatModel:
    """Load the model with the chosen backend (the ``backend`` setting).

    transformers is the default because it works after the plain install; llama.cpp needs
    llama-cpp-python compiled (:mod:`rag.generate_llamacpp` says why it is worth it). Imported
    only when chosen, so neither backend's libraries load for the other.
    """
    if backend == "llama.cpp":
        from rag.generate_llamacpp import LlamaCppGenerator

        return LlamaCppGenerator(name_or_path, home, progress=progress, threads=threads)
    if backend == "transformers":
        return Generator(name_or_path, home, progress=progress, threads=threads)
    raise ValueError(f"Unknown backend {backend!r}: 'transformers' or 'llama.cpp'.")


def worth_caching(prefix: list[int], prompt: list[int]) -> bool:
    """Whether ``prefix`` (the prompt's shared messages, tokenised alone) is long enough to pay
    for a cache and begins ``prompt`` token for token (a template may not end a turn on a token
    edge)."""
    return MIN_CACHED_PREFIX <= len(prefix) < len(prompt) and prompt[: len(prefix)] == prefix


def prompt_cache_file(folder: Path, key: bytes, prefix: list[int], suffix: str) -> Path:
    """Where the KV cache of ``prefix`` is saved, for a model and runtime named by ``key``."""
    digest = hashlib.sha256(key + json.dumps(prefix).encode()).hexdigest()
    return folder / f"{digest[:32]}{suffix}"


def save_prompt_cache(file: Path, write: Callable[[Path], bool]) -> None:
    """Save a prompt prefix's KV cache as ``file``: ``write`` fills a scratch file, which is
    renamed into place when it returns True, so a reader never sees half a file. A cache that
    cannot be written (read-only home, full disk) only costs the next start a read."""
    partial = file.with_name(f".{file.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        if write(partial):
            os.replace(partial, file)
        prune_prompt_cache(file.parent)
    except OSError as error:
        log.debug("could not save the prompt cache %s: %s", file, error)
    finally:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)


def prune_prompt_cache(folder: Path) -> None:
    """Keep the most recently used saved prompts (of either backend), delete the rest."""
    files = [f for f in folder.iterdir() if f.is_file() and not f.name.startswith(".")]
    files.sort(key=lambda f: f.stat().st_mtime, reverse=True)
    for stale in files[MAX_CACHED_PREFIXES:]:
        stale.unlink(missing_ok=True)


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
            super().put(value)

    return TimedStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
