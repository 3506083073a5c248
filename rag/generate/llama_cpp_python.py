"""llama-cpp-python as a runtime of the llama.cpp engine (``backend = "llama-cpp-python"``).

For those who compile llama-cpp-python (``pip install 'rag-news[llama-cpp-python]'``, several
minutes on 2 cores): it builds llama.cpp for the very CPU it is installed on (AVX-512 where there
is one), where the prebuilt default (:mod:`rag.generate.libllama`) targets AVX2. The engine
around it is :class:`rag.generate.llamacpp.LlamaCppGenerator`; this module only adapts
``llama_cpp.Llama`` to :class:`rag.generate.llamacpp.LlamaRuntime`.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ModelError
from rag.generate.base import MAX_CONTEXT

__all__ = ["INSTALL_HINT", "LlamaCppPython"]

INSTALL_HINT = (
    "The llama-cpp-python backend needs llama-cpp-python, which is compiled from source here "
    "(minutes on 2 cores; cmake and a C++ compiler must be installed): "
    "pip install 'rag-news[llama-cpp-python]', or choose --backend llama.cpp (prebuilt)."
)


class LlamaCppPython:
    """A ``llama_cpp.Llama`` seen as a :class:`~rag.generate.llamacpp.LlamaRuntime`."""

    def __init__(self, path: Path, threads: int) -> None:
        try:
            import llama_cpp
        except ImportError as error:
            raise ModelError(INSTALL_HINT) from error
        from rag.generate.llamacpp import BATCH

        self._api: Any = llama_cpp
        try:
            self.llama: Any = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=MAX_CONTEXT,
                n_batch=BATCH,
                n_threads=threads,
                n_threads_batch=threads,
                verbose=False,
            )
        except (ValueError, RuntimeError) as error:
            raise ModelError(f"llama.cpp could not load {path}: {error}") from error
        self._model: Any = self.llama._model  # the vocabulary queries are on the inner model
        self.n_ctx = int(self.llama.n_ctx())
        self.n_ctx_train = int(self._model.n_ctx_train())
        self.version = f"llama-cpp-python {llama_cpp.__version__}"

    @property
    def tokens(self) -> list[int]:
        return [int(t) for t in self.llama.input_ids[: self.llama.n_tokens]]

    def tokenize(self, text: str) -> list[int]:
        # special=True: control tokens written in the text are read as such, as transformers'
        # tokenizers do (rag.prompt defuses any an article might carry before this).
        found: list[int] = self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        return found

    def piece(self, token: int) -> bytes:
        return bytes(self.llama.detokenize([token]))

    def text_of(self, token: int) -> str:
        return str(self._model.token_get_text(token)) if token >= 0 else ""

    @property
    def bos(self) -> int:
        return int(self._model.token_bos())

    @property
    def eos(self) -> int:
        return int(self._model.token_eos())

    def metadata(self, key: str) -> str | None:
        value = self.llama.metadata.get(key)
        return str(value) if value is not None else None

    def eval(self, tokens: list[int]) -> None:
        self.llama.eval(tokens)

    def logits(self) -> np.ndarray:
        pointer = self._api.llama_get_logits_ith(self.llama.ctx, -1)
        return np.ctypeslib.as_array(pointer, shape=(self.llama.n_vocab(),)).copy()

    def truncate(self, keep: int) -> None:
        if keep <= 0:
            self.reset()
        else:
            self.llama.n_tokens = keep  # eval() drops the KV cache from here on

    def reset(self) -> None:
        self.llama.reset()
        api = self._api
        api.llama_memory_seq_rm(api.llama_get_memory(self.llama.ctx), -1, 0, -1)

    def state(self) -> bytes:
        api, ctx = self._api, self.llama.ctx
        size = api.llama_state_seq_get_size(ctx, 0)
        buffer = (ctypes.c_uint8 * size)()
        written = api.llama_state_seq_get_data(ctx, buffer, size, 0)
        return bytes(buffer[:written])

    def restore(self, state: bytes, tokens: list[int]) -> bool:
        self.reset()
        buffer = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        if self._api.llama_state_seq_set_data(self.llama.ctx, buffer, len(state), 0) != len(state):
            self.reset()
            return False
        self.llama.input_ids[: len(tokens)] = tokens
        self.llama.n_tokens = len(tokens)
        return True
