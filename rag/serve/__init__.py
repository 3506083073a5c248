"""``rag serve``: the Python API over HTTP, with streamed answers and a web page.

FastAPI and uvicorn come with the ``serve`` extra (``pip install 'rag-news[serve]'``);
importing :mod:`rag.serve.app` needs them, this module does not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console

from rag.errors import RagError
from rag.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

# Seconds open answer streams get to finish when the server is asked to stop.
GRACEFUL_SHUTDOWN_S = 5


def create_app(settings: Settings | None = None, console: Console | None = None) -> FastAPI:
    """The FastAPI application (see :func:`rag.serve.app.create_app`)."""
    try:
        from rag.serve.app import create_app as create
    except ImportError as error:
        raise RagError(
            f"rag serve needs the serve extra ({error.name} is missing): "
            "pip install 'rag-news[serve]'."
        ) from None
    return create(settings, console)


def serve(settings: Settings, console: Console) -> None:
    """Run the server until it is stopped (Ctrl-C or SIGTERM)."""
    app = create_app(settings, console)  # first: it says which package is missing
    import uvicorn

    from rag.serve.security import is_loopback

    if not is_loopback(settings.host) and settings.api_token is None:
        console.print(
            f"[bold yellow]Warning:[/] listening on {settings.host}, which other machines can "
            "reach, with no API token: anyone who can reach it can search and ask. Set "
            "RAG_API_TOKEN (and token_for_reads) or listen on 127.0.0.1."
        )
    console.print(
        f"Serving {settings.index} on http://{settings.host}:{settings.port}/", soft_wrap=True
    )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
