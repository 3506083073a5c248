"""Question answering over news articles with a local model that cites its paragraphs.

>>> from rag import RAG
>>> r = RAG("index")
>>> r.ingest(["articles/"])
>>> r.search("How much did Microsoft invest in OpenAI?", k=5)
"""

from __future__ import annotations

# First of all: sets the environment the model libraries read when they are first imported.
from rag import environment  # noqa: F401
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
