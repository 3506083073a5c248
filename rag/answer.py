"""From passages to a checked, cited answer: prompt → model → citations.

The model's raw text streams out as it is written; the final :class:`Answer`
carries the checked text, in which citations are renumbered, markers the
passages do not back are gone, and unsupported sentences are flagged.
"""

from __future__ import annotations

import collections.abc
import re
import time
from collections.abc import Iterable, Iterator

from rag.cite import ABSTAIN_TEXT, check_answer
from rag.generate import ChatModel, Generation
from rag.generate.base import last_of
from rag.prompt import (
    Templates,
    answer_messages,
    fit_question,
    require_question,
    rewrite_messages,
    trim_to_tokens,
)
from rag.settings import default
from rag.types import Answer, Passage, Retry

# One reading of the passages: yields the model's text pieces, returns the checked Answer.
Attempt = collections.abc.Generator[str, None, Answer]

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


def final_answer(stream: Iterable[str | Retry | Answer]) -> Answer:
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
    timings: dict[str, float] | None = None,
) -> Iterator[str | Retry | Answer]:
    """Yield the model's text pieces as generated, then the checked :class:`Answer`.

    With ``best_first``, the model first reads the best passage alone; only if that answer is
    declined or unsupported is it asked again with all the passages, announced by a
    :class:`Retry` in the stream (the pieces before it are withdrawn). A small model given
    distractors beside the paragraph that answers too often answers from a distractor (the
    effect on SQuAD is in BENCHMARKS.md).

    An empty question is a :class:`~rag.errors.EmptyQuestion`. One too long for the prompt
    budget is cut (with a warning, see :func:`rag.prompt.fit_question`); the answer is then
    checked against the part the model read, while ``Answer.question`` keeps the question as
    asked.
    """
    require_question(question)
    timings = dict(timings or {})
    if not passages:
        timings["total"] = timings.get("retrieval", 0.0)
        yield abstained_answer(question, passages, timings)
        return
    budget = min(max_prompt_tokens, generator.context_length - max_new_tokens)
    # The support check excuses words that restate the question, so it must see the question
    # the model saw: 20,000 characters of it would excuse almost any sentence. Cut once, so a
    # second reading does not warn again.
    shown = fit_question(question, templates, generator.count_tokens, budget)

    def read(given: list[Passage]) -> Attempt:
        return _attempt(
            question,
            shown,
            given,
            generator,
            templates,
            budget=budget,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            stop_penalty=stop_penalty,
            timings=timings,
        )

    if not best_first or len(passages) == 1:
        yield (yield from read(passages))
        return
    first = yield from read(passages[:1])
    if not first.abstained:
        yield first
        return
    yield Retry(passages=len(passages), withdrawn=first.raw_text)
    second = yield from read(passages)
    for stage in ("prefill", "generation"):
        second.timings[stage] += first.timings[stage]
    second.timings["total"] += first.timings["total"] - timings.get("retrieval", 0.0)
    second.attempts = 2
    yield second


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
    checked = check_answer(final.text, passages, question=shown)
    timings["prefill"] = final.prefill_seconds
    timings["generation"] = final.generation_seconds
    timings["total"] = timings.get("retrieval", 0.0) + time.perf_counter() - started
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
