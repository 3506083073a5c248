"""Renumbering and layout: from checked sentences back to the text users read.

Markers are removed from each sentence and put back, renumbered ``[1]``, ``[2]``, … in order of
first appearance, before its final punctuation; wording that only introduced a marker
("According to passage [1], …") and filler lead-ins go, and the answer's lines, bullets and
paragraph breaks are laid out as the model wrote them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from rag.cite.markers import LEADING_MARKERS_RE, MARKER_RE, strip_markers
from rag.cite.refusal import is_filler
from rag.types import Citation, Passage, Sentence

__all__ = ["Laid", "Unit", "body_of", "lay_out"]

UnitKind = Literal["claim", "connective", "meta"]


@dataclass
class Unit:
    """One sentence of the answer while it is being checked."""

    line: int
    body: str
    """The sentence as shown, without markers."""
    keys: list[int]
    """Indexes (0-based) of distinct cited paragraphs, in order of first mention."""
    kind: UnitKind
    """``claim`` (checked), ``connective`` (nothing to check) or ``meta`` (a hedge
    about the passages, e.g. "The passages do not give the date")."""
    supported: bool = False
    credited: set[int] = field(default_factory=set)
    """Cited paragraphs that support the sentence (alone, or as a needed part of several)."""
    scores: dict[int, float] = field(default_factory=dict)


@dataclass
class Laid:
    """The answer laid out again: its text, citations and sentences."""

    text: str
    citations: list[Citation]
    sentences: list[Sentence]


_TIDY_RULES = [
    (re.compile(r"\(\s*(?:see|cf\.?|source:?|sources:?)?\s*[,;]?\s*\)", re.IGNORECASE), ""),
    (re.compile(r"\s+([,.;:!?…)\]])"), r"\1"),
    (re.compile(r"([(\[])\s+"), r"\1"),
    (re.compile(r"[,;](?=\s*[,;:.!?]|\s*$)"), ""),
    (re.compile(r":\s*(?=[.!?])"), ""),
    (re.compile(r"[ \t]{2,}"), " "),
]
_TAIL_RE = re.compile(r"(?P<punct>[.!?…:;]+)(?P<close>[\"'”’)\]*_]*)$")

# "According to passage [1], X" would read "According to passage, X" once the
# marker moves to the end of the sentence, so the phrase goes with it.
_LEAD_IN_RE = re.compile(
    r"(?:\b(?:according to|as (?:stated|noted|mentioned|reported|described|shown) in|as per|per|"
    r"based on|from|in|see)\s+)?(?:the\s+)?(?:provided\s+|given\s+)?"
    r"\b(?:passages?|sources?|articles?|paragraphs?|documents?|excerpts?)\s*"
    rf"(?=(?:\s*{MARKER_RE.pattern})+\s*(?:[,;:.!?)]|$))",
    re.IGNORECASE,
)

# "The passage from [5] states that X": the attribution says nothing X does not.
_ATTRIBUTION_RE = re.compile(
    r"^(?:the\s+)?(?:provided\s+|given\s+)?(?:passages?|paragraphs?|articles?|sources?)\s*"
    rf"(?:from\s+)?(?:(?:{MARKER_RE.pattern})\s*)*"
    r"(?:states?|says?|mentions?|notes?|reports?|explains?|indicates?|shows?|suggests?)"
    r"\s+(?:that\s+)?",
    re.IGNORECASE,
)

_PREAMBLE_RE = re.compile(r"^([^:]{1,80}):[*_]*\s+(?=\S)")


def _drop_lead_ins(sentence: str) -> str:
    """Remove "according to passage" wording that only introduced a marker."""
    stripped = sentence.lstrip()
    attribution = _ATTRIBUTION_RE.match(stripped)
    if attribution:
        rest = stripped[attribution.end() :]
        return rest[:1].upper() + rest[1:]
    match = _LEAD_IN_RE.search(stripped)
    if not match:
        return sentence
    result = stripped[: match.start()] + stripped[match.end() :]
    if match.start() == 0:
        # The lead-in opened the sentence: capitalise what now opens it.
        markers = LEADING_MARKERS_RE.match(result)
        cut = markers.end() if markers else 0
        tail = result[cut:].lstrip(" ,;:")
        result = result[:cut] + " " + tail[:1].upper() + tail[1:]
    return result


def _tidy(text: str) -> str:
    """Clean up what removing markers leaves behind ("2019 ." -> "2019.")."""
    text = re.sub(r"\s+", " ", text).strip()
    for pattern, replacement in _TIDY_RULES:
        text = pattern.sub(replacement, text)
    return text.strip().lstrip(",;: ")


def _strip_preamble(body: str) -> str:
    """Drop a filler lead-in from a sentence: "Here is the answer: Amazon…" -> "Amazon…"."""
    match = _PREAMBLE_RE.match(body)
    if not match or not is_filler(match.group(0).strip()):
        return body
    rest = body[match.end() :]
    return rest[:1].upper() + rest[1:]


def body_of(sentence: str) -> str:
    """The sentence as shown: lead-ins, markers and filler preamble removed, spacing tidied."""
    return _strip_preamble(_tidy(strip_markers(_drop_lead_ins(sentence))))


def render(body: str, numbers: list[int]) -> str:
    """Put markers before the final punctuation: "... in 2019 [1][2]."

    When a closing quote or bracket follows the punctuation the markers go after
    it instead, so a quotation is not broken open.
    """
    if not numbers:
        return body
    markers = "".join(f"[{n}]" for n in numbers)
    tail = _TAIL_RE.search(body)
    if not tail:
        return f"{body} {markers}"
    if tail.group("close").strip("*_"):
        return f"{body} {markers}"
    head = body[: tail.start()].rstrip()
    return f"{head} {markers}{tail.group(0)}"


_RELATIVE_DATE_RE = re.compile(r"\b(this|last|next) (year|month)\b(?!\s*\()", re.IGNORECASE)
_SHIFT = {"this": 0, "last": -1, "next": 1}
_MONTH_NAMES = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]


def dated(sentence: str, published: list[str | None]) -> str:
    """``sentence`` with "this year", "last month" and the like dated by the article it cites:
    "this year (2023)". An archive is read years later; the article's date is what they mean.
    Left as it is when the cited articles have no date, or not one and the same."""
    dates = {p[:7] for p in published if p and len(p) >= 7 and p[:4].isdigit()}
    if len(dates) != 1:
        return sentence
    (date,) = dates
    year, month = int(date[:4]), int(date[5:7])

    def resolve(match: re.Match[str]) -> str:
        shift = _SHIFT[match[1].lower()]
        if match[2].lower() == "year":
            return f"{match[0]} ({year + shift})"
        index = (year * 12 + month - 1) + shift
        return f"{match[0]} ({_MONTH_NAMES[index % 12]} {index // 12})"

    return _RELATIVE_DATE_RE.sub(resolve, sentence)


def lay_out(
    units: list[Unit], prefixes: dict[int, str], raw_lines: list[str], passages: list[Passage]
) -> Laid:
    """Renumber citations in order of first appearance and lay the text out again."""
    number_of: dict[int, int] = {}
    for unit in units:
        for key in unit.keys:
            number_of.setdefault(key, len(number_of) + 1)

    citations = [
        Citation(number=number, passage=passages[key], supported=False, support=0.0)
        for key, number in number_of.items()
    ]
    by_key = dict(zip(number_of, citations, strict=True))
    for unit in units:
        for key in unit.keys:
            citation = by_key[key]
            citation.support = max(citation.support, unit.scores.get(key, 0.0))
            citation.supported = citation.supported or key in unit.credited

    sentences: list[Sentence] = []
    lines: dict[int, list[str]] = {}
    for unit in units:
        numbers = sorted(number_of[k] for k in unit.keys)
        body = dated(unit.body, [passages[k].published for k in unit.keys])
        sentences.append(Sentence(text=body, citations=numbers, supported=unit.supported))
        lines.setdefault(unit.line, []).append(render(body, numbers))

    out: list[str] = []
    last: int | None = None
    for line_no in sorted(lines):
        if last is not None and any(not ln.strip() for ln in raw_lines[last + 1 : line_no]):
            out.append("")  # the raw answer had a paragraph break here
        out.append(prefixes[line_no] + " ".join(lines[line_no]))
        last = line_no
    return Laid("\n".join(out), citations, sentences)
