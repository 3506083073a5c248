"""Text generation with a local chat model: one interface, one module per engine, a factory.

- :mod:`rag.generate.base`: :class:`ChatModel`, the interface :mod:`rag.answer` uses, and the
  :class:`Generation` that ends every reply.
- :mod:`rag.generate.llamacpp`: the llama.cpp engine on the GGUF file (the default), on the
  prebuilt library of :mod:`rag.generate.libllama` or, compiled by the user,
  :mod:`rag.generate.llama_cpp_python`.
- :mod:`rag.generate.transformers`: the transformers engine on a converted bf16 folder.
- :mod:`rag.generate.prompt_cache`: the saved KV caches of the prompt part answers share.

:func:`load_generator` picks an engine by the ``backend`` setting and imports only that one, so
no engine's libraries load for another.
"""

from __future__ import annotations

from pathlib import Path

from rag.generate.base import MAX_CONTEXT, ChatModel, Generation, drain
from rag.settings import GeneratorBackend, default

__all__ = ["MAX_CONTEXT", "ChatModel", "Generation", "drain", "load_generator", "prepare_model"]


def prepare_model(
    name_or_path: str,
    home: Path,
    backend: GeneratorBackend = default("backend"),
    progress: bool = default("progress"),
) -> Path:
    """Make the model ready for ``backend``, once: the verified GGUF file that llama.cpp reads,
    or the bf16 folder converted from it for transformers (three times the disk). Returns it."""
    from rag import models

    if backend == "transformers":
        return models.prepare(name_or_path, home, progress=progress)
    return models.gguf_file(name_or_path, home, progress=progress)


def load_generator(
    name_or_path: str,
    home: Path,
    backend: GeneratorBackend = default("backend"),
    progress: bool = default("progress"),
    threads: int | None = default("threads"),
) -> ChatModel:
    """Load the model with the chosen engine (the ``backend`` setting)."""
    if backend == "llama.cpp":
        from rag.generate.llamacpp import LlamaCppGenerator

        return LlamaCppGenerator(name_or_path, home, progress=progress, threads=threads)
    if backend == "llama-cpp-python":
        from rag.generate.llama_cpp_python import LlamaCppPython
        from rag.generate.llamacpp import LlamaCppGenerator

        return LlamaCppGenerator(
            name_or_path, home, progress=progress, threads=threads, runtime=LlamaCppPython
        )
    if backend == "transformers":
        from rag.generate.transformers import TransformersGenerator

        return TransformersGenerator(name_or_path, home, progress=progress, threads=threads)
    raise ValueError(
        f"Unknown backend {backend!r}: 'llama.cpp', 'transformers', 'llama-cpp-python'."
    )
