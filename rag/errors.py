"""Errors a user can act on. The CLI prints their message without a traceback."""

from __future__ import annotations


class RagError(Exception):
    """Base class: the message says what went wrong and what to do about it."""


class EmbedderMismatch(RagError):
    """The index was built by a different embedder than the one configured."""


class EmptyIndex(RagError):
    """A search or question on an index with no articles."""


class IndexBusy(RagError):
    """Another process is writing to the index (ingest, remove, rebuild)."""


class IndexFormatError(RagError):
    """The index was written by a newer version of rag, or is not an index at all."""
