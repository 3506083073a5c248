"""Tests for rag.evaluate and `rag eval`: metrics by hand, loaders, and real runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rag import RAG
from rag.cli import app
from rag.evaluate import (
    EvalQuestion,
    EvalRecord,
    contains_answer,
    evaluate,
    exact_match,
    f1_score,
    load_dataset,
    load_questions,
    load_squad,
    mean_reciprocal_rank,
    normalize_answer,
    percentile,
    recall_at,
    summarize,
)
from rag.types import Passage

runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})


# --- metrics, against hand-computed values -------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Cat", "cat"),  # case and article
        ("a  cat,\tan owl!", "cat owl"),  # articles, punctuation, whitespace
        ("  Denver   Broncos. ", "denver broncos"),
        ("“Theatre” isn't", "theatre isnt"),  # curly quotes and apostrophes go
        ("the", ""),
        ("Anthem", "anthem"),  # "an" only as a word
    ],
)
def test_normalize_answer(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


def test_exact_match_takes_the_best_gold_answer() -> None:
    assert exact_match("The Denver Broncos!", ["Broncos", "Denver Broncos"]) == 1.0
    assert exact_match("Denver", ["Denver Broncos"]) == 0.0


def test_f1_by_hand() -> None:
    # prediction: cat sat on mat (4 tokens); gold: cat on mat (3); common 3.
    # precision 3/4, recall 3/3 -> F1 = 2 * 0.75 * 1 / 1.75 = 6/7.
    assert f1_score("the cat sat on the mat", ["a cat on mat"]) == pytest.approx(6 / 7)
    # best over gold answers; no overlap is 0.
    assert f1_score("cat", ["dog", "cat"]) == 1.0
    assert f1_score("cat", ["dog"]) == 0.0
    # repeated tokens: common = min(2, 1) + min(1, 2) = 2 of 3 on each side.
    assert f1_score("b b c", ["b c c"]) == pytest.approx(2 / 3)


def test_contains_answer_matches_whole_normalised_words() -> None:
    answer = "In 2019, Microsoft invested $1 billion in OpenAI [1]."
    assert contains_answer(answer, ["$1 billion"])
    assert contains_answer(answer, ["the Microsoft"])
    assert not contains_answer(answer, ["$10 billion"])
    assert not contains_answer("Microsofts", ["Microsoft"])
    assert contains_answer("Luther's writings were quoted [1].", ["Luther"])
    assert contains_answer("Luther’s writings", ["Luther"])
    assert contains_answer("Martin Luther's", ["Martin Luther's"])
    assert not contains_answer("the Lutherans' writings", ["Luther"])


def test_recall_mrr_and_percentiles_by_hand() -> None:
    ranks = [1, 3, None, 2]
    assert recall_at(ranks, 1) == 0.25
    assert recall_at(ranks, 3) == 0.75
    assert mean_reciprocal_rank(ranks) == pytest.approx((1 + 1 / 3 + 0 + 1 / 2) / 4)
    assert percentile([4, 1, 3, 2], 50) == 2.5
    assert percentile([1, 2, 3, 4, 5], 95) == pytest.approx(4.8)
    assert math.isnan(recall_at([], 5)) and math.isnan(percentile([], 50))


def _record(**fields) -> EvalRecord:
    base = dict(
        question="q",
        answers=["x"],
        answerable=True,
        gold="g",
        retrieved=[],
        retrieved_ids=[],
        gold_rank=1,
        retrieval_seconds=0.01,
    )
    return EvalRecord(**(base | fields))


def test_answer_and_citation_metrics_by_hand() -> None:
    records = [
        # right, cites gold and one other (unsupported) paragraph
        _record(answer="x [1]", abstained=False, exact_match=1.0, f1=1.0, contains=True,
                cites_gold=True, citations=[{}, {}], good_citations=1, unsupported_citations=1,
                answer_seconds=2.0),
        # wrongly declined
        _record(answer="declined", abstained=True, exact_match=0.0, f1=0.0, contains=False,
                cites_gold=False, citations=[], good_citations=0, unsupported_citations=0,
                answer_seconds=4.0, gold_rank=None),
        # unanswerable, rightly declined
        _record(answerable=False, gold=None, gold_rank=None, answer="declined", abstained=True,
                citations=[], good_citations=0, unsupported_citations=0, answer_seconds=6.0),
    ]  # fmt: skip
    metrics = summarize(records, records[:2])
    assert metrics["n"] == 3 and metrics["n_unanswerable"] == 1
    assert metrics["recall@1"] == 0.5 and metrics["mrr"] == 0.5
    assert metrics["exact_match"] == 0.5 and metrics["contains"] == 0.5
    assert metrics["citation_precision"] == 0.5  # 1 good of 2
    assert metrics["citation_recall"] == 0.5  # 1 of 2 answerable cites gold
    assert metrics["unsupported_citation_rate"] == 0.5
    assert metrics["declined_unanswerable"] == 1.0 and metrics["false_decline"] == 0.5
    assert metrics["answer_p50_s"] == 4.0


# --- loaders -------------------------------------------------------------------------


def test_load_questions_jsonl_and_json(tmp_path: Path) -> None:
    items = [
        {"question": "How much?", "answers": ["$1 billion"], "source": "cnn.txt", "paragraph": 10},
        {"question": "Who won?", "answer": "Argentina", "evidence": "Argentina won"},
        {"question": "Who is the king of Mars?", "answerable": False},
    ]
    jsonl = tmp_path / "q.jsonl"
    jsonl.write_text("\n".join(json.dumps(i) for i in items) + "\n")
    as_json = tmp_path / "q.json"
    as_json.write_text(json.dumps({"questions": items}))
    for path in (jsonl, as_json):
        questions = load_dataset(path, tmp_path / "corpus").questions
        assert [q.answers for q in questions] == [("$1 billion",), ("Argentina",), ()]
        assert [q.answerable for q in questions] == [True, True, False]
    q = questions[0]
    assert q.is_gold(Passage(text="t", title="", source="/data/cnn.txt", paragraph=10))
    assert not q.is_gold(Passage(text="t", title="", source="/data/cnn.txt", paragraph=9))
    argentina = Passage(text="Yes, ARGENTINA won.", title="", source="b", paragraph=1)
    assert questions[1].is_gold(argentina)


def test_load_questions_names_the_bad_item(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"question": "ok?", "answers": ["y"]}) + "\n" + '{"answers": []}\n')
    with pytest.raises(Exception, match="question 2"):
        load_questions(path)


def test_load_squad_holds_out_articles(tmp_path: Path, small_squad: Path) -> None:
    full = load_squad(small_squad, tmp_path / "a")
    assert all(q.answerable for q in full.questions) and not full.held_out
    held = load_squad(small_squad, tmp_path / "b", holdout=1, seed=3)
    assert len(held.held_out) == 1
    lines = [json.loads(line) for line in held.corpus[0].read_text().splitlines()]
    assert held.held_out[0] not in [line["id"] for line in lines] and len(lines) == 2
    unanswerable = [q for q in held.questions if not q.answerable]
    assert unanswerable and all(q.source is None for q in unanswerable)
    assert len(held.questions) == len(full.questions)


# --- real runs (real embedder, FAISS, SQLite) ---------------------------------------


def test_evaluate_retrieval_and_recount_from_records(tmp_path: Path, small_squad: Path) -> None:
    squad = load_squad(small_squad, tmp_path / "corpus", holdout=1)
    with RAG(tmp_path / "index", progress=False) as rag:
        result = evaluate(rag, squad, retrieval_only=True)
    metrics = result.metrics
    assert metrics["n"] == len(squad.questions)
    assert metrics["recall@5"] > 0.8  # a 10-paragraph index: the gold is nearly always there
    out = tmp_path / "records.jsonl"
    result.to_jsonl(out)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    gold = [r for r in records if r["gold"] is not None]
    recount = sum(r["gold_rank"] is not None and r["gold_rank"] <= 5 for r in gold) / len(gold)
    assert recount == metrics["recall@5"]
    assert all(r["retrieved"] and isinstance(r["retrieved"][0], str) for r in records)
    frame = result.dataframe()
    assert len(frame) == len(records) and "gold_rank" in frame.columns


def test_cli_eval_json_and_out(tmp_path: Path, small_squad: Path) -> None:
    index, out = str(tmp_path / "e"), tmp_path / "records.jsonl"
    args = ["eval", str(small_squad), "--index", index, "--retrieval-only", "--no-progress"]
    result = runner.invoke(app, [*args, "--json", "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert {"recall@1", "recall@5", "mrr", "n"} <= set(metrics)
    assert len(out.read_text().splitlines()) == metrics["n"]
    table = runner.invoke(app, args, catch_exceptions=False)
    assert "recall@5" in table.stdout and "%" in table.stdout


def test_cli_eval_answers_with_the_tiny_model(tmp_path: Path, small_squad: Path) -> None:
    args = ["eval", str(small_squad), "--index", str(tmp_path / "e"), "--no-progress"]
    args += ["--model", "smollm2-135m", "--max-new-tokens", "24", "--limit", "3", "--holdout", "1"]
    result = runner.invoke(app, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    for key in ("exact_match", "f1", "contains", "citation_precision", "citation_recall"):
        assert key in metrics
    assert metrics["n"] == 3 and metrics["answer_p50_s"] > 0


def test_cli_eval_errors_are_messages(tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", str(tmp_path / "nope.json"), "--index", str(tmp_path)])
    assert result.exit_code == 1 and "No question set" in result.output
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question": "Who?", "answers": ["me"]}) + "\n")
    result = runner.invoke(app, ["eval", str(questions), "--index", str(tmp_path / "i")])
    assert result.exit_code == 1 and "--corpus" in result.output


def test_evalquestion_without_gold_is_left_out_of_recall() -> None:
    q = EvalQuestion("Who?", ("me",))
    assert not q.has_gold and not q.is_gold(Passage(text="me", title="", source="x", paragraph=1))
