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

from rag.cite.terms import Question, can_answer, extract_terms, norm_word
from rag.stemming import stem
from rag.types import Sentence

__all__ = ["Part", "about", "answered_parts", "most_about", "split_question"]

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
        return [Part(question.strip())]
    parts = []
    for piece in pieces:
        text = piece[0].upper() + piece[1:]
        parts.append(Part(text if text.endswith("?") else text + "?"))
    return parts


def _stems(text: str) -> set[str]:
    terms = extract_terms(text)
    words = [*terms.content, *(name.lower() for name in terms.names)]
    return {stem(norm_word(w)) for w in words if len(w) >= 3}


def own_stems(part: Part, parts: list[Part]) -> set[str]:
    """The part's content stems that the other parts do not share (what it is about)."""
    mine = _stems(part.text)
    theirs = set().union(*(_stems(o.text) for o in parts if o is not part))
    return (mine - theirs) or mine


def about(sentence: Sentence, part: Part, parts: list[Part]) -> bool:
    """Whether ``sentence`` is about ``part``: it shares the part's own words, no fewer of them
    than of any other part's (any sentence is, when the question has one part).

    "Tymoshenko said as many as 3,000 firms may have their privatisations reviewed" shares
    "firms" with "how many top firms had Yushchenko said would be targeted", but it is about the
    part that names Tymoshenko: counted for both, it would leave the second part unread for."""
    return len(parts) == 1 or parts.index(part) in most_about(sentence, parts)


def most_about(sentence: Sentence, parts: list[Part]) -> set[int]:
    """The parts (by index) whose own words ``sentence`` shares most; where it shares no part's
    own words, the parts whose words it shares most; none when it shares none.

    "The following weekend, it took $42.8m" shares only "take" and "weekend" with "how much did
    it take the following weekend", words the part about the first weekend has too: it is
    about both, not about neither (which left the part said to be unanswered beside its
    answer)."""
    stems = _stems(sentence.text)
    shared = [len(own_stems(p, parts) & stems) for p in parts]
    if not any(shared):
        shared = [len(_stems(p.text) & stems) for p in parts]
    names = [_own_names(p, parts) for p in parts]
    if any(mine & stems for mine in names):
        # "Germany's unemployment rate in November was 10.8%" shares "unemployment rate" with
        # "what was Brazil's unemployment rate": it names Germany, not Brazil, so it is not about
        # the part that names Brazil.
        shared = [
            0 if mine and not mine & stems else n for n, mine in zip(shared, names, strict=True)
        ]
    return {i for i, n in enumerate(shared) if n and n == max(shared)}


def _own_names(part: Part, parts: list[Part]) -> set[str]:
    """The stems of the names that ``part`` gives and the other parts do not."""
    mine = {stem(norm_word(n)) for n in extract_terms(part.text).names}
    theirs = set().union(*(_stems(o.text) for o in parts if o is not part))
    return mine - theirs


def answered_parts(question: str, parts: list[Part], sentences: list[Sentence]) -> list[bool]:
    """For each part, whether a supported, cited sentence answers it: one :func:`about` the part
    that states what can answer it (:func:`rag.cite.terms.can_answer`)."""
    asked = Question.of(question)
    claims = [s for s in sentences if s.supported and s.citations]
    return [
        any(about(s, part, parts) and can_answer(s.text, asked, part.text) for s in claims)
        for part in parts
    ]
