"""Open the store that the ``store`` setting names (the factory of ``rag.stores``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rag.errors import RagError
from rag.lexical import BM25Params
from rag.settings import Settings
from rag.stores.base import IndexStore
from rag.stores.folder import FolderStore

if TYPE_CHECKING:  # pymilvus is an optional extra, imported only for store 'milvus'
    from rag.stores.milvus import MilvusStore


def store_exists(settings: Settings) -> bool:
    """Whether the configured index is there (nothing is created to find out)."""
    if settings.store == "milvus":
        return _milvus().exists(settings)
    return FolderStore.exists(settings.index.expanduser())


def open_store(
    settings: Settings, *, create: bool, dimension: Callable[[], int] | None = None
) -> IndexStore:
    """The configured store, opened; :class:`rag.errors.NoIndex` when it is not there and
    ``create`` is false (reading never creates one).

    ``dimension`` gives the embedder's vector size for a store that must know it before
    anything is embedded; it is called only then.
    """
    if settings.store == "milvus":
        return _milvus()(settings, create=create, dimension=dimension)
    return FolderStore(
        settings.index.expanduser(),
        create=create,
        wait=settings.wait,
        bm25=BM25Params(k1=settings.bm25_k1, b=settings.bm25_b),
        dimension=dimension,
    )


def _milvus() -> type[MilvusStore]:
    try:
        from rag.stores.milvus import MilvusStore
    except ImportError as error:
        raise RagError(
            f"The 'milvus' store needs pymilvus and milvus-lite ({error}): "
            "pip install 'rag-news[milvus]'."
        ) from None
    return MilvusStore
