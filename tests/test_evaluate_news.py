"""Scoring the news question set: facts stated word-bounded, completeness, citations, declines.

The set itself is read from ../shared/data/news-qa; the scoring is checked on hand-made
answers, so that each rule (a figure inside a longer one is not stated, a near-duplicate
article backs a citation, a partial answer that says what is missing) shows on its own.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SHARED

from rag.evaluate import (
    EvalQuestion,
    EvalRecord,
    kind_table,
    load_dataset,
    load_news,
    states,
    summarize,
)
from rag.evaluate.run import _judge_answer
from rag.types import Answer, Citation, Passage, Reading, Sentence

NEWS = SHARED / "data" / "news-qa" / "news-tune.json"


@pytest.mark.parametrize(
    ("text", "forms", "expected"),
    [
        ("It stops about 75% of spam [1].", ["75%"], True),
        ("It stops about 175% of spam.", ["75%"], False),
        ("The fund holds 200,000 shares.", ["200"], False),
        ("The fund holds 200.5 shares.", ["200"], False),
        ("The fund holds 200 shares.", ["200"], True),
        ("It costs $10 an hour.", ["$1"], False),
        ("It costs $1 (53p) an hour.", ["$1"], True),
        ("Up to $120m (£64m) went missing.", ["$120m"], True),
        ("They worked in HARBIN.", ["Harbin"], True),
        ("They worked in Harbinsk.", ["Harbin"], False),
        ("She ran 4:14.74 in Glasgow.", ["four minutes 14.74 seconds", "4:14.74"], True),
        ("Three-quarters of spam.", ["three-quarters"], True),
        ("Beyoncé sang.", ["Beyonce"], True),
        ("He said “no”.", ['"no"'], True),
    ],
)
def test_a_fact_is_stated_only_as_whole_words(text: str, forms: list[str], expected: bool) -> None:
    assert states(text, forms) is expected


def passage(source: str, paragraph: int, text: str) -> Passage:
    return Passage(text=text, title="t", source=source, paragraph=paragraph)


def answer(sentences: list[tuple[str, list[int]]], cited: list[Passage], **kw: object) -> Answer:
    text = " ".join(s for s, _ in sentences)
    return Answer(
        question="q",
        text=text,
        citations=[
            Citation(number=i, passage=p, supported=True) for i, p in enumerate(cited, start=1)
        ],
        passages=cited,
        sentences=[Sentence(s, numbers, True) for s, numbers in sentences],
        **kw,  # type: ignore[arg-type]
    )


TWO_PART = EvalQuestion(
    question="How much went missing, and in which city did the pair work?",
    answers=("$120m", "£64m", "Harbin"),
    kind="two-part",
    facts=(("$120m", "£64m"), ("Harbin",)),
    golds=(
        ("/bbc/business/498.txt", 1, "funds worth up to $120m"),
        ("/bbc/business/498.txt", 2, None),
    ),
    source="/bbc/business/498.txt",
    paragraph=1,
    also_in=("/bbc/business/499.txt",),
)
GOLD1 = passage("/bbc/business/498.txt", 1, "Funds worth up to $120m (£64m) went missing.")
GOLD2 = passage("/bbc/business/498.txt", 2, "The pair both worked in the city of Harbin.")
COPY = passage("/bbc/business/499.txt", 4, "A copy of the story: $120m went missing.")
ELSEWHERE = passage("/bbc/tech/001.txt", 1, "A story about phones.")


def judged(q: EvalQuestion, a: Answer) -> EvalRecord:
    record = EvalRecord(q.question, list(q.answers), q.answerable, None, [], [], None, 0.0)
    record.kind = q.kind
    _judge_answer(record, q, a, 1.0)
    return record


def test_completeness_needs_every_fact_and_each_fact_its_citation() -> None:
    whole = judged(
        TWO_PART,
        answer(
            [("Up to $120m went missing [1].", [1]), ("The pair worked in Harbin [2].", [2])],
            [GOLD1, GOLD2],
        ),
    )
    assert whole.facts_stated == [True, True] and whole.facts_cited == [True, True]
    half = judged(
        TWO_PART,
        answer(
            [
                ("Up to $120m went missing [1].", [1]),
                ("The articles do not say where they worked.", []),
            ],
            [GOLD1],
        ),
    )
    assert half.facts_stated == [True, False] and half.said_missing
    # A fact stated in a sentence citing a paragraph that does not state it is not cited.
    wrong = judged(TWO_PART, answer([("They worked in Harbin [1].", [1])], [ELSEWHERE]))
    assert wrong.facts_stated == [False, True] and wrong.facts_cited == [False]
    metrics = summarize([whole, half, wrong])
    assert metrics["complete_two_part"] == pytest.approx(1 / 3)
    assert metrics["partial"] == pytest.approx(2 / 3)
    assert metrics["partial_said"] == pytest.approx(1 / 2)
    assert metrics["fact_citation"] == pytest.approx(3 / 4)


def test_a_citation_is_backed_by_the_evidence_its_article_or_a_near_copy() -> None:
    record = judged(
        TWO_PART,
        answer(
            [("Up to $120m went missing [1][2].", [1, 2]), ("They worked in Harbin [3].", [3])],
            [COPY, GOLD2, ELSEWHERE],
        ),
    )
    assert [c["backs"] for c in record.citations] == [True, True, False]
    assert summarize([record])["citation_precision"] == pytest.approx(2 / 3)


def test_an_unanswerable_question_is_declined_or_its_gap_named() -> None:
    q = EvalQuestion(
        question="How much profit did T-Mobile USA contribute?",
        answers=(),
        answerable=False,
        kind="unanswerable",
    )
    declined = judged(
        q, answer([("The indexed articles do not answer this question.", [])], [], abstained=True)
    )
    named = judged(
        q,
        answer(
            [
                ("The group made a net profit of 1.4bn euros [1].", [1]),
                ("The articles do not say how much T-Mobile USA contributed.", []),
            ],
            [GOLD1],
        ),
    )
    answered = judged(q, answer([("T-Mobile USA contributed 1.4bn euros [1].", [1])], [GOLD1]))
    metrics = summarize([declined, named, answered])
    assert metrics["declined_unanswerable"] == pytest.approx(2 / 3)
    assert metrics["citation_precision"] == 0.0  # nothing backs an answer no article gives
    (row,) = kind_table(metrics)
    assert row["kind"] == "unanswerable" and row["n"] == 3


def test_the_news_set_loads_with_its_kinds_facts_and_corpus() -> None:
    if not NEWS.exists():
        pytest.skip("../shared/data/news-qa is not beside the checkout")
    evalset = load_dataset(NEWS, NEWS.parent / "unused")
    assert evalset.questions == load_news(NEWS).questions
    kinds = {q.kind for q in evalset.questions}
    assert kinds == {"single", "two-part", "cross-article", "unanswerable"}
    assert [p.name for p in evalset.corpus] == ["bbc-news"]
    data = json.loads(NEWS.read_text())["questions"]
    for item, q in zip(data, evalset.questions, strict=True):
        assert q.question == item["q"] and q.answerable == item["answerable"]
        if not q.answerable:
            assert not q.facts and q.why
            continue
        assert Path(q.source or "").is_file()
        if item["kind"] == "single":
            assert len(q.facts) == 1 and set(item["any_of"]) <= set(q.facts[0])
        else:
            assert [forms[0] for forms in q.facts] == item["all_of"]
        assert len(q.golds) == len(
            item["paragraph"] if isinstance(item["paragraph"], list) else [1]
        )
        for also in q.also_in:
            assert Path(also).is_file()


def reading(raw: str, text: str, abstained: bool = False) -> Reading:
    return Reading(question="q", passages=[GOLD1], raw_text=raw, text=text, abstained=abstained)


@pytest.mark.parametrize(
    ("raw", "checked", "abstained", "verdict"),
    [
        (
            "Up to $120m went missing in Harbin [1].",
            "Up to $120m went missing in Harbin [1].",
            False,
            "kept right",
        ),
        (
            "Up to $120m went missing in Harbin [1].",
            "Up to $120m went missing [1].",
            False,
            "dropped right",
        ),
        ("Up to $120m went missing in Harbin [1].", "", True, "dropped right"),
        ("Nothing went missing in Beijing [1].", "", True, "caught wrong"),
        (
            "Nothing went missing in Beijing [1].",
            "Nothing went missing in Beijing [1].",
            False,
            "kept wrong",
        ),
        ("Up to $120m went missing [1].", "Up to $120m went missing [1].", False, None),
        ("The indexed articles do not answer this question.", "", True, None),
    ],
)
def test_the_check_is_judged_on_the_models_own_answers(
    raw: str, checked: str, abstained: bool, verdict: str | None
) -> None:
    """Right first readings (every fact) should be kept, wrong ones (no fact) caught; partial
    ones and the model's own refusals say nothing about the check."""
    record = judged(TWO_PART, answer([], [], readings=[reading(raw, checked, abstained)]))
    assert record.check == verdict


def test_check_accuracy_over_right_and_wrong_answers() -> None:
    unanswerable = EvalQuestion(question="q", answers=(), answerable=False, kind="unanswerable")
    records = [
        judged(
            TWO_PART,
            answer([], [], readings=[reading("$120m, in Harbin [1].", "$120m, in Harbin [1].")]),
        ),
        judged(unanswerable, answer([], [], readings=[reading("It made 40 staff [1].", "", True)])),
        judged(
            unanswerable,
            answer([], [], readings=[reading("It made 40 staff [1].", "It made 40 staff [1].")]),
        ),
    ]
    metrics = summarize(records)
    assert metrics["check_kept_right"] == 1.0 and metrics["n_check_right"] == 1
    assert metrics["check_caught_wrong"] == pytest.approx(1 / 2)
    assert metrics["n_check_wrong"] == 2


def test_a_quick_run_takes_each_kind_in_turn_over_the_articles_it_names() -> None:
    if not NEWS.exists():
        pytest.skip("../shared/data/news-qa is not beside the checkout")
    full = load_news(NEWS)
    quick = full.quick(6)
    assert [q.kind for q in quick.questions[:4]] == list(
        dict.fromkeys(q.kind for q in full.questions)
    )
    assert len(quick.questions) == 6
    named = {Path(f) for q in quick.questions for f in q.files}
    assert set(quick.corpus) == named and all(p.is_file() for p in quick.corpus)
