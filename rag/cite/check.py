"""Checking the model's answer: its citations, their support, and whether it answers at all.

Nothing the model writes is trusted as is: marker numbers outside the passages given are removed
and counted, every (sentence, cited paragraph) pair gets the support check
(:func:`rag.cite.scoring.support`), an uncited sentence one passage plainly supports gets that
citation, a wrong citation is re-pointed to the passage that plainly supports the sentence, and a
refusal, or an answer none of whose sentences is supported, becomes :data:`ABSTAIN_TEXT`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rag.cite.assemble import Unit, UnitKind, body_of, lay_out
from rag.cite.lines import line_sentence_spans, split_prefix
from rag.cite.markers import LEADING_MARKERS_RE, count_out_of_range, parse_markers
from rag.cite.refusal import is_filler, is_refusal, is_strong_refusal, plain
from rag.cite.scoring import (
    DEFAULT_THRESHOLD,
    ParagraphIndex,
    assess,
    index_paragraph,
    measures_asked,
    merge,
    supports,
)
from rag.cite.terms import (
    Question,
    Terms,
    asks_figure,
    can_answer,
    extract_terms,
    new_terms,
)
from rag.types import Citation, Passage, Sentence

__all__ = ["ABSTAIN_TEXT", "ATTACH_SCORE", "CheckedAnswer", "check_answer"]

ABSTAIN_TEXT = "The indexed articles do not answer this question."

ATTACH_SCORE = 0.85
"""Least score for attaching a citation to a sentence the model left uncited.

Higher than the threshold because the model did not claim this source: we only
add a citation when the match is plain (and the sentence has 2+ key terms).
"""

_ATTACH_MIN_TERMS = 2

_REFERENCES_HEADING_RE = re.compile(
    r"^(?:sources?|references?|citations?|cited passages?|passages? (?:used|cited))\b[^a-z]*$"
)


@dataclass
class CheckedAnswer:
    """The model's answer after citation checking.

    ``text`` is what users see, with markers renumbered ``[1]``, ``[2]``, … in
    order of first appearance. ``citations`` has one entry per distinct cited
    paragraph in that order, and ``Citation.number`` is the number in ``text``.
    ``sentences`` holds each kept sentence without markers, with its renumbered
    citations and whether a cited paragraph supports it.
    """

    text: str
    citations: list[Citation]
    sentences: list[Sentence]
    dropped_markers: int
    """Marker numbers pointing outside ``1..len(passages)``, removed from the text."""
    abstained: bool


def _paragraph_key(passage: Passage) -> tuple[str, int]:
    return (passage.source, passage.paragraph)


def _abstain(dropped: int) -> CheckedAnswer:
    return CheckedAnswer(ABSTAIN_TEXT, [], [], dropped, abstained=True)


def check_answer(
    raw: str,
    passages: list[Passage],
    threshold: float = DEFAULT_THRESHOLD,
    question: str = "",
    parts: list[str] | None = None,
) -> CheckedAnswer:
    """Check and renumber the citations in the model's raw answer.

    ``passages`` are the passages as numbered in the prompt (``passages[0]`` is
    ``[1]``). Marker numbers outside ``1..len(passages)`` are removed and counted.
    A sentence is supported when one cited paragraph supports it at ``threshold``
    (see :func:`rag.cite.scoring.support`), or, when it cites several, when they do together
    (a sentence may combine facts from two paragraphs). An uncited sentence gets the
    best paragraph's citation when that one supports it plainly (score >=
    :data:`ATTACH_SCORE`, 2+ key terms). Sentences without key terms ("Yes.")
    are kept as supported (nothing to check) but do not count as an answer;
    preamble and courtesy filler are dropped, as is any marker on them; a
    sentence hedging about the passages ("The passages do not say when") is kept
    as supported, without citation. The answer abstains when it is a refusal or
    no supported sentence answers the question: states something it does not (a figure where
    it asks for one, a name where it asks for one; ``parts``, when given, are the questions it
    asks, each judged so). ``question`` (when given) excuses the words an answer sentence
    repeats from it, as in :func:`rag.cite.scoring.support`.
    """
    asked = Question.of(question)
    # Two passages that are the same paragraph collapse onto the first of them.
    first_of: dict[tuple[str, int], int] = {}
    canonical: list[int] = []
    for i, passage in enumerate(passages):
        canonical.append(first_of.setdefault(_paragraph_key(passage), i))

    units: list[Unit] = []
    prefixes: dict[int, str] = {}
    dropped = 0
    raw_lines = raw.replace("\r\n", "\n").split("\n")
    in_references = False
    for line_no, line in enumerate(raw_lines):
        prefix, body_line = split_prefix(line)
        prefixes[line_no] = prefix
        # A "Sources:" list the model appends repeats markers, it asserts nothing.
        if _REFERENCES_HEADING_RE.match(plain(body_line)):
            in_references = True
            dropped += count_out_of_range(body_line, len(passages))
            continue
        if in_references and (not body_line.strip() or LEADING_MARKERS_RE.match(body_line)):
            dropped += count_out_of_range(body_line, len(passages))
            continue
        in_references = False
        heading = prefix.startswith("#")
        for a, b in line_sentence_spans(body_line):
            sentence = body_line[a:b]
            keys: list[int] = []
            for _, _, numbers in parse_markers(sentence):
                for number in numbers:
                    if not 1 <= number <= len(passages):
                        dropped += 1
                        continue
                    key = canonical[number - 1]
                    if key not in keys:
                        keys.append(key)
            body = body_of(sentence)
            if not re.search(r"\w", body):
                # A line of bare markers belongs to the sentence before it.
                if units:
                    units[-1].keys.extend(k for k in keys if k not in units[-1].keys)
                continue
            if is_strong_refusal(sentence):
                units.append(Unit(line_no, body, [], "meta", supported=True))
                continue
            if is_filler(sentence):
                continue
            terms = extract_terms(body, asked)
            # Headings and list intros ("Two investments:") title what follows.
            intro = body.rstrip("*_ ").endswith(":") and not keys and not terms.numbers
            kind: UnitKind = "connective" if terms.count == 0 or intro or heading else "claim"
            units.append(Unit(line_no, body, keys, kind, supported=kind == "connective"))

    if is_refusal(raw) or not units:
        return _abstain(dropped)

    indexes = {
        i: index_paragraph(passages[i].text, passages[i].title, passages[i].published)
        for i in set(canonical)
    }
    for unit in units:
        if unit.kind == "claim":
            _check_unit(unit, indexes, threshold, asked)

    kinds = parts or [question]
    if not any(
        u.supported and _answers(u, asked, kinds, indexes) for u in units if u.kind == "claim"
    ):
        return _abstain(dropped)
    laid = lay_out(units, prefixes, raw_lines, passages)
    return CheckedAnswer(laid.text, laid.citations, laid.sentences, dropped, abstained=False)


def _answers(
    unit: Unit, question: Question, parts: list[str], indexes: dict[int, ParagraphIndex]
) -> bool:
    """Whether a supported sentence can answer ``question`` or one of its ``parts``: it states
    something the question does not (a figure, where the part asks for one), and a figure it
    gives is, where its paragraph says it, a figure of what the part asks about (see
    :func:`rag.cite.scoring.measures_asked`). A restated question answers nothing."""
    if not question.text:
        return True
    added = new_terms(unit.body, question).numbers
    for part in parts:
        if not can_answer(unit.body, question, part):
            continue
        if asks_figure(part):
            keys = unit.credited or set(unit.keys)
            if not any(measures_asked(added, indexes[k], part) for k in keys):
                continue
        return True
    return False


def _best_supporting(
    terms: Terms, indexes: dict[int, ParagraphIndex], threshold: float
) -> int | None:
    """The passage that plainly supports a sentence on its own, if any (ties: the first)."""
    best: tuple[float, int] | None = None
    for key in sorted(indexes):
        result = assess(terms, indexes[key])
        if result.hard_miss or result.terms < _ATTACH_MIN_TERMS:
            continue
        if result.score >= max(ATTACH_SCORE, threshold) and (
            best is None or result.score > best[0]
        ):
            best = (result.score, key)
    return best[1] if best else None


def _check_unit(
    unit: Unit, indexes: dict[int, ParagraphIndex], threshold: float, question: Question
) -> None:
    """Decide whether the unit's citations support it.

    A sentence without a citation gets the passage that plainly supports it. A
    sentence whose citations do not support it, while another given passage
    plainly does, is re-pointed there: small models often copy the right fact
    and write the wrong number.
    """
    terms = extract_terms(unit.body, question)
    if not unit.keys:
        best = _best_supporting(terms, indexes, threshold)
        if best is None:
            return
        unit.keys = [best]

    if not _cited_support(unit, terms, indexes, threshold, question):
        best = _best_supporting(terms, indexes, threshold)
        if best is not None and best not in unit.keys:
            unit.keys = [best]
            _cited_support(unit, terms, indexes, threshold, question)


# Where a sentence joins two statements ("Brazil's rate was 9.6%, and Germany's was 10.8%"),
# as answers to a question of two parts do.
_CLAUSE_RE = re.compile(r"[,;]\s+(?:and|but|while|whereas)\s+", re.IGNORECASE)
_CLAUSE_MIN_WORDS = 4


def clauses(body: str) -> list[str]:
    """The statements a sentence joins, each of at least a few words; the sentence alone when
    it joins none (a list's "the 800m, 1500m, and 3000m" is one statement)."""
    pieces = [p.strip() for p in _CLAUSE_RE.split(body)]
    if len(pieces) < 2 or any(len(p.split()) < _CLAUSE_MIN_WORDS for p in pieces):
        return [body]
    return pieces


def _clauses_supported(
    unit: Unit, question: Question, indexes: dict[int, ParagraphIndex], threshold: float
) -> bool:
    """Whether every statement of a sentence that joins several is supported by its cited
    paragraphs: each must be, not just their sum. A clause about the second part of a
    question ("and Germany's was 895.4 reais") is otherwise carried by the first clause's
    names and excused by the question's: the paragraph never mentions Germany."""
    pieces = clauses(unit.body)
    if len(pieces) < 2:
        return True
    cited = merge([indexes[k] for k in unit.keys]) if len(unit.keys) > 1 else None
    for piece in pieces:
        terms = extract_terms(piece, question)
        if terms.count == 0:
            continue
        if any(supports(assess(terms, indexes[k]), threshold) for k in unit.keys):
            continue
        if cited is None or not supports(assess(terms, cited), threshold):
            return False
    return True


def _cited_support(
    unit: Unit,
    terms: Terms,
    indexes: dict[int, ParagraphIndex],
    threshold: float,
    question: Question,
) -> bool:
    """Whether the unit's own citations support it (alone or together), each of the statements
    it joins too; records credit."""
    results = {key: assess(terms, indexes[key]) for key in unit.keys}
    unit.scores = {key: result.score for key, result in results.items()}
    if not _clauses_supported(unit, question, indexes, threshold):
        unit.supported = False
        unit.credited = set()
        return False
    alone = {key for key, result in results.items() if supports(result, threshold)}
    if alone:
        unit.supported = True
        unit.credited = alone
        return True
    if len(unit.keys) < 2:
        return False

    def together(keys: list[int]) -> bool:
        return supports(assess(terms, merge([indexes[k] for k in keys])), threshold)

    if not together(unit.keys):
        return False
    unit.supported = True
    # Credit the paragraphs the combination needs; if none is individually
    # needed (redundant coverage), credit those that cover a fair share alone.
    needed = {k for k in unit.keys if not together([o for o in unit.keys if o != k])}
    unit.credited = needed or {k for k, r in results.items() if r.coverage >= 0.5}
    return True
