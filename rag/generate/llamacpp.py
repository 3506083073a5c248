"""The llama.cpp engine (llama-cpp-python) on the model's own GGUF file.

A second implementation of :class:`rag.generate.ChatModel`, chosen with the ``backend`` setting.
Why it exists: on a small CPU llama.cpp runs the quantized Q4_K_M weights directly, where
transformers has to dequantize them to bf16. That reads a fraction of the bytes per token (decode
is memory-bound), loads by mmap instead of reading the weights, and needs about half the memory;
see BENCHMARKS.md (``benchmarks/answer.py``) for the measured figures.

What stays the same as the transformers engine, so answers do not change in kind: the prompt
is the same text (the model's chat template from the GGUF, rendered as transformers renders
it), decoding is greedy at temperature 0, and ``stop_penalty`` is subtracted from the same
end-of-turn logits. The weights are the publisher's Q4_K_M values as they are, rather than
their bf16 dequantization, so the arithmetic (and now and then a greedy choice) differs.

Prompts are not read twice. The KV cache of the previous reply is kept, so a prompt that starts
like the last one (a chat's earlier turns) only reads what is new. And the part of a prompt that
every answer shares, all messages but the last (the system message and the worked examples), is
saved to ``home/prompt-cache`` the first time it is read (:mod:`rag.generate.prompt_cache`): a
new ``rag ask`` process loads it from there instead of reading it again.
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import json
import logging
import os
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    import numpy as np

__all__ = ["INSTALL_HINT", "LlamaCppGenerator"]

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "The llama.cpp backend needs llama-cpp-python, which is compiled from source here (about "
    "5 minutes on 2 cores; cmake and a C++ compiler must be installed): "
    "pip install 'rag-news[bench]', or choose --backend transformers."
)


class LlamaCppGenerator:
    """A GGUF chat model run by llama.cpp, a :class:`rag.generate.ChatModel`.

    Not safe to call from two threads at once (one context, one KV cache).
    """

    def __init__(
        self,
        name_or_path: str,
        home: Path,
        progress: bool = default("progress"),
        threads: int | None = default("threads"),
    ) -> None:
        try:
            import llama_cpp
        except ImportError as error:
            raise ModelError(INSTALL_HINT) from error
        self.name = name_or_path
        path = models.gguf_file(name_or_path, home, progress=progress)
        # Decode is memory-bound and prefill compute-bound; both want one thread per core, and
        # more threads than cores only contend (as with torch, see rag.generate.transformers).
        n_threads = threads or cores()
        started = time.perf_counter()
        try:
            self.llama = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=MAX_CONTEXT,
                n_threads=n_threads,
                n_threads_batch=n_threads,
                verbose=False,
            )
        except (ValueError, RuntimeError) as error:
            raise ModelError(f"llama.cpp could not load {path}: {error}") from error
        self.load_seconds = time.perf_counter() - started
        self.path = path
        self.prompt_cache: Path | None = Path(home).expanduser() / PROMPT_CACHE
        # What a saved KV cache is only valid for: this file's bytes, this llama.cpp, this context.
        stat = path.stat()
        self._cache_key = (
            f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{llama_cpp.__version__}|"
            f"{self.llama.n_ctx()}|{self.llama.n_batch}"
        ).encode()
        model = self.llama._model  # the vocabulary queries below are only on the inner model
        self.context_length: int = min(self.llama.n_ctx(), model.n_ctx_train() or MAX_CONTEXT)
        self._bos = _token_text(model, model.token_bos())
        self._eos = _token_text(model, model.token_eos())
        self.stop_token_ids: list[int] = self._stop_token_ids(model)
        if not self.stop_token_ids:
            raise ModelError(
                f"Model {name_or_path!r} declares no end-of-sequence token, so a reply would never "
                f"stop before max_new_tokens."
            )
        template = self.llama.metadata.get("tokenizer.chat_template")
        self._template = _compile(template) if template else None

    def __repr__(self) -> str:
        return f"LlamaCppGenerator({self.name!r}, context_length={self.context_length})"

    def _stop_token_ids(self, model: Any) -> list[int]:
        """The declared EOS plus the known end-of-turn tokens, as rag.models.stop_token_ids."""
        ids = [model.token_eos()] if model.token_eos() >= 0 else []
        for text in END_OF_TURN_TOKENS:
            found = self.llama.tokenize(text.encode(), add_bos=False, special=True)
            if len(found) == 1 and _token_text(model, found[0]) == text:
                ids.append(found[0])
        return list(dict.fromkeys(ids))

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes in this model's vocabulary (no BOS added)."""
        if not text:
            return 0
        return len(self._tokenize(text))

    def _tokenize(self, text: str) -> list[int]:
        # special=True: control tokens written in the text are read as such, as transformers'
        # tokenizers do (rag.prompt defuses any an article might carry before this).
        tokens: list[int] = self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        return tokens

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        """The prompt text for ``messages`` in the model's own chat format, ready for a reply."""
        if self._template is None:
            raise ModelError(f"Model {self.name!r} has no chat template; use an instruct model.")
        prompt = self._template.render(
            messages=messages,
            add_generation_prompt=True,
            bos_token=self._bos,
            eos_token=self._eos,
        )
        return str(prompt)

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
        import numpy as np

        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        prompt = self._tokenize(self.chat_prompt(messages))
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
            logits = self._logits()
            if stop_penalty:
                logits[stops] -= stop_penalty
            token = _pick(logits, temperature, rng)
            new_tokens += 1
            if first_at is None:
                first_at = time.perf_counter()
            if token in self.stop_token_ids:
                break
            piece = decoder.decode(self.llama.detokenize([token]))
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
        import numpy as np

        llama = self.llama
        cached = llama.input_ids[: min(llama.n_tokens, len(tokens) - 1)]
        differ = np.flatnonzero(cached != np.asarray(tokens[: len(cached)]))
        keep = int(differ[0]) if len(differ) else len(cached)
        if keep == 0:
            llama.reset()
        else:
            llama.n_tokens = keep  # eval() drops the KV cache from here on
        llama.eval(tokens[keep:])

    def _restore_prefix(self, messages: list[dict[str, str]], prompt: list[int]) -> None:
        """Load the KV cache of the prompt's shared part (all messages but the last) from the
        prompt cache, or read it and save it there; nothing when memory already holds it."""
        if self.prompt_cache is None or len(messages) < 2 or self._template is None:
            return
        text = self._template.render(
            messages=messages[:-1],
            add_generation_prompt=False,
            bos_token=self._bos,
            eos_token=self._eos,
        )
        prefix = self._tokenize(text)
        if not worth_caching(prefix, prompt):
            return
        llama = self.llama
        if llama.n_tokens >= len(prefix) and list(llama.input_ids[: len(prefix)]) == prefix:
            return
        file = prompt_cache_file(self.prompt_cache, self._cache_key, prefix, ".kv")
        if file.is_file() and self._load_prefix(file, prefix):
            return
        llama.reset()
        llama.eval(prefix)
        self._save_prefix(file, prefix)

    def _load_prefix(self, file: Path, prefix: list[int]) -> bool:
        import llama_cpp

        llama = self.llama
        llama.reset()
        llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(llama.ctx), -1, 0, -1)
        tokens = (llama_cpp.llama_token * len(prefix))()
        count = ctypes.c_size_t(0)
        read = llama_cpp.llama_state_seq_load_file(
            llama.ctx, os.fsencode(file), 0, tokens, len(prefix), ctypes.byref(count)
        )
        if read == 0 or count.value != len(prefix) or list(tokens) != prefix:
            # Cut off, from another build, or not what its name says: read the prompt instead.
            log.debug("discarding the saved prompt %s", file)
            llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(llama.ctx), -1, 0, -1)
            file.unlink(missing_ok=True)
            return False
        llama.input_ids[: len(prefix)] = prefix
        llama.n_tokens = len(prefix)
        with contextlib.suppress(OSError):
            os.utime(file)  # recently used: kept by prune_prompt_cache
        return True

    def _save_prefix(self, file: Path, prefix: list[int]) -> None:
        """Write the KV cache of ``prefix`` (all the context holds now) to ``file``."""
        import llama_cpp

        tokens = (llama_cpp.llama_token * len(prefix))(*prefix)
        save_prompt_cache(
            file,
            lambda partial: bool(
                llama_cpp.llama_state_seq_save_file(
                    self.llama.ctx, os.fsencode(partial), 0, tokens, len(prefix)
                )
            ),
        )

    def _logits(self) -> np.ndarray:
        """A copy of the next-token logits after the last evaluated token."""
        import llama_cpp
        import numpy as np

        pointer = llama_cpp.llama_get_logits_ith(self.llama.ctx, -1)
        return np.ctypeslib.as_array(pointer, shape=(self.llama.n_vocab(),)).copy()

    def generate(
        self,
        messages: list[dict[str, str]],
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        stop_penalty: float = 0.0,
    ) -> Generation:
        """The whole reply at once (same as draining :meth:`stream`)."""
        return drain(self.stream(messages, max_new_tokens, temperature, stop_penalty))


def _pick(logits: np.ndarray, temperature: float, rng: np.random.Generator | None) -> int:
    """Greedy at temperature 0 (reproducible), else a sample from the softmax."""
    import numpy as np

    if rng is None or temperature <= 0:
        return int(np.argmax(logits))
    scaled = logits.astype(np.float64) / temperature
    scaled -= scaled.max()
    weights = np.exp(scaled)
    return int(rng.choice(len(weights), p=weights / weights.sum()))


def _token_text(model: Any, token: int) -> str:
    return model.token_get_text(token) if token >= 0 else ""


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
