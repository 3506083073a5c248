"""Scoring an answer sentence against a paragraph: is what it asserts in there?

A lexical check, not a model: the numbers and names the sentence asserts must be in the
paragraph, and most of its content words too (see :func:`support`). It is cheap, explainable and
strict about exactly what small models get wrong: a figure, a name, a year.

What the question itself gives is not the claim: its names need not all be repeated by the
paragraph, which only has to be about the question (share one of them, or its words). What the
answer adds is checked where the paragraph says it: a figure is supported by a sentence of the
paragraph (with the one before it, which often holds the subject) that is about the same thing,
not by the same figure elsewhere in it ("Microsoft made a $10 billion investment" does not
support "Amazon invested $10 billion").
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from rag.cite.terms import (
    DATE_WORDS,
    MONTHS,
    NUMBER_WORDS,
    WORD_RE,
    Number,
    Question,
    Terms,
    acronyms,
    acting_names,
    counted_words,
    extract_terms,
    find_numbers,
    norm_word,
    normalise,
    stem_match,
)
from rag.sentences import split_sentences
from rag.stemming import stem
from rag.wordlists import read_entries

__all__ = [
    "DEFAULT_THRESHOLD",
    "Assessment",
    "ParagraphIndex",
    "assess",
    "index_paragraph",
    "merge",
    "support",
    "supports",
]

DEFAULT_THRESHOLD = 0.75
"""Least :func:`support` score for a paragraph to support a sentence.

With names or numbers in the sentence (all of which must be found) the score is
``0.5 + 0.5 * content share``, so 0.75 means at least half of the content words
must be in the paragraph; a sentence with no name or number needs three in four
of its content words, since nothing else anchors it to the paragraph.
"""

# A hard miss (a number or name the paragraph lacks) halves the public score so
# that it reads as clearly unsupported; the verdict itself ignores the score then.
_HARD_MISS_FACTOR = 0.5

_RELATIVE_YEARS = {"last year": -1, "this year": 0, "next year": 1}


# A figure's sentence must hold at least this share of the claim's content words, when the claim
# has at least RELATION_MIN_WORDS of them (fewer say too little to compare, "paid" for "move").
RELATION_SHARE = 0.3
RELATION_MIN_WORDS = 3
_TITLES = frozenset({"mr", "mrs", "ms", "dr", "sir", "lord", "lady", "prof", "st", "mx"})


@dataclass
class ParagraphIndex:
    """A paragraph (plus its title, for names and words) prepared for repeated lookups."""

    words: set[str]
    stems: set[str]
    numbers: list[Number]
    name_words: set[str]
    name_stems: set[str]
    raw_tokens: set[str]
    acronyms: set[str]
    windows: list[ParagraphIndex] = field(default_factory=list)
    """Each sentence with the one before it, indexed alike (for where a figure is said)."""
    sentences: list[ParagraphIndex] = field(default_factory=list)
    """Each sentence alone, indexed alike (for what a figure there measures)."""
    text: str = ""
    """The text indexed, normalised."""
    names: set[str] = field(default_factory=set)
    """The names (lower case) the paragraph (or window) says."""
    actors: set[str] = field(default_factory=set)
    """Its names that are not right after a preposition: whom a figure there is about."""
    dated: bool = True
    """Whether the article's date is known (a BBC-style archive gives none)."""
    labels: list[tuple[str, Number]] = field(default_factory=list)
    """Figures given under a label ("Att: 50,430"), with the label in lower case (of the whole
    paragraph only: windows and sentences are not asked)."""


def _relative_years(text: str, published: str | None) -> list[Number]:
    """Years a news paragraph names relatively ("this year"), resolved by its date.

    A paragraph of an article from September 2023 that says "this year" supports
    an answer sentence that says "in 2023".
    """
    if not published or not published[:4].isdigit():
        return []
    year = int(published[:4])
    lowered = text.lower()
    return [
        Number(float(year + offset), False)
        for phrase, offset in _RELATIVE_YEARS.items()
        if phrase in lowered
    ]


def index_paragraph(
    paragraph: str, title: str = "", published: str | None = None, *, windows: bool = True
) -> ParagraphIndex:
    """Prepare ``paragraph`` (with its article's ``title`` and date) for :func:`assess`."""
    text = normalise(paragraph)
    numbers, words_text = find_numbers(text, bare_words=True)
    numbers = [*numbers, *_relative_years(text, published)]
    tokens = [norm_word(t) for t in WORD_RE.findall(words_text)]
    named_text = normalise(f"{title}\n{paragraph}") if title else text
    name_tokens = [norm_word(t) for t in WORD_RE.findall(named_text)]
    # A title states what its article says ("Aviator wins top Globes accolades" for a paragraph
    # saying it was "named best film"); where a figure is said, windows still decide.
    titled = [*tokens, *(norm_word(t) for t in WORD_RE.findall(normalise(title)))]
    index = ParagraphIndex(
        words=set(titled),
        stems={stem(t) for t in titled},
        numbers=numbers,
        name_words=set(name_tokens),
        name_stems={stem(t) for t in name_tokens},
        raw_tokens=set(WORD_RE.findall(named_text)),
        acronyms=acronyms(named_text),
        names={norm_word(n) for n in extract_terms(paragraph).names} - DATE_WORDS,
        actors=acting_names(paragraph) - DATE_WORDS,
        text=text,
        dated=bool(published),
        labels=_labelled_figures(text) if windows else [],
    )
    if windows:
        sentences = split_sentences(paragraph)
        for i in range(len(sentences)):
            window = " ".join(sentences[max(0, i - 1) : i + 1])
            # No title: where the paragraph gives a figure, whom it names there is what counts.
            index.windows.append(index_paragraph(window, "", published, windows=False))
            index.sentences.append(index_paragraph(sentences[i], "", published, windows=False))
    return index


# "Att: 50,430", "Crowd: 40,000", "Price: £120m": a stats line labels its figures.
_LABEL_RE = re.compile(
    r"\b(?P<label>[A-Za-z]{3,}):\s*(?P<figure>[£$€]?\d[\d,.]*(?:\s?(?:m|bn|k)\b)?)"
)


def _labelled_figures(text: str) -> list[tuple[str, Number]]:
    return [
        (match.group("label").lower(), number)
        for match in _LABEL_RE.finditer(text)
        for number in find_numbers(match.group("figure"), bare_words=False)[0]
    ]


def _labelled(number: Number, index: ParagraphIndex, words: Sequence[str]) -> bool:
    """Whether the paragraph gives ``number`` under a label that is one of ``words`` (or a
    word counting the same, :func:`_alike`) or its abbreviation: "Att: 50,430" is the
    attendance, whatever else the line says."""
    forms = {form for w in words for form in _alike(w)}
    return any(
        math.isclose(number.value, figure.value, rel_tol=1e-9)
        and any(form.startswith(label) for form in forms)
        for label, figure in index.labels
    )


def merge(indexes: list[ParagraphIndex]) -> ParagraphIndex:
    """One index over several paragraphs (a sentence may combine facts from two)."""
    merged = ParagraphIndex(set(), set(), [], set(), set(), set(), set())
    for index in indexes:
        merged.words |= index.words
        merged.stems |= index.stems
        merged.numbers.extend(index.numbers)
        merged.name_words |= index.name_words
        merged.name_stems |= index.name_stems
        merged.raw_tokens |= index.raw_tokens
        merged.acronyms |= index.acronyms
    return merged


def _number_found(number: Number, index: ParagraphIndex) -> bool:
    for other in index.numbers:
        if number.percent and not other.percent:
            continue
        if math.isclose(number.value, other.value, rel_tol=1e-9, abs_tol=1e-9):
            return True
    return False


def _name_found(name: str, index: ParagraphIndex) -> bool:
    lowered = norm_word(name)
    if lowered in index.name_words or stem_match(stem(lowered), index.name_stems):
        return True
    if name.isupper() and 2 <= len(name) <= 6:
        # An acronym may sit inside a name ("AI" in "OpenAI") or stand for one.
        return lowered in index.acronyms or any(name in token for token in index.raw_tokens)
    return False


def _content_found(word: str, index: ParagraphIndex) -> bool:
    if word in index.words or stem_match(stem(word), index.stems):
        return True
    value = NUMBER_WORDS.get(word)
    return value is not None and any(n.value == value for n in index.numbers)


@dataclass(frozen=True)
class Assessment:
    score: float
    """Public score: coverage, halved when a number or name is missing."""
    coverage: float
    hard_miss: bool
    terms: int


def assess(terms: Terms, index: ParagraphIndex) -> Assessment:
    """How much of what ``terms`` assert the indexed paragraph contains.

    Names the question gave (``terms.asked_names``) are not required one by one, but the
    paragraph must hold one of them (or, when the claim repeats none, one of the words
    restating the question). A figure the question did not give must be said in a sentence of
    the paragraph that is about the claim (see :func:`_related`).
    """
    if terms.count == 0:
        return Assessment(0.0, 0.0, False, 0)
    claimed = [n for n in terms.names if norm_word(n) not in terms.asked_names]
    asked = [n for n in terms.names if norm_word(n) in terms.asked_names]
    # Figures the question gave are its context, like its names: found, they count for the
    # claim; missing, they do not count against it. But a year the question gives is required
    # of a claim that adds no figure of its own: a name alone ("England won the 2022 World
    # Cup") is no evidence of which year's event a paragraph is about, while a figure the
    # paragraph relates to the claim is.
    adds_figure = any(n not in terms.asked_numbers for n in terms.numbers)
    figures = [
        n
        for n in terms.numbers
        if n not in terms.asked_numbers
        or _number_found(n, index)
        or (is_year(n) and not adds_figure and not _year_unknowable(terms, index))
    ]
    hard_total = len(figures) + len(claimed)
    numbers_found = sum(_number_found(n, index) for n in figures)
    # A name spelled out in the answer ("Amazon Web Services") is found when the
    # paragraph uses its acronym ("AWS").
    by_acronym = {
        norm_word(name)
        for run in terms.spelled
        for i in range(len(run) - 1)
        for j in range(i + 2, len(run) + 1)
        if "".join(name[0] for name in run[i:j]).lower() in index.name_words
        for name in run[i:j]
    }
    found = {norm_word(n) for n in terms.names if _name_found(n, index)} | by_acronym
    # A paragraph names a person once in full and then by surname ("Manning finished the
    # year..."): a part of a name that the question gave is excused when the rest of that
    # name is found. Names the question did not give are never excused, so "Eli Manning"
    # is still no answer from a paragraph about Peyton.
    found |= {
        word
        for run in terms.spelled
        if any(norm_word(n) in found for n in run)
        for word in map(norm_word, run)
        if word in terms.asked_names
    }
    names_found = sum(norm_word(n) in found for n in claimed)
    content_found = sum(_content_found(w, index) for w in terms.content)
    hard_share = (numbers_found + names_found) / hard_total if hard_total else None
    content_share = content_found / len(terms.content) if terms.content else None
    if hard_share is not None and content_share is not None:
        coverage = 0.5 * hard_share + 0.5 * content_share
    elif hard_share is None and content_share is None:
        coverage = 1.0 if asked else 0.0  # only the question's own names: the anchor decides
    else:
        coverage = hard_share if hard_share is not None else content_share or 0.0
    # About the question's subject: one of the question's names it repeats, or (naming none of
    # them) one of the words restating the question.
    # A month the question gives dates the subject, it is not one: "Germany's in November"
    # is not about a paragraph on Brazil that says "November".
    subjects = [n for n in asked if norm_word(n) not in DATE_WORDS] or asked
    question_subjects = terms.question_names - DATE_WORDS
    if subjects:
        anchored = any(norm_word(n) in found for n in subjects)
    else:
        # Naming none of the question's names, the claim is about the question where the
        # paragraph restates it, or names whom it is about ("The original ban was meant to last
        # until the end of the year" from a paragraph on Chepkemei that says "suspended").
        anchored = (
            not terms.echoed
            or any(_content_found(w, index) for w in terms.echoed)
            or any(_name_found(n, index) for n in question_subjects)
        )
    # A claim that names none of whom the question is about ("The unemployment rate in
    # December was 5.4%" for "Brazil's rate") is still about them: the paragraph (or its title)
    # must name one of them, else it is a figure of someone else (the US's 5.4%).
    actors = terms.question_actors - DATE_WORDS
    if actors and not any(norm_word(n) in question_subjects for n in asked):
        anchored = anchored and any(_name_found(actor, index) for actor in actors)
    hard_miss = (
        numbers_found < len(figures)
        or names_found < len(claimed)
        or not anchored
        or not _related(terms, index)
    )
    score = coverage * _HARD_MISS_FACTOR if hard_miss else coverage
    return Assessment(score, coverage, hard_miss, terms.count)


def _year_unknowable(terms: Terms, index: ParagraphIndex) -> bool:
    """Whether the paragraph cannot tell which year it is about, and the claim's new names are
    said where it speaks of what the question asks: an undated article's paragraph that names
    no year ("Kevin Morgan takes over from ... Hal Luscombe on the right wing" for the 2005 Six
    Nations question) neither confirms nor contradicts the question's year."""
    if index.dated or any(is_year(n) for n in index.numbers):
        return False
    new_names = [n for n in terms.names if norm_word(n) not in terms.asked_names]
    words = list(terms.question_words)
    if not new_names or len(words) < RELATION_MIN_WORDS:
        return False
    asked = [n for n in terms.names if norm_word(n) in terms.question_names - DATE_WORDS]

    def placed(sentence: ParagraphIndex) -> bool:
        return _shares(sentence, words) or any(_name_found(n, sentence) for n in asked)

    return all(
        any(placed(s) for s in index.sentences if _name_found(name, s)) for name in new_names
    )


def _related(terms: Terms, index: ParagraphIndex) -> bool:
    """Whether each figure the claim adds is said in a window of the paragraph about the claim.

    A window is about the claim unless it leaves out a name of the claim while naming someone
    else (a substitution: "Microsoft made a $10 billion investment" for "Amazon invested $10
    billion"), or shares too few of the claim's content words (the figure is of something
    else: "offices averaging 40 staff" for "the firm employs 40 staff").
    """
    added = [n for n in terms.numbers if n not in terms.asked_numbers]
    words = [*terms.content, *terms.echoed]
    bare = len(words) < RELATION_MIN_WORDS and len(terms.question_words) >= RELATION_MIN_WORDS
    if bare:
        words = list(terms.question_words)  # a bare answer ("£3.7bn.") is about the question
    # A bare name ("Sonny Parker.") says no more than that the question is about them, so it is
    # held to what a bare figure is: named where the paragraph speaks of what the question asks,
    # not anywhere in it ("centre Sonny Parker is set to recover" is no answer to who took over
    # from the injured winger). A name in a sentence of its own says what relates it.
    new_names = [n for n in terms.names if norm_word(n) not in terms.asked_names] if bare else []
    if not (added or new_names) or len(index.windows) < 2:
        return True
    for name in new_names:
        windows = [w for w in index.windows if _name_found(name, w)]
        if windows and not any(_shares(window, words) for window in windows):
            return False
    claim_names = {norm_word(n) for n in terms.names}
    # Whom the question asks about, named neither in the paragraph nor in its title, is not
    # just referred to there ("the winger"): where someone else acts beside the figure ("the
    # BCC ... forecast"), the figure is theirs, not the OECD's.
    named = index.names | {
        norm_word(n)
        for n in terms.names
        if norm_word(n) in terms.question_actors and not _name_found(n, index)
    }
    for number in added:
        if _labelled(number, index, words):
            continue
        windows = [w for w in index.windows if _number_found(number, w)]
        if not windows:
            continue  # said only through the title or a relative date: the paragraph decides
        if not any(_about(terms, window, words, claim_names, named) for window in windows):
            return False
    return True


def _about(
    terms: Terms,
    window: ParagraphIndex,
    words: list[str],
    claim_names: set[str],
    named: set[str],
) -> bool:
    """Whether ``window`` (a sentence and the one before it) is about the claim: see
    :func:`_related`. ``named`` holds the names of the whole paragraph: a claim's name it never
    gives (the paragraph says "the winger") cannot be missing from the window, unless the
    question asks about them and the title does not name them either."""
    said = {norm_word(n) for n in terms.names if _name_found(n, window)}
    # A name the question gave is there when the rest of it is ("Brown" for "Gordon Brown").
    found = said | {
        word
        for run in terms.spelled
        if any(norm_word(n) in said for n in run)
        for word in map(norm_word, run)
        if word in terms.asked_names
    }
    # A name the question gives only as context ("since the liberation of Auschwitz") may be
    # missing where the figure is said; one the question is about ("did Amazon invest") may not.
    missing = [
        n
        for n in terms.names
        if norm_word(n) not in found
        and norm_word(n) in named
        and (norm_word(n) not in terms.asked_names or norm_word(n) in terms.question_actors)
    ]
    known = claim_names | terms.question_names
    foreign = [
        name
        for name in window.actors
        if name not in known
        and name not in _TITLES
        and not any(stem_match(stem(name), {stem(c)}) for c in known)
        and not any(name in c or c in name for c in known if len(c) >= 3)
        and name not in _acronyms_of(terms)
    ]
    if missing and foreign:
        return False
    return _shares(window, words, _full_names_said(terms, said))


def _shares(window: ParagraphIndex, words: list[str], also: int = 0) -> bool:
    """Whether ``window`` holds a fair share (:data:`RELATION_SHARE`) of ``words``, counting
    ``also`` more found by other means; always so for fewer than :data:`RELATION_MIN_WORDS`."""
    if len(words) < RELATION_MIN_WORDS:
        return True
    shared = sum(_content_found(w, window) for w in words) + also
    return shared >= round(RELATION_SHARE * len(words))


def _full_names_said(terms: Terms, said: set[str]) -> int:
    """How many names of several words the question gives ("National Holocaust Memorial Day")
    are ``said`` whole (each of their words) where the figure is: such a name says what it is a
    figure of, as much as a word of the question would."""
    return sum(
        len(run) >= 2
        and all(norm_word(n) in terms.asked_names and norm_word(n) in said for n in run)
        for run in terms.spelled
    )


_MONTH_FORMS = frozenset(MONTHS.values())


def measures_asked(added: Sequence[Number], index: ParagraphIndex, asked: str) -> bool:
    """Whether a figure the claim adds (``added``, figures or number words the question does not
    give) is, in the paragraph, a figure of what ``asked`` (a question asking for a figure) is
    about: the paragraph mentions what the question counts, if it counts something; the figure
    is said in a sentence that holds what it counts ("how many survivors": survivors), when the
    paragraph counts that anywhere, else a fair share of its content words (:data:`RELATION_SHARE`,
    at least one); and, where that sentence dates it, dated in one of the question's years (and
    in its month, where the paragraph dates figures by that month).

    A paragraph may support a claim word for word and still not answer the question: "Some six
    million people perished in the Holocaust" is no count of the survivors who attended a
    reception, a film's box-office takings are not its budget, what is spent by 2006 is not
    the cost by 2010, and a mill "sold for $800m" is no figure of the "bid" of a steel group
    that lost the "privatisation auction" (one word of seven). The sentence alone is searched,
    not the window of :func:`_related`: the sentence before it is often the one the question
    was about.
    """
    question = Question.of(asked)
    if not added or not index.sentences:
        return True
    # A paragraph that never mentions what the question counts ("how many spectators") or whom
    # a share is of ("what proportion of American teenagers") gives no figure of it: its 59%
    # is a share of the owners of players, not of teenagers.
    wanted = counted_words(asked)
    if wanted and not any(_content_found(a, index) for w in wanted for a in _alike(w)):
        return False
    # What is counted decides only where the paragraph counts it somewhere ("six million
    # people perished ... 400 survivors attended"); else any word of the question may.
    counted = [w for w in wanted if any(_counts(s.text, w) for s in index.sentences)]
    words = counted or question.words
    if not words:
        return True
    alike = [_alike(w) for w in words]
    years = [n for n in question.numbers if is_year(n)]
    # A month the question dates the figure by decides where the paragraph dates some of its
    # figures by it: "fell to 9.6% in December" answers "the rate in December 2004", "the
    # average for the whole of 2004 was 11.5%" does not.
    months = {w for w in map(norm_word, WORD_RE.findall(asked)) if w in _MONTH_FORMS}
    by_month = bool(months) and any(months & s.words for s in index.sentences)
    for number in added:
        if _labelled(number, index, [*wanted, *question.words]):
            return True
        said = [i for i, s in enumerate(index.sentences) if _number_found(number, s)]
        if not said:
            return True  # said through the title or a relative date: nothing to place it by
        for i in said:
            sentence = index.sentences[i]
            dated = [n for n in sentence.numbers if is_year(n) and n != number]
            if years and dated and not any(_number_found(y, sentence) for y in years):
                continue
            # A sentence that gives no date of its own may be dated by the one before it
            # ("on 14 December ... that day"); one that does ("for the whole of 2004") is not.
            own_date = dated or bool(_MONTH_FORMS & sentence.words)
            placed = sentence if own_date else index.windows[i]
            if by_month and not months & placed.words:
                continue
            shared = sum(any(_content_found(a, sentence) for a in forms) for forms in alike)
            if shared >= max(1, round(RELATION_SHARE * len(words))):
                return True
    return False


# Each word's stem, to the words of the groups it is in (data/counted-alike.txt).
_ALIKE: dict[str, list[str]] = {}
for _entry in read_entries("rag.cite", "data/counted-alike.txt"):
    for _word in _entry.split():
        _ALIKE.setdefault(stem(_word), []).extend(_entry.split())


def _alike(word: str) -> tuple[str, ...]:
    """``word`` and the words that count the same ("viewers": "audience", ...), with the verb
    of an agent noun ("owners": "own", as in "Americans who own MP3 players")."""
    target = stem(word)
    verb = (target[:-2],) if target.endswith("er") and len(target) >= 5 else ()
    return (word, *verb, *(w for w in _ALIKE.get(target, []) if w != word))


def _counts(text: str, word: str) -> bool:
    """Whether ``text`` gives a count of ``word``: a figure just before it ("400 survivors",
    "6.3 million new viewers")."""
    target = stem(word)
    tokens = WORD_RE.findall(text)
    for i, token in enumerate(tokens):
        if any(ch.isdigit() for ch in token) or token.lower() in NUMBER_WORDS:
            following = tokens[i + 1 : i + 4]
            if any(stem(norm_word(t)) == target for t in following):
                return True
    return False


def is_year(number: Number) -> bool:
    return not number.percent and number.value.is_integer() and 1900 <= number.value <= 2100


def _acronyms_of(terms: Terms) -> set[str]:
    return {
        "".join(name[0] for name in run[i:j]).lower()
        for run in terms.spelled
        for i in range(len(run) - 1)
        for j in range(i + 2, len(run) + 1)
    }


def supports(assessment: Assessment, threshold: float) -> bool:
    """The verdict: something to check, no hard miss, and a score at ``threshold`` or above."""
    return assessment.terms > 0 and not assessment.hard_miss and assessment.score >= threshold


def support(
    sentence: str,
    paragraph: str,
    *,
    title: str = "",
    published: str | None = None,
    question: str = "",
) -> float:
    """Share of the sentence's key terms found in the paragraph, in 0..1.

    Key terms are figures (normalised: "$1 billion" = "$1bn" = "1 billion",
    "1,000" = "1000", "10 percent" = "10%"), names (capitalised words, matched
    case-insensitively with possessives removed; an acronym also matches the
    initials of a name or sits inside one, "AI" in "OpenAI") and content words
    (stopwords removed, compared by stem (:mod:`rag.stemming`) and by stem prefix,
    so "invested" ~ "investment" ~ "investor"). Figures and names together count half,
    content words half; a sentence with only one kind is scored on that kind alone.

    A missing figure or name halves the score: such a sentence never counts as
    supported (see :func:`rag.cite.check_answer`), whatever the threshold. ``title``, when
    given, is searched for names only, since a paragraph often says "the
    company" where its article's title names it. A sentence with no key terms
    scores 0 (it asserts nothing a paragraph could support). ``published`` (the
    article's ISO date) resolves "this year", "last year" and "next year".
    Words the sentence shares with ``question`` are not checked when it asserts
    something besides them (a restated question is not a claim).
    """
    terms = extract_terms(sentence, Question.of(question))
    return assess(terms, index_paragraph(paragraph, title, published)).score
