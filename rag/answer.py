"""From passages to a checked, cited answer: prompt → model → citations.

The model's raw text streams out as it is written; the final :class:`Answer`
carries the checked text, in which citations are renumbered, markers the
passages do not back are gone, and unsupported sentences are flagged.
"""

from __future__ import annotations

import collections.abc
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Protocol

from rag.cite import ABSTAIN_TEXT, check_answer
from rag.cite.assemble import render
from rag.cite.terms import DATE_WORDS, Question, can_answer, extract_terms, norm_word
from rag.generate import ChatModel, Generation
from rag.generate.base import last_of
from rag.parts import Part, about, answered_parts, most_about, split_question
from rag.prompt import (
    Templates,
    answer_messages,
    fit_question,
    require_question,
    rewrite_messages,
    trim_to_tokens,
)
from rag.settings import default
from rag.types import (
    Answer,
    AnswerItem,
    Citation,
    PartAnswered,
    Passage,
    Reading,
    ReadOn,
    Retry,
    Sentence,
)

# One reading of the passages: yields the model's text pieces, returns the checked Answer.
Attempt = collections.abc.Generator[str, None, Answer]


class Retrieve(Protocol):
    """A search for one part of a question: its ``k`` best paragraphs (by default as many as
    the question's own search gives)."""

    def __call__(self, query: str, k: int | None = None) -> list[Passage]: ...


# A chat question longer than this is not rewritten as a follow-up: it carries its own context,
# and rewriting it would make the model read (and repeat) all of it first.
REWRITE_MAX_TOKENS = 128

# Words that make a question lean on the one before it ("and how much did Amazon invest?").
_FOLLOW_UP_RE = re.compile(
    r"^\s*(and|but|also|so|what about|how about|then)\b"
    r"|\b(it|its|they|them|their|he|him|his|she|her|that|this|those|these|there|same)\b",
    re.IGNORECASE,
)


def looks_like_follow_up(question: str) -> bool:
    """Whether a chat question probably needs the previous one to be understood."""
    return bool(_FOLLOW_UP_RE.search(question)) or len(question.split()) <= 3


def final_answer(stream: Iterable[AnswerItem]) -> Answer:
    """Drain an answer stream and return the Answer it ends with."""
    return last_of(stream, Answer)


def abstained_answer(question: str, passages: list[Passage], timings: dict[str, float]) -> Answer:
    return Answer(
        question=question,
        text=ABSTAIN_TEXT,
        citations=[],
        passages=passages,
        abstained=True,
        timings=timings,
    )


def stream_answer(
    question: str,
    passages: list[Passage],
    generator: ChatModel,
    templates: Templates,
    *,
    max_prompt_tokens: int,
    max_new_tokens: int,
    temperature: float = default("temperature"),
    stop_penalty: float = default("stop_penalty"),
    best_first: bool = default("best_first"),
    read_on_alone: int = default("read_on_alone"),
    timings: dict[str, float] | None = None,
    retrieve: Retrieve | None = None,
) -> Iterator[AnswerItem]:
    """Yield the model's text pieces as generated, then the checked :class:`Answer`.

    With ``best_first``, the model first reads the best passage alone; only if that answer is
    declined or unsupported is it asked again with all the passages, announced by a
    :class:`Retry` in the stream (the pieces before it are withdrawn). A small model given
    distractors beside the paragraph that answers too often answers from a distractor (the
    effect on SQuAD is in BENCHMARKS.md).

    A question that asks several things (:func:`rag.parts.split_question`) is answered part by
    part: the first reading gets the best paragraph for the question and the best for each part
    (:func:`best_per_part`, with ``retrieve``); a part that answer leaves unanswered is searched
    for on its own and read for, announced by a :class:`ReadOn`: its best ``read_on_alone``
    paragraphs not read yet one at a time, in turn, until one answers an open part, then (with
    ``best_first``) as many as the question was given, together; what that reading answers is
    added, and a part that no passage answers is said plainly. ``Answer.readings`` keeps every
    reading and ``Answer.parts`` which parts were answered.

    An empty question is a :class:`~rag.errors.EmptyQuestion`. One too long for the prompt
    budget is cut (with a warning, see :func:`rag.prompt.fit_question`); the answer is then
    checked against the part the model read, while ``Answer.question`` keeps the question as
    asked.
    """
    require_question(question)
    reader = _Reader(
        generator,
        templates,
        max_prompt_tokens=max_prompt_tokens,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        stop_penalty=stop_penalty,
        best_first=best_first,
        timings=dict(timings or {}),
    )
    parts = split_question(question)
    if len(parts) < 2 or retrieve is None:
        yield (yield from reader.answer(question, passages))
        return
    # Each part's best paragraph, read together: the second part's fact is often in another
    # paragraph or article, which the best paragraph for the whole question is not.
    first = best_per_part(question, parts, passages, retrieve)
    if first:
        answer = yield from reader.read(question, reader.shown(question), first)
    else:
        answer = yield from reader.answer(question, first)
    answered = answered_parts(question, parts, [] if answer.abstained else answer.sentences)
    left_open = [not done for done in answered]
    extra: list[tuple[Answer, list[Sentence]]] = []
    for index, part in enumerate(parts):
        if answered[index]:
            continue
        # Searched for by the part with the names the rest of the question gives (a second
        # part says "the pair" where the first named the bank), and asked as the part itself
        # (:func:`focus`): asked the whole question again, the model answers the part it has
        # answered already.
        # A first reading declined as a whole read nothing for the part: the model may have
        # mixed its paragraphs up, and the part's own best, read alone, is often the answer.
        read = [] if answer.abstained else first
        # Wide enough that ``read_on_alone`` paragraphs not read yet, and as many as the
        # question was given after them, are among those found.
        together_size = max(len(passages), 1)
        searched = retrieve(with_context(part, question), len(read) + read_on_alone + together_size)
        unread = [p for p in searched if not any(_same(p, r) for r in read)]
        alone = unread[:read_on_alone]
        # Read together: the part's best paragraphs that no reading has had yet; when every one
        # of its best was read alone to no answer, the next ones ("a 3 trillion yen deal" in
        # the sixth paragraph found for the value of the deal).
        together = unread_first(searched[:together_size], read)
        if all(any(_same(p, r) for r in [*alone, *read]) for p in together):
            together = unread[len(alone) : len(alone) + together_size] or together
        reads = len(alone) + sum(not any(_same(p, a) for a in alone) for p in together)
        yield ReadOn(part=part.text, passages=reads)
        # What a reading answers of any part still open counts: read for one part, the model
        # often answers another.
        still_open = [j for j, done in enumerate(answered) if not done]

        def answers_open(
            reading: Answer, asked: int = index, open_: list[int] = still_open
        ) -> bool:
            return not reading.abstained and any(
                sentences_for(question, parts, j, reading.sentences, asked=asked) for j in open_
            )

        more = yield from reader.answer(
            question,
            alone or together,
            focus(part, question),
            alone=len(alone),
            together=together,
            answers=answers_open,
        )
        added: list[Sentence] = []
        for other in [] if more.abstained else still_open:
            found_for = sentences_for(question, parts, other, more.sentences, asked=index)
            if found_for:
                answered[other] = True
                added += [s for s in found_for if s not in added]
        extra.append((more, added))
    yield combine(answer, parts, answered, left_open, extra)


class _Reader:
    """Reads passages for a question with one generator and one set of answer settings."""

    def __init__(
        self,
        generator: ChatModel,
        templates: Templates,
        *,
        max_prompt_tokens: int,
        max_new_tokens: int,
        temperature: float,
        stop_penalty: float,
        best_first: bool,
        timings: dict[str, float],
    ) -> None:
        self.generator = generator
        self.templates = templates
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.stop_penalty = stop_penalty
        self.best_first = best_first
        self.timings = timings
        self.budget = min(max_prompt_tokens, generator.context_length - max_new_tokens)

    def answer(
        self,
        question: str,
        passages: list[Passage],
        asked: str | None = None,
        *,
        alone: int = 1,
        together: list[Passage] | None = None,
        answers: Callable[[Answer], bool] | None = None,
    ) -> collections.abc.Generator[str | Retry, None, Answer]:
        """The first ``alone`` passages one at a time, in turn (``best_first``), then the
        ``together`` passages (by default all of them) at once if none gave an answer that
        ``answers`` accepts (by default: any supported answer).

        ``asked`` is what the model is asked, when not the whole question (one of its parts).
        """
        if not passages:
            timings = {**self.timings, "total": self.timings.get("retrieval", 0.0)}
            return abstained_answer(question, passages, timings)
        shown = self.shown(asked or question)
        together_ = together or passages
        if not self.best_first:
            return (yield from self.read(question, shown, together_))
        accepts = answers or (lambda reading: not reading.abstained)
        tried: list[Answer] = []
        for passage in passages[:alone]:
            if tried:
                yield Retry(passages=1, withdrawn=tried[-1].raw_text)
            reading = yield from self.read(question, shown, [passage])
            if accepts(reading):
                return self._after(tried, reading)
            tried.append(reading)
        if not tried:
            return (yield from self.read(question, shown, together_))
        if all(any(_same(p, r) for r in passages[:alone]) for p in together_):
            return self._after(tried[:-1], tried[-1])  # each of them was read alone already
        yield Retry(passages=len(together_), withdrawn=tried[-1].raw_text)
        last = yield from self.read(question, shown, together_)
        return self._after(tried, last)

    def _after(self, tried: list[Answer], last: Answer) -> Answer:
        """``last`` with the readings and model time of the ``tried`` readings before it."""
        for earlier in tried:
            for stage in ("prefill", "generation"):
                last.timings[stage] += earlier.timings[stage]
            last.timings["total"] += earlier.timings["total"] - self.timings.get("retrieval", 0.0)
        last.readings = [*(r for t in tried for r in t.readings), *last.readings]
        last.attempts = len(last.readings)
        return last

    def shown(self, question: str) -> str:
        """The question as the model gets it: cut to the prompt budget (with a warning).

        The support check excuses words that restate the question, so it must see the
        question the model saw: 20,000 characters of it would excuse almost any sentence.
        """
        return fit_question(question, self.templates, self.generator.count_tokens, self.budget)

    def read(self, question: str, shown: str, passages: list[Passage]) -> Attempt:
        return _attempt(
            question,
            shown,
            passages,
            self.generator,
            self.templates,
            budget=self.budget,
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            stop_penalty=self.stop_penalty,
            timings=self.timings,
        )


def best_per_part(
    question: str,
    parts: list[Part],
    passages: list[Passage],
    retrieve: Retrieve,
) -> list[Passage]:
    """The best paragraph for the whole question, then each part's best (searched by the part
    in its context, :func:`with_context`) where it is another paragraph (not a copy of one
    chosen)."""
    chosen = list(passages[:1])
    for part in parts:
        found = retrieve(with_context(part, question))[:1]
        if found and not any(_same(found[0], p) for p in chosen):
            chosen.append(found[0])
    return chosen


def unread_first(found: list[Passage], read: list[Passage]) -> list[Passage]:
    """``found`` with the paragraphs not yet read first: the first reading had those others
    and left the part open, and the part's fact is often in another article (the second film's
    box office, where the men landed)."""
    unread = [p for p in found if not any(_same(p, r) for r in read)]
    return unread + [p for p in found if p not in unread]


def _same(one: Passage, other: Passage) -> bool:
    return (one.source, one.paragraph) == (other.source, other.paragraph) or one.text == other.text


# A part with fewer content words than this says what it asks through the part before it
# ("..., and what was Germany's in November 2004?" asks for an unemployment rate too).
_ELLIPTIC_WORDS = 2


def with_context(part: Part, question: str) -> str:
    """The part, with what the rest of the question says of it, for a search: the question's
    names when the part names no one of its own ("the pair" for the bank's officials), and the
    question's content words when the part leaves out what it asks about. A part that names
    its own subject is not given the others' names: they find the other part's paragraph."""
    own = extract_terms(part.text)
    whole = extract_terms(question)
    lowered = part.text.lower()
    extra: list[str] = []
    if not _names_subject(part):
        extra += [n for n in whole.names if n.lower() not in lowered]
    if len(own.content) < _ELLIPTIC_WORDS:
        extra += [w for w in whole.content if w not in lowered]
    return f"{part.text} {' '.join(dict.fromkeys(extra))}".strip()


def _names_subject(part: Part) -> bool:
    """Whether a part names someone or something of its own: a month dates, it names nobody,
    and "the final score against France" names whom the subject played, not the subject."""
    own = extract_terms(_OPPONENT_RE.sub(" ", part.text))
    return any(norm_word(n) not in DATE_WORDS for n in own.names)


# "against France", "versus the All Blacks": the other side of a match or a case.
_OPPONENT_RE = re.compile(
    r"\b(?:against|versus|vs\.?|v\.?)\s+(?:the\s+)?[A-Z][\w'’.-]*(?:\s+[A-Z][\w'’.-]*)*"
)


def focus(part: Part, question: str) -> str:
    """What the model is asked when it reads on for ``part``: the part itself, with the names
    the rest of the question gives where the part names no one of its own ("In which city did
    the pair work?" after "... at Bank of China"). A part that leaves out what it asks about
    ("and what was Germany's in November 2004?") is asked as the whole question. A part that
    points back ("how old was he") gets those names too."""
    own = extract_terms(part.text)
    if len(own.content) < _ELLIPTIC_WORDS:
        return question
    if _names_subject(part) and not _BACK_RE.search(part.text):
        return part.text
    names = extract_terms(question).names
    found = (re.sub(r"['’]s$", "", m.group(0)) for m in _NAME_SPAN_RE.finditer(question))
    spans = [
        span
        for span in dict.fromkeys(found)
        if any(n in span.split() for n in names)
        and span.lower() not in part.text.lower()
        and not all(norm_word(w) in DATE_WORDS for w in span.split())
    ]
    return f"{part.text} (The question is about {', '.join(spans)}.)" if spans else part.text


# Words by which a part points back at whom the part before it named ("how old was he").
_BACK_RE = re.compile(r"\b(?:he|she|it|they|them|him|her|the pair|the men)\b", re.I)
# A name as the question writes it, with its small words: "Bank of China", "Queen's Club".
_NAME_SPAN_RE = re.compile(r"[A-Z][\w'’.-]*(?:\s+(?:(?:of|and|the|de|for)\s+)?[A-Z][\w'’.-]*)*")


def sentences_for(
    question: str,
    parts: list[Part],
    index: int,
    sentences: list[Sentence],
    asked: int | None = None,
) -> list[Sentence]:
    """The supported sentences of a reading that answer part ``index`` of ``question``.

    ``asked`` is the part the reading was asked (:func:`focus`): a sentence answering it need
    not repeat its words ("On 16 March [1]." to "On what date was the Budget due?"), so for
    that part a sentence about no other part will do."""
    question_of = Question.of(question)

    def about_part(sentence: Sentence) -> bool:
        if about(sentence, parts[index], parts):
            return True
        return index == asked and not most_about(sentence, parts)

    return [
        s
        for s in sentences
        if s.supported
        and s.citations
        and about_part(s)
        and can_answer(s.text, question_of, parts[index].text)
    ]


def combine(
    answer: Answer,
    parts: list[Part],
    answered: list[bool],
    left_open: list[bool],
    extra: list[tuple[Answer, list[Sentence]]],
) -> Answer:
    """The first answer with what reading on for its unanswered parts added.

    ``extra`` holds the answer of each reading on and its sentences that answer a part the
    first answer left open; ``answered`` says, for each part, whether some reading answered it.
    The sentences are added (citations numbered on after the first answer's, a paragraph cited
    twice keeping one number); for a part still unanswered, a sentence says so. The readings
    and timings of every reading add up.

    ``left_open`` says which parts the first answer left unanswered: a sentence of it that the
    check did not support and that is about such parts only is left out, since another
    reading's answer or the sentence saying the part is not answered replaces it ("He was 19
    years old" beside "18 years and 185 days", "The final score was 3-2" beside "The indexed
    articles do not answer this part").
    """
    first = [] if answer.abstained else list(answer.sentences)
    kept = [s for s in first if not _superseded(s, parts, left_open)]
    texts: list[str] = []
    citations: list[Citation] = []
    sentences: list[Sentence] = []
    number_of: dict[tuple[str, int], int] = {}
    passages = list(answer.passages)

    def add(more: Answer, added: list[Sentence]) -> None:
        by_number = {c.number: c for c in more.citations}
        for sentence in added:
            if sentence.text in {t.text for t in sentences}:
                continue
            numbers = []
            for n in sentence.citations:
                citation = by_number[n]
                key = (citation.passage.source, citation.passage.paragraph)
                if key not in number_of:
                    number_of[key] = len(number_of) + 1
                    citations.append(replace(citation, number=number_of[key]))
                    if citation.passage not in passages:
                        passages.append(citation.passage)
                numbers.append(number_of[key])
            renumbered = replace(sentence, citations=sorted(numbers))
            sentences.append(renumbered)
            texts.append(render(renumbered.text, renumbered.citations))

    if len(kept) == len(first):
        # Nothing left out: the first answer keeps its own layout (lines, bullets).
        texts += [] if answer.abstained else [answer.text]
        citations += [] if answer.abstained else answer.citations
        sentences += first
        number_of |= {(c.passage.source, c.passage.paragraph): c.number for c in citations}
    else:
        add(answer, kept)
    readings = list(answer.readings)
    timings = dict(answer.timings)
    for more, added in extra:
        readings += more.readings
        for stage in ("prefill", "generation", "total"):
            timings[stage] = timings.get(stage, 0.0) + more.timings.get(stage, 0.0)
        timings["total"] -= more.timings.get("retrieval", 0.0)
        add(more, added)
    for part, done in zip(parts, answered, strict=True):
        if not done:
            note = f"The indexed articles do not answer this part of the question: {part.text}"
            texts.append(note)
            sentences.append(Sentence(note, [], True))
    status = [PartAnswered(part.text, done) for part, done in zip(parts, answered, strict=True)]
    if citations:
        combined = replace(
            answer,
            text=" ".join(texts),
            citations=sorted(citations, key=lambda c: c.number),
            sentences=sentences,
            passages=passages,
            abstained=False,
        )
    else:
        combined = abstained_answer(answer.question, passages, timings)
        combined.model = answer.model
        combined.raw_text = answer.raw_text
    combined.readings = readings
    combined.attempts = len(readings)
    combined.parts = status
    combined.timings = timings
    return combined


def _superseded(sentence: Sentence, parts: list[Part], left_open: list[bool]) -> bool:
    """Whether ``sentence``, of the first answer, is an unsupported claim about parts that
    answer left open (and that reading on answers, or says are not answered)."""
    if sentence.supported:
        return False
    about_ = most_about(sentence, parts)
    return bool(about_) and all(left_open[i] for i in about_)


def _attempt(
    question: str,
    shown: str,
    passages: list[Passage],
    generator: ChatModel,
    templates: Templates,
    *,
    budget: int,
    max_new_tokens: int,
    temperature: float,
    stop_penalty: float,
    timings: dict[str, float],
) -> Attempt:
    """One reading of ``passages``: yields the text pieces, returns the checked Answer.

    ``shown`` is the question as the model gets it (cut to fit), ``question`` as asked.
    """
    timings = dict(timings)
    started = time.perf_counter()
    messages = answer_messages(shown, passages, templates, generator.count_tokens, budget)
    final: Generation | None = None
    for piece in generator.stream(messages, max_new_tokens, temperature, stop_penalty):
        if isinstance(piece, Generation):
            final = piece
        else:
            yield piece
    assert final is not None
    parts = [part.text for part in split_question(shown)]
    checked = check_answer(final.text, passages, question=shown, parts=parts)
    timings["prefill"] = final.prefill_seconds
    timings["generation"] = final.generation_seconds
    timings["total"] = timings.get("retrieval", 0.0) + time.perf_counter() - started
    seconds = time.perf_counter() - started
    return Answer(
        question=question,
        text=checked.text,
        citations=checked.citations,
        passages=passages,
        abstained=checked.abstained,
        sentences=checked.sentences,
        timings=timings,
        model=generator.name,
        raw_text=final.text,
        dropped_markers=checked.dropped_markers,
        readings=[Reading(shown, passages, final.text, checked.text, checked.abstained, seconds)],
    )


def standalone_question(
    previous: str, question: str, generator: ChatModel, templates: Templates
) -> str:
    """Rewrite a follow-up into a question that can be searched on its own.

    A long question is returned as it is (see :data:`REWRITE_MAX_TOKENS`); a long previous
    question is cut to that length, which keeps its subject.
    """
    require_question(question)
    if generator.count_tokens(question) > REWRITE_MAX_TOKENS:
        return question
    previous = trim_to_tokens(previous, REWRITE_MAX_TOKENS, generator.count_tokens)
    reply = generator.generate(rewrite_messages(previous, question, templates), 64).text
    rewritten = reply.strip().splitlines()[0].strip().strip('"').strip() if reply.strip() else ""
    return rewritten or question
