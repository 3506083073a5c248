"""Question sets: SQuAD, the news question set, and simple question lists.

* SQuAD v1.1 JSON (:func:`load_squad`). The file defines its own corpus: each article (one per
  title, paragraphs in order) becomes one JSONL article, so a question's gold paragraph is
  ``(file#title, paragraph number)``, exactly what a citation points at. Articles left out of
  the index (``holdout``) turn their questions into unanswerable ones.
* The news question set (:func:`load_news`): questions of four kinds over the BBC corpus, each
  with the facts a complete answer states (accepted forms of each), the gold paragraphs and
  their evidence, files that state a fact too, or why no article answers it.
* A simple question set in JSON or JSONL (:func:`load_questions`): ``question``, ``answers``
  (or ``answer``), optional ``source`` (a path, file name or glob), ``paragraph``,
  ``evidence`` (gold text) and ``answerable: false``.
"""

from __future__ import annotations

import itertools
import json
import random
import re
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from rag.errors import RagError
from rag.evaluate.metrics import contains_answer, normalize_answer, states
from rag.types import Passage

__all__ = [
    "EvalQuestion",
    "EvalSet",
    "load_dataset",
    "load_news",
    "load_questions",
    "load_squad",
    "sample",
]


@dataclass(frozen=True)
class EvalQuestion:
    """One question with what counts as right."""

    question: str
    answers: tuple[str, ...]
    """Accepted answers (for a question of several facts: every form of every fact)."""
    answerable: bool = True
    source: str | None = None
    """Gold article: its source as stored, a file name, or a glob on the source."""
    paragraph: int | None = None
    """Gold paragraph number within ``source`` (from 1)."""
    evidence: str | None = None
    """Gold text: a passage containing it (normalised) is gold."""
    id: str = ""
    kind: str = ""
    """The news set's kinds: ``single``, ``two-part``, ``cross-article``, ``unanswerable``."""
    facts: tuple[tuple[str, ...], ...] = ()
    """Every fact the answer must state, each as its accepted forms (the news set)."""
    golds: tuple[tuple[str, int | None, str | None], ...] = ()
    """Every gold paragraph: (source, paragraph number, evidence), when there are several."""
    also_in: tuple[str, ...] = ()
    """Other files that state a fact too (near-duplicate articles): citing them is right."""
    why: str | None = None
    """For an unanswerable question: why no article answers it."""
    near: str | None = None
    """For an unanswerable question: the article closest to answering it."""

    @property
    def files(self) -> list[str]:
        """Every article the question names: gold, near-copies, the nearest."""
        named = [source for source, _, _ in self.golds] or ([self.source] if self.source else [])
        return list(dict.fromkeys([*named, *self.also_in, *([self.near] if self.near else [])]))

    @property
    def has_gold(self) -> bool:
        return self.answerable and (
            self.source is not None or self.evidence is not None or bool(self.golds)
        )

    def is_gold(self, passage: Passage) -> bool:
        """Whether ``passage`` is (one of) the question's gold paragraph(s)."""
        if not self.answerable:
            return False
        if self.golds:
            return any(
                _is_gold(passage, source, paragraph, evidence)
                for source, paragraph, evidence in self.golds
            )
        return _is_gold(passage, self.source, self.paragraph, self.evidence)

    def backs(self, passage: Passage) -> bool:
        """Whether citing ``passage`` is right: a gold paragraph, a paragraph that holds an
        accepted answer, one of the gold articles, or a file that states a fact too."""
        if not self.answerable:
            return False
        if self.is_gold(passage):
            return True
        if not self.golds:  # SQuAD and simple sets: the gold paragraph or one with an answer
            return contains_answer(passage.text, self.answers)
        articles = [source for source, _, _ in self.golds]
        if any(_source_matches(passage.source, a) for a in [*articles, *self.also_in]):
            return True
        return any(states(passage.text, forms) for forms in self.facts)


def _is_gold(
    passage: Passage, source: str | None, paragraph: int | None, evidence: str | None
) -> bool:
    if source is not None:
        if not _source_matches(passage.source, source):
            return False
        if paragraph is not None:
            return passage.paragraph == paragraph
    if evidence is not None:
        return normalize_answer(evidence) in normalize_answer(passage.text)
    return source is not None


def _source_matches(source: str, wanted: str) -> bool:
    if source == wanted or fnmatch(source, wanted):
        return True
    # A question set written by hand names the file ("cnn.txt" or "cnn.txt#3"),
    # not the absolute path the index stores.
    return source.endswith("/" + wanted.lstrip("/"))


@dataclass
class EvalSet:
    """Questions and the corpus files that answer them."""

    name: str
    questions: list[EvalQuestion]
    corpus: list[Path] = field(default_factory=list)
    held_out: list[str] = field(default_factory=list)
    """SQuAD articles left out of the corpus (their questions are unanswerable)."""

    def quick(self, n: int) -> EvalSet:
        """A quick run: ``n`` questions, each kind in turn, over only the articles they name.

        Without the rest of the corpus as distractors the questions are easier: the figures
        of a quick run show that everything works, not how well.
        """
        by_kind: dict[str, list[EvalQuestion]] = {}
        for q in self.questions:
            by_kind.setdefault(q.kind, []).append(q)
        turns = itertools.zip_longest(*by_kind.values())
        questions = [q for turn in turns for q in turn if q is not None][:n]
        files = dict.fromkeys(Path(f) for q in questions for f in q.files)
        return EvalSet(f"{self.name} (quick, {len(questions)})", questions, list(files))


def load_squad(
    path: str | Path, corpus_dir: str | Path, holdout: int = 0, seed: int = 0
) -> EvalSet:
    """Load SQuAD v1.1 JSON and write its corpus as one JSONL file in ``corpus_dir``.

    ``holdout`` articles (drawn with ``seed``) are left out of the corpus; their
    questions are kept, marked unanswerable.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))["data"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RagError(f"{path} is not a SQuAD v1.1 JSON file: {exc}") from exc
    titles = [article["title"] for article in data]
    if holdout >= len(titles):
        raise RagError(f"Cannot hold out {holdout} of the {len(titles)} articles in {path}.")
    held_out = set(random.Random(seed).sample(titles, holdout)) if holdout else set()
    jsonl = (Path(corpus_dir) / f"{path.stem}.jsonl").resolve()
    lines, questions = [], []
    for article in data:
        title = article["title"]
        answerable = title not in held_out
        if answerable:
            text = "\n\n".join(p["context"] for p in article["paragraphs"])
            record = {"id": title, "title": title.replace("_", " "), "text": text}
            lines.append(json.dumps(record, ensure_ascii=False))
        for number, paragraph in enumerate(article["paragraphs"], start=1):
            for qa in paragraph["qas"]:
                questions.append(
                    EvalQuestion(
                        question=qa["question"],
                        answers=tuple(dict.fromkeys(a["text"] for a in qa["answers"])),
                        answerable=answerable,
                        source=f"{jsonl}#{title}" if answerable else None,
                        paragraph=number if answerable else None,
                        id=str(qa.get("id", "")),
                    )
                )
    jsonl.parent.mkdir(parents=True, exist_ok=True)
    content = "\n".join(lines) + "\n"
    # Rewriting an unchanged file would only cost a re-hash; skipping it keeps mtimes.
    if not jsonl.exists() or jsonl.read_text(encoding="utf-8") != content:
        jsonl.write_text(content, encoding="utf-8")
    return EvalSet(path.stem, questions, [jsonl], sorted(held_out))


def load_questions(path: str | Path) -> EvalSet:
    """Load a simple question set: a JSON list (or ``{"questions": [...]}``) or JSONL."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".jsonl":
            items = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            loaded = json.loads(text)
            items = loaded["questions"] if isinstance(loaded, dict) else loaded
    except (ValueError, KeyError) as exc:
        raise RagError(f"{path} is not a question set (JSON or JSONL): {exc}") from exc
    questions = []
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict) or not str(item.get("question", "")).strip():
            raise RagError(f"{path}: question {number} has no 'question' field.")
        given = item.get("answers", item.get("answer", []))
        answers = (given,) if isinstance(given, str) else tuple(given or ())
        answerable = bool(item.get("answerable", True))
        if answerable and not answers:
            raise RagError(f"{path}: question {number} has no 'answers' (or answerable: false).")
        paragraph = item.get("paragraph")
        questions.append(
            EvalQuestion(
                question=item["question"],
                answers=answers,
                answerable=answerable,
                source=item.get("source"),
                paragraph=int(paragraph) if paragraph is not None else None,
                evidence=item.get("evidence"),
                id=str(item.get("id", number)),
            )
        )
    return EvalSet(path.stem, questions)


def is_squad(path: str | Path) -> bool:
    """Whether ``path`` looks like SQuAD JSON (a top-level ``data`` list of articles)."""
    path = Path(path)
    if path.suffix.lower() != ".json":
        return False
    with path.open(encoding="utf-8") as handle:
        head = handle.read(4096)
    return bool(re.match(r'\s*\{\s*"(?:version"\s*:\s*"[^"]*"\s*,\s*")?data"', head))


def is_news(data: object) -> bool:
    """Whether loaded JSON is the news question set: questions with ``q`` and ``kind``."""
    items = data.get("questions") if isinstance(data, dict) else None
    return (
        isinstance(items, list)
        and bool(items)
        and all(isinstance(i, dict) and "q" in i and "kind" in i for i in items)
    )


def load_news(path: str | Path) -> EvalSet:
    """Load the news question set (``shared/data/news-qa``; its README describes the fields).

    Paths in it are relative to the folder that holds ``data/`` (``shared/``), found by walking
    up from the file; the corpus is the top folders they name (``data/bbc-news``). Give more
    articles (the sample article) with ``rag eval --corpus``.
    """
    path = Path(path)
    try:
        items = json.loads(path.read_text(encoding="utf-8"))["questions"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RagError(f"{path} is not a news question set: {exc}") from exc
    named = [
        name for item in items for key in ("source", "near") for name in _as_list(item.get(key))
    ] + [name for item in items for names in (item.get("also_in") or {}).values() for name in names]
    root = next(
        (folder for folder in path.resolve().parents if named and (folder / named[0]).exists()),
        None,
    )
    if root is None:
        raise RagError(f"{path}: the articles it names ({named[:1]}) are not found above it.")
    corpus = sorted({root / Path(*Path(name).parts[:2]) for name in named})
    questions = []
    for number, item in enumerate(items, start=1):
        sources = [str((root / s).resolve()) for s in _as_list(item.get("source"))]
        paragraphs = _as_list(item.get("paragraph"))
        evidences = _as_list(item.get("evidence"))
        alt = item.get("alt") or {}
        wanted = item.get("all_of") or item.get("any_of") or []
        if item.get("all_of"):
            facts = tuple((fact, *alt.get(fact, ())) for fact in wanted)
        else:  # any one of the forms states the single fact
            facts = (tuple(dict.fromkeys([*wanted, *(f for a in wanted for f in alt.get(a, ()))])),)
        golds = tuple(
            (
                sources[min(i, len(sources) - 1)] if sources else "",
                int(paragraphs[i]) if i < len(paragraphs) else None,
                evidences[i] if i < len(evidences) else None,
            )
            for i in range(max(len(paragraphs), len(evidences)))
        )
        also = tuple(
            str((root / f).resolve()) for fs in (item.get("also_in") or {}).values() for f in fs
        )
        answerable = bool(item.get("answerable", True))
        questions.append(
            EvalQuestion(
                question=item["q"],
                answers=tuple(f for forms in facts for f in forms) if answerable else (),
                answerable=answerable,
                source=sources[0] if sources else None,
                paragraph=int(paragraphs[0]) if paragraphs else None,
                evidence=evidences[0] if evidences else None,
                id=str(item.get("id", number)),
                kind=str(item["kind"]),
                facts=facts if answerable else (),
                golds=golds if answerable else (),
                also_in=also,
                why=item.get("why"),
                near=str((root / item["near"]).resolve()) if item.get("near") else None,
            )
        )
    return EvalSet(path.stem, questions, corpus)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def load_dataset(
    path: str | Path, corpus_dir: str | Path, holdout: int = 0, seed: int = 0
) -> EvalSet:
    """SQuAD JSON, the news question set, or a simple question set, told apart by content."""
    path = Path(path)
    if not path.is_file():
        raise RagError(f"No question set at {path}.")
    if is_squad(path):
        return load_squad(path, corpus_dir, holdout, seed)
    if holdout:
        raise RagError("--holdout works with SQuAD files only (they define their own corpus).")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            data = None
        if is_news(data):
            return load_news(path)
    return load_questions(path)


def sample(questions: list[EvalQuestion], n: int | None, seed: int = 0) -> list[EvalQuestion]:
    """``n`` questions drawn with ``seed`` (the same set every run); all when ``n`` is None."""
    if n is None or n >= len(questions):
        return list(questions)
    return random.Random(seed).sample(questions, n)
