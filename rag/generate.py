"""Text generation with a local chat model, streamed piece by piece, with timings.

:class:`Generator` loads a model once (through :mod:`rag.models`, so presets are prepared on first
use) and answers chat messages. :meth:`Generator.stream` yields text as the model writes it, which
matters on a CPU where a 200-token answer takes tens of seconds, and ends with a
:class:`Generation` that carries the whole text, the token counts and the prefill/decode split
that tells where the time went. The part of the prompt that every answer shares (the system
message and the worked examples) is read once per loaded model and its KV cache kept, so later
answers and chat turns read only their own passages and question.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from rag import models
from rag.models import ModelError

__all__ = ["MAX_CONTEXT", "ChatModel", "Generation", "Generator", "load_generator"]

# The Qwen2.5 models declare 32k positions, but on 2 CPU cores a prompt that long takes minutes to
# read (about 120 tokens/s for the 1.5B) and attention cost grows with it; 8k is already far more
# than a handful of news paragraphs and a question need.
MAX_CONTEXT = 8192

# A shared prompt prefix shorter than this is not worth keeping: reading it costs little more
# than copying its cache.
MIN_CACHED_PREFIX = 64


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
        examples, about 340 of the sample question's 793 tokens); all but the last message are
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
        if not MIN_CACHED_PREFIX <= len(prefix) < len(prompt) or prompt[: len(prefix)] != prefix:
            return None  # too short to pay, or the template does not end a turn on a token edge
        if prefix != self._prefix_ids:
            import torch

            self._prefix_kv = self.model(input_ids=torch.tensor([prefix]), use_cache=True).cache
            self._prefix_ids = prefix
        return copy.deepcopy(self._prefix_kv)


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
