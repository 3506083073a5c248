"""Prompts: templates loaded from files, passages numbered [1]..[k], trimmed to fit.

The templates live in ``prompts/`` (shipped as ``rag.prompts``) so that people
can read and change how the model is instructed without touching code; the
``prompts_dir`` setting points at an edited copy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from rag.cite import sanitize_passage_text
from rag.errors import RagError
from rag.types import Passage

TEMPLATE_FILES = ("system", "user", "passage", "rewrite", "examples")


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


def trim_to_tokens(text: str, limit: int, count_tokens: Callable[[str], int]) -> str:
    """The longest word-boundary prefix of ``text`` within ``limit`` tokens, marked with "…"."""
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
    return " ".join(words[:low]) + " …"


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

    Article text is sanitised first so that a paragraph containing "[7]" cannot
    look like a citation marker to the model.
    """
    texts = [sanitize_passage_text(p.text) for p in passages]
    headers = [
        templates.passage.format(
            number=i,
            title=p.title,
            date=f" ({p.published[:10]})" if p.published else "",
            text="",
        )
        for i, p in enumerate(passages, start=1)
    ]
    overhead = sum(count_tokens(h) + 2 for h in headers)
    caps = share_budget([count_tokens(t) for t in texts], max(budget - overhead, 0))
    blocks = [
        templates.passage.format(
            number=i,
            title=p.title,
            date=f" ({p.published[:10]})" if p.published else "",
            text=trim_to_tokens(text, max(cap, 1), count_tokens),
        )
        for i, (p, text, cap) in enumerate(zip(passages, texts, caps, strict=True), start=1)
    ]
    return "\n\n".join(blocks)


def answer_messages(
    question: str,
    passages: list[Passage],
    templates: Templates,
    count_tokens: Callable[[str], int],
    max_prompt_tokens: int,
) -> list[dict[str, str]]:
    """Chat messages asking the model to answer ``question`` from ``passages``.

    The worked examples come first, as earlier turns of the conversation.
    """
    messages = [{"role": "system", "content": templates.system}]
    for example in templates.parsed_examples():
        shown = templates.user.format(passages=example.passages, question=example.question)
        messages += [
            {"role": "user", "content": shown},
            {"role": "assistant", "content": example.answer},
        ]
    skeleton = templates.user.format(passages="", question=question)
    fixed = sum(count_tokens(m["content"]) + 8 for m in messages) + count_tokens(skeleton) + 8
    passage_text = format_passages(
        passages, templates, count_tokens, max(max_prompt_tokens - fixed, 64)
    )
    user = templates.user.format(passages=passage_text, question=question)
    return [*messages, {"role": "user", "content": user}]


def rewrite_messages(previous: str, question: str, templates: Templates) -> list[dict[str, str]]:
    """Chat messages asking the model to make a follow-up question standalone."""
    return [
        {"role": "user", "content": templates.rewrite.format(previous=previous, question=question)}
    ]
