"""The llama.cpp engine: the model's own GGUF file, its quantized weights read as they are.

The default engine (``backend = "llama.cpp"``). On a small CPU llama.cpp runs the Q4_K_M weights
directly, where transformers has to dequantize them to bf16: it reads a fraction of the bytes per
token (decode is memory-bound), loads by mmap instead of reading the weights, and needs about half
the memory (BENCHMARKS.md, area ``answer``). It runs on one of two runtimes of the same C library,
behind :class:`LlamaRuntime`:

- :mod:`rag.generate.libllama`: llama.cpp as the ``xllamacpp`` wheel ships it, prebuilt (the
  default: nothing is compiled at install);
- :mod:`rag.generate.llama_cpp_python`: llama-cpp-python, for those who compile it
  (``backend = "llama-cpp-python"``; ``pip install 'rag-news[llama-cpp-python]'``).

This module is what they share, and what makes answers the same in kind as the transformers
engine's: the prompt is the same text (the model's chat template from the GGUF, rendered as
transformers renders it), decoding is greedy at temperature 0 (this module picks each token from
the logits), and ``stop_penalty`` is subtracted from the same end-of-turn logits.

Prompts are not read twice. The KV cache of the previous reply is kept, so a prompt that starts
like the last one (a chat's earlier turns) only reads what is new. And the part of a prompt that
every answer shares, all messages but the last (the system message and the worked examples), is
saved to ``home/prompt-cache`` the first time it is read (:mod:`rag.generate.prompt_cache`): a
new ``rag ask`` process loads it from there instead of reading it again.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from rag import models
from rag.errors import ModelError
from rag.generate.base import END_OF_TURN_TOKENS, MAX_CONTEXT, Generation, drain
from rag.generate.prompt_cache import (
    PROMPT_CACHE,
    prompt_cache_file,
    save_prompt_cache,
    worth_caching,
)
from rag.settings import default
from rag.system import cores

__all__ = ["LlamaCppGenerator", "LlamaRuntime"]

log = logging.getLogger(__name__)

# Tokens read per llama_decode call while reading a prompt.
BATCH = 512


class LlamaRuntime(Protocol):
    """One llama.cpp model and context, as this engine drives it."""

    tokens: list[int]
    """The tokens whose keys and values the context holds, in order."""
    n_ctx: int
    n_ctx_train: int
    version: str
    """Which runtime and library built the KV states it saves (part of their cache key)."""

    def tokenize(self, text: str) -> list[int]: ...

    def piece(self, token: int) -> bytes: ...

    def text_of(self, token: int) -> str: ...

    @property
    def bos(self) -> int: ...

    @property
    def eos(self) -> int: ...

    def metadata(self, key: str) -> str | None: ...

    def eval(self, tokens: list[int]) -> None: ...

    def logits(self) -> np.ndarray: ...

    def truncate(self, keep: int) -> None: ...

    def reset(self) -> None: ...

    def state(self) -> bytes:
        """The KV cache of everything the context holds."""
        ...

    def restore(self, state: bytes, tokens: list[int]) -> bool:
        """Replace the context with a :meth:`state` of ``tokens``; False (and an empty context)
        when the library refuses it."""
        ...


def native_runtime(path: Path, threads: int) -> LlamaRuntime:
    """llama.cpp from the xllamacpp wheel (:mod:`rag.generate.libllama`)."""
    from rag.generate.libllama import XLLAMACPP_VERSION, LlamaContext

    context = LlamaContext(path, n_ctx=MAX_CONTEXT, n_batch=BATCH, threads=threads)
    context.version = f"xllamacpp {XLLAMACPP_VERSION}"  # type: ignore[attr-defined]
    return context  # type: ignore[return-value]


class LlamaCppGenerator:
    """A GGUF chat model run by llama.cpp, a :class:`rag.generate.ChatModel`.

    ``runtime`` makes the model and context from the GGUF path and a thread count (default: the
    prebuilt library). Not safe to call from two threads at once (one context, one KV cache).
    """

    def __init__(
        self,
        name_or_path: str,
        home: Path,
        progress: bool = default("progress"),
        threads: int | None = default("threads"),
        runtime: Any = native_runtime,
    ) -> None:
        self.name = name_or_path
        path = models.gguf_file(name_or_path, home, progress=progress)
        # Decode is memory-bound and prefill compute-bound; both want one thread per core, and
        # more threads than cores only contend.
        started = time.perf_counter()
        self.llama: LlamaRuntime = runtime(path, threads or cores())
        self.load_seconds = time.perf_counter() - started
        self.path = path
        self.prompt_cache: Path | None = Path(home).expanduser() / PROMPT_CACHE
        # What a saved KV cache is only valid for: this file's bytes, this llama.cpp, this context.
        stat = path.stat()
        self._cache_key = (
            f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{self.llama.version}|"
            f"{self.llama.n_ctx}|{BATCH}"
        ).encode()
        self.context_length: int = min(self.llama.n_ctx, self.llama.n_ctx_train or MAX_CONTEXT)
        self._bos = self.llama.text_of(self.llama.bos)
        self._eos = self.llama.text_of(self.llama.eos)
        self.stop_token_ids: list[int] = self._stop_token_ids()
        if not self.stop_token_ids:
            raise ModelError(
                f"Model {name_or_path!r} declares no end-of-sequence token, so a reply would never "
                f"stop before max_new_tokens."
            )
        template = self.llama.metadata("tokenizer.chat_template")
        self._template = _compile(template) if template else None

    def __repr__(self) -> str:
        return f"LlamaCppGenerator({self.name!r}, context_length={self.context_length})"

    def _stop_token_ids(self) -> list[int]:
        """The declared EOS plus the known end-of-turn tokens, as rag.models.stop_token_ids."""
        eos = self.llama.eos
        ids = [eos] if eos >= 0 else []
        for text in END_OF_TURN_TOKENS:
            found = self.llama.tokenize(text)
            if len(found) == 1 and self.llama.text_of(found[0]) == text:
                ids.append(found[0])
        return list(dict.fromkeys(ids))

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes in this model's vocabulary (no BOS added)."""
        if not text:
            return 0
        return len(self.llama.tokenize(text))

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        """The prompt text for ``messages`` in the model's own chat format, ready for a reply."""
        return self._render(messages, add_generation_prompt=True)

    def _render(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
        if self._template is None:
            raise ModelError(f"Model {self.name!r} has no chat template; use an instruct model.")
        return str(
            self._template.render(
                messages=messages,
                add_generation_prompt=add_generation_prompt,
                bos_token=self._bos,
                eos_token=self._eos,
            )
        )

    def forget(self) -> None:
        """Drop the prompt held in memory, as a new process starts (the saved shared part in
        ``prompt_cache`` is still used; set that to None to read whole prompts)."""
        self.llama.reset()

    def stream(
        self,
        messages: list[dict[str, str]],
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        stop_penalty: float = 0.0,
    ) -> Iterator[str | Generation]:
        """Yield the reply's text pieces as they are written, then one final :class:`Generation`.

        Same contract as :meth:`rag.generate.ChatModel.stream`. The model runs in this thread,
        one token per step of the iterator, so closing it early stops the model at once.
        """
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        prompt = self.llama.tokenize(self.chat_prompt(messages))
        room = self.context_length - len(prompt)
        if room < 1:
            raise ModelError(
                f"The prompt has {len(prompt)} tokens, more than the {self.context_length} the "
                f"model can read; give it fewer or shorter passages."
            )
        max_new_tokens = min(max_new_tokens, room)
        stops = np.array(self.stop_token_ids)
        rng = np.random.default_rng() if temperature > 0 else None
        # Bytes of one character can span tokens; the incremental decoder holds them back.
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pieces: list[str] = []
        new_tokens = 0
        started = time.perf_counter()
        first_at: float | None = None
        self._restore_prefix(messages, prompt)
        self._read_prompt(prompt)
        while True:
            logits = self.llama.logits()
            if stop_penalty:
                logits[stops] -= stop_penalty
            token = _pick(logits, temperature, rng)
            new_tokens += 1
            if first_at is None:
                first_at = time.perf_counter()
            if token in self.stop_token_ids:
                break
            piece = decoder.decode(self.llama.piece(token))
            if piece:
                pieces.append(piece)
                yield piece
            if new_tokens >= max_new_tokens:
                break
            self.llama.eval([token])
        finished = time.perf_counter()
        tail = decoder.decode(b"", final=True)
        if tail:
            pieces.append(tail)
            yield tail
        yield Generation(
            text="".join(pieces),
            prompt_tokens=len(prompt),
            new_tokens=new_tokens,
            prefill_seconds=(first_at or finished) - started,
            generation_seconds=finished - (first_at or finished),
        )

    def _read_prompt(self, tokens: list[int]) -> None:
        """Evaluate the prompt, reusing the cached tokens it starts with (at least one is read,
        so that the logits are those of its last token)."""
        held = self.llama.tokens
        limit = min(len(held), len(tokens) - 1)
        keep = next((i for i in range(limit) if held[i] != tokens[i]), limit)
        self.llama.truncate(keep)
        self.llama.eval(tokens[keep:])

    def _restore_prefix(self, messages: list[dict[str, str]], prompt: list[int]) -> None:
        """Load the KV cache of the prompt's shared part (all messages but the last) from the
        prompt cache, or read it and save it there; nothing when memory already holds it."""
        if self.prompt_cache is None or len(messages) < 2 or self._template is None:
            return
        prefix = self.llama.tokenize(self._render(messages[:-1], add_generation_prompt=False))
        if not worth_caching(prefix, prompt):
            return
        if self.llama.tokens[: len(prefix)] == prefix:
            return
        file = prompt_cache_file(self.prompt_cache, self._cache_key, prefix, ".kv")
        if file.is_file():
            state = read_state(file, prefix)
            if state is not None and self.llama.restore(state, prefix):
                with contextlib.suppress(OSError):
                    os.utime(file)  # recently used: kept by prune_prompt_cache
                return
            # Cut off, altered, or not what its name says: read the prompt instead.
            log.debug("discarding the saved prompt %s", file)
            file.unlink(missing_ok=True)
        self.llama.reset()
        self.llama.eval(prefix)
        state = self.llama.state()
        save_prompt_cache(file, lambda partial: write_state(partial, prefix, state))

    def generate(
        self,
        messages: list[dict[str, str]],
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        stop_penalty: float = 0.0,
    ) -> Generation:
        """The whole reply at once (same as draining :meth:`stream`)."""
        return drain(self.stream(messages, max_new_tokens, temperature, stop_penalty))


# A saved prefix: this header, the SHA-256 of what follows, the tokens, then llama.cpp's state.
# llama.cpp aborts the process on a state it cannot parse, so nothing reaches it unchecked.
_STATE_MAGIC = b"rag-kv-1\n"


def write_state(path: Path, tokens: list[int], state: bytes) -> bool:
    body = np.asarray(tokens, dtype="<i4").tobytes() + state
    header = _STATE_MAGIC + len(tokens).to_bytes(4, "little") + hashlib.sha256(body).digest()
    path.write_bytes(header + body)
    return True


def read_state(path: Path, tokens: list[int]) -> bytes | None:
    """The llama.cpp state saved in ``path`` for ``tokens``, or None when the file is not whole,
    not for those tokens, or not ours."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    start = len(_STATE_MAGIC) + 4 + 32
    if len(data) < start or not data.startswith(_STATE_MAGIC):
        return None
    count = int.from_bytes(data[len(_STATE_MAGIC) : len(_STATE_MAGIC) + 4], "little")
    body = data[start:]
    if hashlib.sha256(body).digest() != data[start - 32 : start] or count != len(tokens):
        return None
    if np.frombuffer(body[: 4 * count], dtype="<i4").tolist() != tokens:
        return None
    return body[4 * count :]


def _pick(logits: np.ndarray, temperature: float, rng: np.random.Generator | None) -> int:
    """Greedy at temperature 0 (reproducible), else a sample from the softmax."""
    import numpy as np

    if rng is None or temperature <= 0:
        return int(np.argmax(logits))
    scaled = logits.astype(np.float64) / temperature
    scaled -= scaled.max()
    weights = np.exp(scaled)
    return int(rng.choice(len(weights), p=weights / weights.sum()))


def _compile(template: str) -> Any:
    """The chat template, compiled the way transformers compiles it, so both backends write the
    same prompt text: a sandbox, trimmed blocks, loop controls, and its ``tojson`` and
    ``raise_exception``."""
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise ModelError(f"The model's chat template refused the messages: {message}")

    def tojson(
        value: Any,
        ensure_ascii: bool = False,
        indent: int | None = None,
        separators: Any = None,
        sort_keys: bool = False,
    ) -> str:
        return json.dumps(
            value,
            ensure_ascii=ensure_ascii,
            indent=indent,
            separators=separators,
            sort_keys=sort_keys,
        )

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template)
