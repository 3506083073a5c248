"""The local generator models: which ones exist, how they are made ready, and that they are intact.

- :mod:`rag.models.catalog`: the presets that ship inside PyPI packages, with pinned hashes.
- :mod:`rag.models.preparation`: joining their chunks, converting them once to a bf16 folder,
  the joined GGUF for runtimes that read it, and resolving a name or path to a folder.
- :mod:`rag.models.integrity`: ``prepared.json`` and the checks made before every use.
- :mod:`rag.models.repair`: the full check on request or after a failed load, and the rebuild.

Loading a prepared model into a runtime is the generator engines' part (:mod:`rag.generate`).
"""

from __future__ import annotations

from rag.errors import ModelError
from rag.models.catalog import END_OF_TURN_TOKENS, PRESETS, Chunk, Preset
from rag.models.integrity import is_prepared, model_dir
from rag.models.preparation import gguf_file, list_presets, prepare, resolve, stop_token_ids
from rag.models.repair import repair_after_failure, verify, verify_gguf
from rag.settings import DEFAULT_MODEL

__all__ = [
    "DEFAULT_MODEL",
    "END_OF_TURN_TOKENS",
    "PRESETS",
    "Chunk",
    "ModelError",
    "Preset",
    "gguf_file",
    "is_prepared",
    "list_presets",
    "model_dir",
    "prepare",
    "repair_after_failure",
    "resolve",
    "stop_token_ids",
    "verify",
    "verify_gguf",
]
