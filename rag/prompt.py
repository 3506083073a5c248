"""Prompts: templates loaded from files, passages numbered [1]..[k], trimmed to fit.

The templates live in ``prompts/`` (shipped as ``rag.prompts``) so that people
can read and change how the model is instructed without touching code; the
``prompts_dir`` setting points at an edited copy.

Article text and the question are data, not instructions: before they go into a
prompt, bracketed numbers in articles become plain parentheses (so a paragraph
cannot show the model a citation marker to copy) and text shaped like a chat
model's control tokens is defused (so a paragraph cannot close the user's turn
and open a system turn of its own). A question too long for the prompt budget is
cut, with a warning, so the passages keep their room.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from rag.cite import sanitize_passage_text
from rag.errors import EmptyQuestion, RagError
from rag.types import Passage

TEMPLATE_FILES = ("system", "user", "passage", "rewrite", "examples")

log = logging.getLogger(__name__)

# The share of the prompt budget left after the instructions and worked examples that a question
# may take; the passages, which answers are made from, keep the rest. 2048 tokens leave about 400
# for the question, far beyond a real one (10-40 tokens): anything longer is pasted text.
QUESTION_SHARE = 0.25
MIN_QUESTION_TOKENS = 32

# Chat models' control tokens are ordinary strings in text: a tokenizer turns "<|im_end|>" in a
# paragraph into the real end-of-turn token (checked with the Qwen2.5 and SmolLM2 tokenizers), so
# an article could end the user's turn and write a system turn. Matched by their shapes, so any
# model's are caught: <|im_start|>, <|eot_id|>, <|endoftext|>; <s>, </s>, <start_of_turn>,
# <tool_call>, <repo_name> (bare tags of lowercase letters and "_", as chat and code models use).
_CONTROL_TOKEN_RE = re.compile(r"<(\|[^<>|\n]{1,64}\||/?[a-z][a-z_]{0,40})>")


@dataclass(frozen=True)
class Example:
    question: str
    passages: str
    answer: str


@dataclass(frozen=True)
class Templates:
    system: str
    """System message: the rules."""
    user: str
    """User message with ``{passages}`` and ``{question}``."""
    passage: str
    """One passage with ``{number}``, ``{title}``, ``{date}`` and ``{text}``."""
    rewrite: str
    """Turns a chat follow-up into a standalone question: ``{previous}``, ``{question}``."""
    examples: str
    """Worked examples (``## question`` / ``## passages`` / ``## answer`` sections)."""

    def parsed_examples(self) -> list[Example]:
        """The worked examples, in file order."""
        examples: list[Example] = []
        current: dict[str, list[str]] = {}
        section = ""
        for line in self.examples.splitlines():
            if line.startswith("# ") or line == "#":
                continue
            if line.startswith("## "):
                section = line[3:].strip().lower()
                if section == "question" and current:
                    examples.append(_example(current))
                    current = {}
                current[section] = []
            elif section:
                current[section].append(line)
        if current:
            examples.append(_example(current))
        return examples


def _example(sections: dict[str, list[str]]) -> Example:
    try:
        return Example(**{k: "\n".join(v).strip() for k, v in sections.items()})
    except TypeError as exc:
        raise RagError(
            "Each worked example in examples.txt needs exactly a '## question', a "
            f"'## passages' and an '## answer' section ({exc})."
        ) from exc


def load_templates(folder: Path | None = None) -> Templates:
    """Read the templates from ``folder`` or, by default, from the packaged ``rag.prompts``."""
    texts = {}
    for name in TEMPLATE_FILES:
        try:
            if folder is None:
                text = resources.files("rag.prompts").joinpath(f"{name}.txt").read_text("utf-8")
            else:
                text = (Path(folder) / f"{name}.txt").read_text("utf-8")
        except FileNotFoundError as exc:
            where = folder or "the installed package"
            raise RagError(f"Prompt template {name}.txt is missing from {where}.") from exc
        texts[name] = text.strip("\n")
    return Templates(**texts)


def require_question(question: str) -> None:
    """:class:`EmptyQuestion` unless ``question`` has something to search for."""
    if not question.strip():
        raise EmptyQuestion("The question is empty.")


def defuse_control_tokens(text: str) -> str:
    """Text shaped like a chat control token, ``<|im_end|>``, becomes ``‹|im_end|›``.

    The look stays for a reader, but no tokenizer reads it as its special token any more.
    """
    return _CONTROL_TOKEN_RE.sub(lambda m: f"‹{m.group(1)}›", text)


def trim_to_tokens(text: str, limit: int, count_tokens: Callable[[str], int]) -> str:
    """The longest word-boundary prefix of ``text`` within ``limit`` tokens, marked with "…".

    Text whose first word alone is too long (Chinese or Japanese, written without spaces, or a
    pasted run of symbols) is cut inside that word instead of to nothing.
    """
    if count_tokens(text) <= limit:
        return text
    words = text.split(" ")
    low, high = 0, len(words)
    while low < high:  # binary search on the number of words kept
        middle = (low + high + 1) // 2
        if count_tokens(" ".join(words[:middle]) + " …") <= limit:
            low = middle
        else:
            high = middle - 1
    if low > 0:
        return " ".join(words[:low]) + " …"
    first = words[0]
    low, high = 0, len(first)
    while low < high:  # binary search on the number of characters kept
        middle = (low + high + 1) // 2
        if count_tokens(first[:middle] + "…") <= limit:
            low = middle
        else:
            high = middle - 1
    return first[:low] + "…"


def share_budget(sizes: list[int], budget: int) -> list[int]:
    """Per-passage token caps: short passages keep their length, long ones share the rest."""
    caps = list(sizes)
    if sum(sizes) <= budget:
        return caps
    order = sorted(range(len(sizes)), key=lambda i: sizes[i])
    remaining, left = budget, len(sizes)
    for i in order:
        fair = remaining // left
        caps[i] = min(sizes[i], fair)
        remaining -= caps[i]
        left -= 1
    return caps


def format_passages(
    passages: list[Passage],
    templates: Templates,
    count_tokens: Callable[[str], int],
    budget: int,
) -> str:
    """The numbered passage list, each passage's text cut so the whole fits ``budget`` tokens.

    Article text and titles are sanitised first so that a paragraph containing "[7]" cannot
    look like a citation marker to the model, and "<|im_end|>" cannot end the user's turn.
    """
    texts = [_as_data(p.text) for p in passages]
    titles = [_as_data(p.title) for p in passages]
    headers = [
        templates.passage.format(
            number=i,
            title=title,
            date=f" ({p.published[:10]})" if p.published else "",
            text="",
        )
        for i, (p, title) in enumerate(zip(passages, titles, strict=True), start=1)
    ]
    overhead = sum(count_tokens(h) + 2 for h in headers)
    caps = share_budget([count_tokens(t) for t in texts], max(budget - overhead, 0))
    blocks = [
        templates.passage.format(
            number=i,
            title=title,
            date=f" ({p.published[:10]})" if p.published else "",
            text=trim_to_tokens(text, max(cap, 1), count_tokens),
        )
        for i, (p, title, text, cap) in enumerate(
            zip(passages, titles, texts, caps, strict=True), start=1
        )
    ]
    return "\n\n".join(blocks)


def _as_data(text: str) -> str:
    """Article text as it may appear in a prompt: no citation markers, no control tokens."""
    return defuse_control_tokens(sanitize_passage_text(text))


def _instructions(templates: Templates) -> list[dict[str, str]]:
    """The system message and the worked examples, as earlier turns of the conversation."""
    messages = [{"role": "system", "content": templates.system}]
    for example in templates.parsed_examples():
        shown = templates.user.format(passages=example.passages, question=example.question)
        messages += [
            {"role": "user", "content": shown},
            {"role": "assistant", "content": example.answer},
        ]
    return messages


def _fixed_tokens(
    messages: list[dict[str, str]], skeleton: str, count_tokens: Callable[[str], int]
) -> int:
    # 8 per message: the chat template's role markers and line breaks around each one.
    return sum(count_tokens(m["content"]) + 8 for m in messages) + count_tokens(skeleton) + 8


def fit_question(
    question: str,
    templates: Templates,
    count_tokens: Callable[[str], int],
    max_prompt_tokens: int,
) -> str:
    """The question as the model gets it: control tokens defused, cut to its share of the budget.

    A question longer than :data:`QUESTION_SHARE` of what the instructions leave of
    ``max_prompt_tokens`` is cut at a word boundary, with a warning (logged, so the command
    line shows it too): otherwise it would crowd the passages out of the prompt, and take
    minutes to read or overflow the model's context.
    """
    question = defuse_control_tokens(question)
    fixed = _fixed_tokens(
        _instructions(templates), templates.user.format(passages="", question=""), count_tokens
    )
    limit = max(int((max_prompt_tokens - fixed) * QUESTION_SHARE), MIN_QUESTION_TOKENS)
    tokens = count_tokens(question)
    if tokens <= limit:
        return question
    trimmed = trim_to_tokens(question, limit, count_tokens)
    log.warning(
        "The question is too long for the prompt (%s tokens, %s characters): only its first %s "
        "tokens are given to the model, so that the passages keep their room (max_prompt_tokens "
        "%s).",
        f"{tokens:,}",
        f"{len(question):,}",
        f"{limit:,}",
        f"{max_prompt_tokens:,}",
    )
    return trimmed


def answer_messages(
    question: str,
    passages: list[Passage],
    templates: Templates,
    count_tokens: Callable[[str], int],
    max_prompt_tokens: int,
) -> list[dict[str, str]]:
    """Chat messages asking the model to answer ``question`` from ``passages``.

    The worked examples come first, as earlier turns of the conversation. The question goes
    through :func:`fit_question` (a no-op for one that already did).
    """
    question = fit_question(question, templates, count_tokens, max_prompt_tokens)
    messages = _instructions(templates)
    skeleton = templates.user.format(passages="", question=question)
    fixed = _fixed_tokens(messages, skeleton, count_tokens)
    passage_text = format_passages(
        passages, templates, count_tokens, max(max_prompt_tokens - fixed, 64)
    )
    user = templates.user.format(passages=passage_text, question=question)
    return [*messages, {"role": "user", "content": user}]


def rewrite_messages(previous: str, question: str, templates: Templates) -> list[dict[str, str]]:
    """Chat messages asking the model to make a follow-up question standalone."""
    content = templates.rewrite.format(
        previous=defuse_control_tokens(previous), question=defuse_control_tokens(question)
    )
    return [{"role": "user", "content": content}]
