"""llama.cpp's C API from a prebuilt wheel: the runtime of the default ``llama.cpp`` backend.

There is no prebuilt llama-cpp-python for Linux x86_64 (it compiles for minutes at install).
The ``xllamacpp`` wheel (Xorbits, the engine of Xinference; MIT; monthly releases) ships
llama.cpp and ggml compiled for CPUs with AVX2, linked into one module that exports llama.cpp's
whole C API. This module loads that library with :mod:`ctypes` and binds the few functions an
answer needs: load a GGUF, tokenize, decode a batch, read the logits, trim and clear the KV
cache, and save or load the KV state of a sequence to a file. xllamacpp's own Python API (an
in-process llama-server) is not used: it gives no logits per step and no state files, and it
starts an HTTP listener.

The C structs that cross the boundary by value (``llama_model_params``,
``llama_context_params``) change between llama.cpp versions, so the wheel is pinned
(:data:`XLLAMACPP_VERSION`, in pyproject.toml too) and the layout below is the one that
version's llama.h declares. Before anything is called, :func:`open_library` checks the installed
version, the size the library writes for each struct, and the defaults it fills in at known
offsets; a mismatch is a :class:`~rag.errors.ModelError` that says what to install, never a
corrupted call. Bumping the pin means copying the two structs from llama.h at the llama.cpp
commit that release vendors.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
import os
import platform
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ModelError

__all__ = ["XLLAMACPP_VERSION", "Library", "LlamaContext", "open_library"]

XLLAMACPP_VERSION = "2026.10.11549"
"""The xllamacpp release whose llama.h the structs below copy (llama.cpp of October 2026)."""

INSTALL_HINT = (
    f"The llama.cpp backend runs on the prebuilt llama.cpp of the xllamacpp wheel: "
    f"pip install xllamacpp=={XLLAMACPP_VERSION} (or choose --backend transformers)."
)

Token = ctypes.c_int32
_p = ctypes.c_void_p


class ModelParams(ctypes.Structure):
    """``struct llama_model_params``."""

    _fields_ = [
        ("devices", _p),
        ("tensor_buft_overrides", _p),
        ("n_gpu_layers", ctypes.c_int32),
        ("split_mode", ctypes.c_int),
        ("load_mode", ctypes.c_int),
        ("lazy_mode", ctypes.c_int),
        ("main_gpu", ctypes.c_int32),
        ("tensor_split", _p),
        ("progress_callback", _p),
        ("progress_callback_user_data", _p),
        ("kv_overrides", _p),
        ("vocab_only", ctypes.c_bool),
        ("check_tensors", ctypes.c_bool),
        ("use_extra_bufts", ctypes.c_bool),
        ("no_host", ctypes.c_bool),
        ("no_alloc", ctypes.c_bool),
        ("load_mtp", ctypes.c_bool),
    ]


class ContextParams(ctypes.Structure):
    """``struct llama_context_params``."""

    _fields_ = [
        ("n_ctx", ctypes.c_uint32),
        ("n_batch", ctypes.c_uint32),
        ("n_ubatch", ctypes.c_uint32),
        ("n_seq_max", ctypes.c_uint32),
        ("n_rs_seq", ctypes.c_uint32),
        ("n_outputs_max", ctypes.c_uint32),
        ("n_outputs_max_per_seq", ctypes.c_uint32),
        ("n_threads", ctypes.c_int32),
        ("n_threads_batch", ctypes.c_int32),
        ("ctx_type", ctypes.c_int),
        ("rope_scaling_type", ctypes.c_int),
        ("pooling_type", ctypes.c_int),
        ("attention_type", ctypes.c_int),
        ("flash_attn_type", ctypes.c_int),
        ("rope_freq_base", ctypes.c_float),
        ("rope_freq_scale", ctypes.c_float),
        ("yarn_ext_factor", ctypes.c_float),
        ("yarn_attn_factor", ctypes.c_float),
        ("yarn_beta_fast", ctypes.c_float),
        ("yarn_beta_slow", ctypes.c_float),
        ("yarn_orig_ctx", ctypes.c_uint32),
        ("defrag_thold", ctypes.c_float),
        ("cb_eval", _p),
        ("cb_eval_user_data", _p),
        ("type_k", ctypes.c_int),
        ("type_v", ctypes.c_int),
        ("moe_cache_size", ctypes.c_size_t),
        ("abort_callback", _p),
        ("abort_callback_data", _p),
        ("embeddings", ctypes.c_bool),
        ("offload_kqv", ctypes.c_bool),
        ("no_perf", ctypes.c_bool),
        ("op_offload", ctypes.c_bool),
        ("swa_full", ctypes.c_bool),
        ("kv_unified", ctypes.c_bool),
        ("samplers", _p),
        ("n_samplers", ctypes.c_size_t),
        ("ctx_other", _p),
    ]


class Batch(ctypes.Structure):
    """``struct llama_batch`` (only built by ``llama_batch_get_one`` here)."""

    _fields_ = [
        ("n_tokens", ctypes.c_int32),
        ("token", ctypes.POINTER(Token)),
        ("embd", _p),
        ("pos", _p),
        ("n_seq_id", _p),
        ("seq_id", _p),
        ("logits", _p),
    ]


# Defaults the library fills in, at offsets spread over both structs: a layout that moved
# puts other values here. (field, expected) pairs.
_CONTEXT_DEFAULTS = {
    "n_ctx": 512,
    "n_batch": 2048,
    "n_ubatch": 512,
    "n_seq_max": 1,
    "flash_attn_type": -1,
    "type_k": 1,
    "type_v": 1,
    "offload_kqv": True,
    "kv_unified": False,
    "n_samplers": 0,
}
_MODEL_DEFAULTS = {"n_gpu_layers": -1, "vocab_only": False, "load_mtp": False}

_LOG_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, _p)


class Library:
    """The loaded library and the C functions bound from it (argument and return types set)."""

    def __init__(self, path: Path) -> None:
        # Local, not global: another llama.cpp build in the same process (llama-cpp-python)
        # would otherwise bind its ggml calls to this build's symbols and crash.
        try:
            self.dll = ctypes.CDLL(str(path), mode=os.RTLD_NOW | os.RTLD_LOCAL)
        except OSError as error:
            raise ModelError(
                f"Could not load llama.cpp from {path}: {error}. It needs the system's OpenMP "
                "runtime (Debian: apt-get install libgomp1)."
            ) from error
        self.path = path
        # llama.cpp logs every load step on stderr; kept silent (the callback must stay alive).
        self._silence = _LOG_CALLBACK(lambda level, text, data: None)
        self.fn("llama_log_set", None, _p, _p)(ctypes.cast(self._silence, _p), None)
        self.model_defaults = self.fn("llama_model_default_params", ModelParams)
        self.context_defaults = self.fn("llama_context_default_params", ContextParams)
        check_layout(self)
        self.fn("llama_backend_init", None)()
        b = self.fn
        self.load_model = b("llama_model_load_from_file", _p, ctypes.c_char_p, ModelParams)
        self.new_context = b("llama_init_from_model", _p, _p, ContextParams)
        self.free_context = b("llama_free", None, _p)
        self.free_model = b("llama_model_free", None, _p)
        self.model_vocab = b("llama_model_get_vocab", _p, _p)
        self.n_ctx_train = b("llama_model_n_ctx_train", ctypes.c_int32, _p)
        self.meta_value = b(
            "llama_model_meta_val_str", ctypes.c_int32, _p, ctypes.c_char_p, ctypes.c_char_p,
            ctypes.c_size_t,
        )  # fmt: skip
        self.tokenize = b(
            "llama_tokenize", ctypes.c_int32, _p, ctypes.c_char_p, ctypes.c_int32,
            ctypes.POINTER(Token), ctypes.c_int32, ctypes.c_bool, ctypes.c_bool,
        )  # fmt: skip
        self.token_to_piece = b(
            "llama_token_to_piece", ctypes.c_int32, _p, Token, ctypes.c_char_p, ctypes.c_int32,
            ctypes.c_int32, ctypes.c_bool,
        )  # fmt: skip
        self.token_text = b("llama_vocab_get_text", ctypes.c_char_p, _p, Token)
        self.n_vocab = b("llama_vocab_n_tokens", ctypes.c_int32, _p)
        self.bos = b("llama_vocab_bos", Token, _p)
        self.eos = b("llama_vocab_eos", Token, _p)
        self.is_eog = b("llama_vocab_is_eog", ctypes.c_bool, _p, Token)
        self.batch_one = b("llama_batch_get_one", Batch, ctypes.POINTER(Token), ctypes.c_int32)
        self.decode = b("llama_decode", ctypes.c_int32, _p, Batch)
        self.logits_ith = b(
            "llama_get_logits_ith", ctypes.POINTER(ctypes.c_float), _p, ctypes.c_int32
        )
        self.n_ctx = b("llama_n_ctx", ctypes.c_uint32, _p)
        self.memory = b("llama_get_memory", _p, _p)
        self.memory_seq_rm = b(
            "llama_memory_seq_rm", ctypes.c_bool, _p, ctypes.c_int32, ctypes.c_int32,
            ctypes.c_int32,
        )  # fmt: skip
        self.memory_clear = b("llama_memory_clear", None, _p, ctypes.c_bool)
        self.state_size = b("llama_state_seq_get_size", ctypes.c_size_t, _p, ctypes.c_int32)
        self.state_get = b(
            "llama_state_seq_get_data", ctypes.c_size_t, _p, _p, ctypes.c_size_t, ctypes.c_int32
        )
        self.state_set = b(
            "llama_state_seq_set_data", ctypes.c_size_t, _p, _p, ctypes.c_size_t, ctypes.c_int32
        )

    def fn(self, name: str, restype: Any, *argtypes: Any) -> Callable[..., Any]:
        try:
            function = getattr(self.dll, name)
        except AttributeError:
            raise ModelError(f"{self.path} has no {name}: {INSTALL_HINT}") from None
        function.restype = restype
        function.argtypes = list(argtypes)
        return function  # type: ignore[no-any-return]


def check_layout(library: Library) -> None:
    """Refuse a library whose structs are not laid out as :class:`ContextParams` and
    :class:`ModelParams` say, before a struct crosses the boundary the wrong size."""
    if platform.machine() in ("x86_64", "AMD64"):
        # On x86-64 a struct returned by value is written through a hidden pointer: handed a
        # buffer, the function shows how many bytes it writes.
        for name, struct in (
            ("llama_model_default_params", ModelParams),
            ("llama_context_default_params", ContextParams),
        ):
            written = _bytes_written(getattr(library.dll, name))
            if not ctypes.sizeof(struct) - 8 < written <= ctypes.sizeof(struct):
                raise ModelError(
                    f"The llama.cpp in {library.path} returns {written} bytes for {name}, not "
                    f"{ctypes.sizeof(struct)}: another version than rag was written for. "
                    f"{INSTALL_HINT}"
                )
    context, model = library.context_defaults(), library.model_defaults()
    for struct, expected in ((context, _CONTEXT_DEFAULTS), (model, _MODEL_DEFAULTS)):
        found = {field: getattr(struct, field) for field in expected}
        if found != expected:
            raise ModelError(
                f"The llama.cpp in {library.path} fills its parameters otherwise than rag "
                f"expects ({found} against {expected}). {INSTALL_HINT}"
            )


def _bytes_written(function: Any) -> int:
    """How many bytes a struct-returning ``function`` writes through its hidden result pointer."""
    address = ctypes.cast(function, _p).value
    assert address is not None
    probe = ctypes.CFUNCTYPE(_p, _p)(address)
    seen = []
    for fill in (0xAB, 0x5C):
        buffer = (ctypes.c_uint8 * 1024)(*([fill] * 1024))
        probe(ctypes.addressof(buffer))
        seen.append(bytes(buffer))
    changed = [i for i in range(1024) if seen[0][i] != 0xAB or seen[1][i] != 0x5C]
    return max(changed) + 1 if changed else 0


@cache
def open_library() -> Library:
    """The llama.cpp library of the installed xllamacpp wheel, loaded and checked once.

    The package itself is not imported: only its compiled module is needed, as a library.
    """
    try:
        version = importlib.metadata.version("xllamacpp")
        spec = importlib.util.find_spec("xllamacpp")
    except (importlib.metadata.PackageNotFoundError, ImportError, ValueError):
        raise ModelError(INSTALL_HINT) from None
    if version != XLLAMACPP_VERSION:
        raise ModelError(
            f"xllamacpp {version} is installed, but rag binds the C structs of "
            f"{XLLAMACPP_VERSION}. {INSTALL_HINT}"
        )
    folders = list(spec.submodule_search_locations or []) if spec else []
    found = [p for folder in folders for p in Path(folder).glob("xllamacpp*.so")]
    if not found:
        raise ModelError(f"The xllamacpp package has no compiled module. {INSTALL_HINT}")
    return Library(found[0])


class LlamaContext:
    """A GGUF model and one context over it: the KV cache of one sequence, and the tokens it
    holds (llama.cpp keeps no list of them, so this class does)."""

    def __init__(self, path: Path, n_ctx: int, n_batch: int, threads: int) -> None:
        self.model: Any = None
        self.ctx: Any = None
        self.lib = lib = open_library()
        params = lib.model_defaults()
        params.n_gpu_layers = 0
        self.model = lib.load_model(os.fsencode(path), params)
        if not self.model:
            raise ModelError(f"llama.cpp could not load {path} (not a GGUF model it reads?).")
        context = lib.context_defaults()
        context.n_ctx = n_ctx
        context.n_batch = context.n_ubatch = n_batch
        context.n_threads = context.n_threads_batch = threads
        self.ctx = lib.new_context(self.model, context)
        if not self.ctx:
            lib.free_model(self.model)
            raise ModelError(f"llama.cpp could not make a context of {n_ctx} tokens for {path}.")
        self.vocab = lib.model_vocab(self.model)
        self.n_vocab = int(lib.n_vocab(self.vocab))
        self.n_ctx = int(lib.n_ctx(self.ctx))
        self.n_ctx_train = int(lib.n_ctx_train(self.model))
        self.n_batch = n_batch
        self._memory = lib.memory(self.ctx)
        self.tokens: list[int] = []
        """The tokens whose keys and values the context holds, in order."""

    def close(self) -> None:
        if self.ctx:
            self.lib.free_context(self.ctx)
            self.lib.free_model(self.model)
            self.ctx = self.model = None

    def __del__(self) -> None:
        self.close()

    # --- vocabulary ---------------------------------------------------------------------------
    def tokenize(self, text: str) -> list[int]:
        """The tokens of ``text``; control tokens written in it are read as such (no BOS)."""
        data = text.encode("utf-8")
        size = len(data) + 8
        for _ in range(2):
            out = (Token * size)()
            n = self.lib.tokenize(self.vocab, data, len(data), out, size, False, True)
            if n >= 0:
                return list(out[:n])
            size = -n
        raise ModelError("llama.cpp could not tokenize the prompt.")

    def piece(self, token: int) -> bytes:
        """The bytes a token writes (nothing for control tokens)."""
        size = 64
        for _ in range(2):
            buffer = ctypes.create_string_buffer(size)
            n = self.lib.token_to_piece(self.vocab, token, buffer, size, 0, False)
            if n >= 0:
                return buffer.raw[:n]
            size = -n
        return b""

    def text_of(self, token: int) -> str:
        """A token's text as the vocabulary spells it ("<|im_end|>"), or "" for none."""
        if token < 0:
            return ""
        raw = self.lib.token_text(self.vocab, token)
        return raw.decode("utf-8", "replace") if raw else ""

    @property
    def bos(self) -> int:
        return int(self.lib.bos(self.vocab))

    @property
    def eos(self) -> int:
        return int(self.lib.eos(self.vocab))

    def is_end_of_generation(self, token: int) -> bool:
        return bool(self.lib.is_eog(self.vocab, token))

    def metadata(self, key: str) -> str | None:
        size = 1 << 16
        for _ in range(2):
            buffer = ctypes.create_string_buffer(size)
            n = self.lib.meta_value(self.model, key.encode(), buffer, size)
            if n < 0:
                return None
            if n < size:
                return buffer.value.decode("utf-8", "replace")
            size = n + 1
        return None

    # --- the KV cache -------------------------------------------------------------------------
    def eval(self, tokens: list[int]) -> None:
        """Read ``tokens`` after those the context holds; the logits are then the last one's."""
        for start in range(0, len(tokens), self.n_batch):
            chunk = tokens[start : start + self.n_batch]
            array = (Token * len(chunk))(*chunk)
            status = self.lib.decode(self.ctx, self.lib.batch_one(array, len(chunk)))
            if status != 0:
                raise ModelError(f"llama.cpp could not read the prompt (llama_decode: {status}).")
            self.tokens.extend(chunk)

    def logits(self) -> np.ndarray:
        """A copy of the next-token logits after the last token read."""
        pointer = self.lib.logits_ith(self.ctx, -1)
        return np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)).copy()

    def truncate(self, keep: int) -> None:
        """Forget every token after the first ``keep``."""
        if keep <= 0:
            self.reset()
            return
        self.lib.memory_seq_rm(self._memory, 0, keep, -1)
        del self.tokens[keep:]

    def reset(self) -> None:
        self.lib.memory_clear(self._memory, True)
        self.tokens = []

    def state(self) -> bytes:
        """The KV cache of everything the context holds, as llama.cpp serialises it."""
        size = self.lib.state_size(self.ctx, 0)
        buffer = (ctypes.c_uint8 * size)()
        written = self.lib.state_get(self.ctx, buffer, size, 0)
        return bytes(buffer[:written])

    def restore(self, state: bytes, tokens: list[int]) -> bool:
        """Replace the context with ``state`` (from :meth:`state`, of ``tokens``)."""
        self.reset()
        buffer = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        if self.lib.state_set(self.ctx, buffer, len(state), 0) != len(state):
            self.reset()
            return False
        self.tokens = list(tokens)
        return True
