"""The ``torch`` embedder backend: sentence-transformers' own ``encode`` in fp32, as published."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from rag.errors import EmbedderError

__all__ = ["TorchModel", "load_sentence_transformer"]


class TorchModel:
    """sentence-transformers' encode in fp32: the published model, as before backends existed."""

    def __init__(self, name: str, path: str, threads: int | None) -> None:
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.model = load_sentence_transformer(name, path)
        self.tokenizer = self.model.tokenizer
        self.dimension = int(self.model.get_embedding_dimension())
        self.max_tokens = int(self.model.max_seq_length)

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for key, tensor in sorted(self.model.state_dict().items()):
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]

    def count_tokens(self, text: str) -> int:
        encoded = self.tokenizer(text, add_special_tokens=True, truncation=False, verbose=False)
        return len(encoded["input_ids"])

    def embed(self, texts: list[str], batch_size: int) -> np.ndarray:
        vectors: np.ndarray = self.model.encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return vectors


def load_sentence_transformer(name: str, path: str) -> Any:
    """sentence-transformers' model from the local folder ``path``, fp32 on the CPU, quietly."""
    from sentence_transformers import SentenceTransformer

    from rag.quiet import quiet_transformers

    try:
        with quiet_transformers():
            return SentenceTransformer(path, device="cpu", local_files_only=True)
    except OSError as exc:
        raise EmbedderError(
            f"Cannot load the embedder {name!r}: {exc}. Give a local sentence-transformers "
            "model folder (no model can be downloaded here)."
        ) from exc
