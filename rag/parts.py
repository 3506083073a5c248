"""The parts of a question, and whether an answer answers each.

People ask a news archive for two facts at once: "How much did X raise, and what will it spend
it on?". A small model given such a question and a paragraph that answers the first part tends
to answer that part and stop, and the second part's fact is often in another paragraph or
another article. So a question is split into its parts (by its grammar: a comma or "and"
followed by a new question word), each part is searched for, and an answer is checked part by
part: a part is answered when a supported sentence of the answer is about it (shares its own
words) and states something the question does not (a figure, a name, a date, or new words); a
figure is required where the part asks for one ("how many", "how much", "what share").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rag.cite.terms import asks_figure, extract_terms, new_terms, norm_word
from rag.stemming import stem
from rag.types import Sentence

__all__ = ["Part", "answered_parts", "split_question"]

_QUESTION_WORD = r"(?:what|which|who|whom|whose|when|where|why|how)\b"
_PREPOSITION = (
    r"(?:in|at|on|under|from|until|till|by|for|to|of|with|since|into|during|after|before|over)"
)
# ", and which ...", " and how many ...", ", and in which city ...": a second question.
_SPLIT_RE = re.compile(
    rf",?\s+and\s+(?=(?:\w+ly\s+|also\s+|then\s+)?(?:{_PREPOSITION}\s+)?{_QUESTION_WORD})"
    rf"|;\s+(?={_QUESTION_WORD})",
    re.IGNORECASE,
)
_STARTS_QUESTION_RE = re.compile(
    rf"(?:{_PREPOSITION}\s+)?(?:{_QUESTION_WORD}|(?:is|are|was|were|do|does|did|has|have|had|"
    r"can|could|will|would|should)\b)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Part:
    """One question a question asks."""

    text: str
    """The part as asked ("in which city did the pair work?")."""
    asks_figure: bool
    """Whether it asks for a figure (how much, how many, what share ...)."""


def split_question(question: str) -> list[Part]:
    """The parts of ``question``: one for a simple question, two or more when it asks several.

    Only a coordinated new question splits ("..., and which events was she selected for?");
    "the 800m and 1500m" or "Amazon and Microsoft" do not.
    """
    pieces = [p.strip(" ,;") for p in _SPLIT_RE.split(question.strip())]
    pieces = [p for p in pieces if len(p.split()) >= 3]
    # "X merged with Y and what other entity?" coordinates two answers, not two questions:
    # a split needs the first piece to be a question itself.
    if len(pieces) < 2 or not _STARTS_QUESTION_RE.match(pieces[0]):
        return [Part(question.strip(), asks_figure(question))]
    parts = []
    for piece in pieces:
        text = piece[0].upper() + piece[1:]
        if not text.endswith("?"):
            text += "?"
        parts.append(Part(text, asks_figure(piece)))
    return parts


def _own_stems(part: Part, others: list[Part]) -> set[str]:
    """The part's content stems that the other parts do not share (what it is about)."""

    def stems(text: str) -> set[str]:
        terms = extract_terms(text)
        words = [*terms.content, *(name.lower() for name in terms.names)]
        return {stem(norm_word(w)) for w in words if len(w) >= 3}

    mine = stems(part.text)
    theirs = set().union(*(stems(o.text) for o in others)) if others else set()
    return (mine - theirs) or mine


def answers(sentence: str, part: Part, question: str) -> bool:
    """Whether ``sentence`` states something that can answer ``part`` of ``question``: a figure
    the question does not give (required when the part asks for one), or a new name or words."""
    new = new_terms(sentence, question)
    return bool(new.numbers) if part.asks_figure else bool(new)


def answered_parts(question: str, parts: list[Part], sentences: list[Sentence]) -> list[bool]:
    """For each part, whether a supported, cited sentence answers it: one about the part (it
    shares the part's own words, unless there is one part) that :func:`answers` it."""
    claims = [s for s in sentences if s.supported and s.citations]
    result = []
    for part in parts:
        own = _own_stems(part, [p for p in parts if p is not part])
        about = [s for s in claims if len(parts) == 1 or own & _own_stems(Part(s.text, False), [])]
        result.append(any(answers(s.text, part, question) for s in about))
    return result
