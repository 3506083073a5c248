"""Text generation with a local chat model: one interface, one module per engine, a factory.

- :mod:`rag.generate.base`: :class:`ChatModel`, the interface :mod:`rag.answer` uses, and the
  :class:`Generation` that ends every reply.
- :mod:`rag.generate.transformers`: the transformers engine on the converted bf16 folder (the
  default; works after the plain install).
- :mod:`rag.generate.llamacpp`: the llama.cpp engine on the GGUF file (llama-cpp-python).
- :mod:`rag.generate.prompt_cache`: the saved KV caches of the prompt part answers share.

:func:`load_generator` picks an engine by the ``backend`` setting and imports only that one, so
neither engine's libraries load for the other.
"""

from __future__ import annotations

from pathlib import Path

from rag.generate.base import MAX_CONTEXT, ChatModel, Generation, drain
from rag.settings import GeneratorBackend, default

__all__ = ["MAX_CONTEXT", "ChatModel", "Generation", "drain", "load_generator"]


def load_generator(
    name_or_path: str,
    home: Path,
    backend: GeneratorBackend = default("backend"),
    progress: bool = default("progress"),
    threads: int | None = default("threads"),
) -> ChatModel:
    """Load the model with the chosen engine (the ``backend`` setting).

    transformers is the default because it works after the plain install; llama.cpp needs
    llama-cpp-python compiled (:mod:`rag.generate.llamacpp` says why it is worth it).
    """
    if backend == "llama.cpp":
        from rag.generate.llamacpp import LlamaCppGenerator

        return LlamaCppGenerator(name_or_path, home, progress=progress, threads=threads)
    if backend == "transformers":
        from rag.generate.transformers import TransformersGenerator

        return TransformersGenerator(name_or_path, home, progress=progress, threads=threads)
    raise ValueError(f"Unknown backend {backend!r}: 'transformers' or 'llama.cpp'.")
