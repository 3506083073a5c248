"""The HTTP API's request and response bodies.

Responses are the Python API's own records (``Passage``, ``Answer``, ``IndexInfo``,
``Article``, ``IngestReport``: dataclasses, which FastAPI serialises as they are); only
what has no record there is defined here. Requests extend :class:`rag.types.Filters`, so
``source``/``since``/``until`` are read and refused exactly as the CLI's options are, and
their bounds come from the settings (see :func:`request_models`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, create_model

from rag.settings import Settings
from rag.types import Filters


class SearchRequest(Filters):
    """A search: the question, how many paragraphs, and the filters."""

    question: str = Field(min_length=1, description="What to look for, in plain words.")
    k: int | None = Field(
        default=None, ge=1, description="Paragraphs to return (default: the setting k)."
    )

    def filters(self) -> dict[str, Any]:
        """The filters as keyword arguments of ``RAG.search`` and ``RAG.ask_stream``."""
        return {name: getattr(self, name) for name in Filters.model_fields}


class AskRequest(Filters):
    """A question to answer, how many paragraphs the model may read, and the filters."""

    question: str = Field(min_length=1, description="The question, in plain words.")
    passages: int | None = Field(
        default=None,
        ge=1,
        description="Most paragraphs given to the model (default: the setting passages).",
    )

    def filters(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in Filters.model_fields}


class IngestRequest(BaseModel):
    """Files and folders to ingest, relative to the server's ingest root (or absolute in it)."""

    model_config = ConfigDict(extra="forbid")

    paths: list[str] = Field(
        min_length=1, max_length=1000, description="Files and folders (read recursively)."
    )


@dataclass
class Removed:
    """What a delete removed: the sources of the articles."""

    removed: list[str]


class Health(BaseModel):
    """Whether the server can answer yet, and how busy its model is."""

    status: Literal["loading", "ready", "failed"] = Field(
        description="'loading' until the model and the embedder are loaded; 'failed' if "
        "loading failed (see detail)."
    )
    detail: str | None = None
    model: str
    index: bool = Field(description="Whether the index folder holds an index.")
    generating: bool = Field(description="Whether the model is busy (answering or loading).")
    queued: int = Field(description="Questions waiting for the model.")
    queue_size: int = Field(description="Most questions that may wait; more get 503.")
    answered: int = Field(description="Answers given since the server started.")
    stopped: int = Field(description="Answers stopped early because their client went away.")


class Token(BaseModel):
    """An ``event: token`` of the answer stream: a piece of the text as the model writes it."""

    text: str


class ErrorBody(BaseModel):
    """Every error response: a short name of what went wrong, and the details."""

    error: str
    detail: Any = None


def _bounds(name: str) -> dict[str, Any]:
    """The ``ge``/``le`` bounds of setting ``name``, for a request field that sets it."""
    found: dict[str, Any] = {}
    for rule in Settings.model_fields[name].metadata:
        if isinstance(rule, annotated_types.Ge):
            found["ge"] = rule.ge
        elif isinstance(rule, annotated_types.Le):
            found["le"] = rule.le
    return found


def request_models(settings: Settings) -> tuple[type[SearchRequest], type[AskRequest]]:
    """The request models with this server's limits, so that its OpenAPI schema shows them.

    ``k`` is bounded by the setting ``max_k`` and ``passages`` by its own setting's bounds;
    questions by ``max_question_chars`` (the prompt budget still trims a long one).
    """
    question = (
        str,
        Field(
            min_length=1,
            max_length=settings.max_question_chars,
            description="The question, in plain words.",
        ),
    )
    search = create_model(
        "SearchRequest",
        __base__=SearchRequest,
        question=question,
        k=(
            int | None,
            Field(
                default=None,
                **{**_bounds("k"), "le": settings.max_k},
                description="Paragraphs to return (default: the setting k).",
            ),
        ),
    )
    ask = create_model(
        "AskRequest",
        __base__=AskRequest,
        question=question,
        passages=(
            int | None,
            Field(
                default=None,
                **_bounds("passages"),
                description="Most paragraphs given to the model (default: the setting passages).",
            ),
        ),
    )
    return search, ask
