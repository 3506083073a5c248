"""The records that cross module boundaries.

Data flows one way: files are read into :class:`Document` objects (with their
:class:`Paragraph` list), stored, indexed, and come back from a search as
:class:`Passage` objects; the generator turns passages into an :class:`Answer`
whose :class:`Citation` objects each point at one passage.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


@dataclass(frozen=True)
class Paragraph:
    """One paragraph of an article: the unit of citation.

    ``number`` is 1-based and stable for the same file content. ``start`` and
    ``end`` are character offsets of the paragraph's block in the article body
    that the parser extracted (the decoded file text for plain formats).
    """

    number: int
    text: str
    start: int
    end: int


@dataclass
class Document:
    """An article as read from a file, before it is stored."""

    source: str
    """Unique id of the article: the file's absolute path, or ``path#id`` for a JSONL line."""
    path: str
    """Absolute path of the file the article came from."""
    title: str
    paragraphs: list[Paragraph]
    author: str | None = None
    publisher: str | None = None
    published: str | None = None
    """Publication date-time in ISO 8601 (with the UTC offset when the source gave a zone)."""
    url: str | None = None
    format: str = ""
    """Parser that read it: ``scraped``, ``text``, ``markdown``, ``html`` or ``jsonl``."""


@dataclass
class Passage:
    """A paragraph found by a search, with its article's metadata and a score.

    Long paragraphs are indexed as several pieces; a search returns the whole
    paragraph once, scored by its best piece.
    """

    text: str
    title: str
    source: str
    paragraph: int
    published: str | None = None
    author: str | None = None
    publisher: str | None = None
    url: str | None = None
    score: float = 0.0
    paragraph_id: int = 0
    """Row id of the paragraph in the store (stable while the article is unchanged)."""
    article_id: int = 0
    """Row id of the paragraph's article in the store (``RAG.article`` shows it whole)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Article:
    """A stored article with all its paragraphs, in order: a cited paragraph in its place."""

    id: int
    """Row id in the store (``Passage.article_id``); a re-ingested changed file gets a new one."""
    source: str
    path: str
    title: str
    paragraphs: list[Paragraph]
    author: str | None = None
    publisher: str | None = None
    published: str | None = None
    url: str | None = None
    format: str = ""


@dataclass
class FileFailure:
    path: str
    reason: str


@dataclass
class IngestReport:
    """What an ingest did. Counts are of articles unless named otherwise."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: list[FileFailure] = field(default_factory=list)
    """Files not read because their kind is unknown (with the reason)."""
    failed: list[FileFailure] = field(default_factory=list)
    """Files (or JSONL lines) that could not be read, with why."""
    paragraphs: int = 0
    """Paragraphs written by this run (of added and updated articles)."""
    embedded: int = 0
    """Passages whose text had to be embedded (new texts only)."""
    seconds: float = 0.0
    """The whole run: reading files, loading the embedder, embedding, building the indexes."""
    embedder_seconds: float = 0.0
    """Of which loading the embedder; the first run on a machine also exports it (once)."""
    embed_seconds: float = 0.0
    """Of which embedding the paragraphs and committing them: what paragraphs/s is over."""

    @property
    def paragraphs_per_second(self) -> float:
        return self.paragraphs / self.embed_seconds if self.embed_seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["paragraphs_per_second"] = self.paragraphs_per_second
        return data


@dataclass
class Citation:
    """One citation marker of an answer, resolved to the paragraph it points at."""

    number: int
    """The number as it appears in ``Answer.text`` (renumbered 1, 2, … in order of first use)."""
    passage: Passage
    supported: bool
    """Whether the sentences citing it assert only what the paragraph says (see ``rag.cite``)."""
    support: float = 0.0
    """Share of the citing sentences' key terms found in the paragraph (0..1)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Sentence:
    """A sentence of the answer with the citation numbers it carries."""

    text: str
    citations: list[int]
    supported: bool


@dataclass
class Reading:
    """One reading of the model: the question it was given, what it read and wrote, what the
    citation check made of it."""

    question: str
    passages: list[Passage]
    raw_text: str
    text: str
    abstained: bool
    seconds: float = 0.0


@dataclass
class PartAnswered:
    """One part of a question that asks several things, and whether the answer answers it."""

    question: str
    answered: bool


@dataclass
class Answer:
    question: str
    text: str
    citations: list[Citation]
    passages: list[Passage]
    """Every passage given to the model, in prompt order."""
    abstained: bool = False
    sentences: list[Sentence] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds spent: ``retrieval``, ``prefill``, ``generation`` (and ``total``)."""
    model: str = ""
    raw_text: str = ""
    """The model's output before citations were checked and renumbered."""
    dropped_markers: int = 0
    """Citation markers removed because they pointed outside the passages given."""
    standalone_question: str | None = None
    """For a chat follow-up, the question as rewritten for retrieval."""
    attempts: int = 1
    """How many times the model read: 2 when the best passage alone gave no supported answer
    and it read all the passages (setting ``best_first``); more for a question of several
    parts that the first answer left partly unanswered."""
    readings: list[Reading] = field(default_factory=list)
    """Every reading, in order (what the model read and wrote each time)."""
    parts: list[PartAnswered] = field(default_factory=list)
    """For a question that asks several things: each part, and whether it was answered."""

    @property
    def unsupported_sentences(self) -> list[Sentence]:
        return [s for s in self.sentences if not s.supported]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Retry:
    """In an answer stream: the text streamed so far is withdrawn, and the model is asked again.

    The reading before gave no supported answer (the best passage alone, see
    ``Settings.best_first``, or, reading on for a part, one of its paragraphs, see
    ``Settings.read_on_alone``); the pieces that follow are the model's answer from the next
    ``passages`` passages.
    """

    passages: int
    """How many passages the model reads this time."""
    withdrawn: str
    """The first attempt's text, as the model wrote it."""


@dataclass(frozen=True)
class ReadOn:
    """In an answer stream: the answer so far leaves a part of the question unanswered, and the
    model reads on for it. The pieces that follow are added to the answer (nothing is withdrawn).
    """

    part: str
    """The part of the question read for."""
    passages: int
    """How many passages the model reads for it."""


AnswerItem = str | Retry | ReadOn | Answer
"""What an answer stream yields: text pieces as the model writes them, a :class:`Retry` or a
:class:`ReadOn` between readings, and last the checked :class:`Answer`."""


class Filters(BaseModel):
    """Which articles a search may draw from: by source path and by publication date.

    Dates are ISO dates, inclusive; an article without a date is left out when a date is given.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str | None = Field(
        default=None,
        description="Only articles whose path matches this glob ('business/*', '*.md').",
    )
    since: dt.date | None = Field(
        default=None, description="Only articles published on or after this date (YYYY-MM-DD)."
    )
    until: dt.date | None = Field(
        default=None, description="Only articles published on or before this date (YYYY-MM-DD)."
    )

    @field_validator("since", "until", mode="before")
    @classmethod
    def _iso_date(cls, value: object) -> object:
        # Only an ISO date: pydantic alone would also take a number as seconds since 1970.
        if value is None or isinstance(value, dt.date):
            return value
        text = str(value).strip()
        try:
            return dt.date.fromisoformat(text[:10] if len(text) > 10 else text)
        except ValueError:
            raise ValueError(
                f"{text!r} is not a date; give it as YYYY-MM-DD, e.g. 2024-01-31"
            ) from None

    @model_validator(mode="after")
    def _ordered(self) -> Filters:
        if self.since and self.until and self.since > self.until:
            raise ValueError(
                f"since ({self.since}) is after until ({self.until}): no article could match"
            )
        return self

    @property
    def active(self) -> bool:
        return bool(self.source or self.since or self.until)
