"""Every error a user can act on, in one place. The CLI prints their message without a traceback."""

from __future__ import annotations


class RagError(Exception):
    """Base class: the message says what went wrong and what to do about it."""


class EmbedderMismatch(RagError):
    """The index was built by a different embedder than the one configured."""


class EmbedderError(RagError, RuntimeError):
    """The embedder cannot be loaded or prepared."""


class EmptyIndex(RagError):
    """A search or question on an index with no articles."""


class IndexBusy(RagError):
    """Another process is writing to the index (ingest, remove, rebuild)."""


class IndexFormatError(RagError):
    """The index was written by a newer version of rag, or is not an index at all."""


class ModelError(RagError):
    """A model cannot be found, verified, prepared or loaded."""


class UnsupportedFile(RagError):
    """The file is of a kind no parser reads; ``str(e)`` is the reason shown to users.

    Deliberately not a ValueError: callers report these files as skipped, not failed.
    """


class UnreadableFile(RagError, ValueError):
    """The file could not be opened or read (permissions, a folder, a vanished file)."""


class NoIndex(EmptyIndex):
    """A reading command was pointed at a folder that holds no index (a typo, or none yet).

    An :class:`EmptyIndex` too: such a folder has no articles, and nothing is created in it.
    """


class EmptyQuestion(RagError):
    """A search or question with no words in it."""


class ArticleNotFound(RagError):
    """No article has that id (it was never there, or was removed or re-ingested since)."""


class PathOutsideRoot(RagError):
    """A path given to the HTTP server's ingest lies outside its ingest root (links followed)."""


class QueueFull(RagError):
    """The model is answering and as many questions as allowed already wait for it."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
