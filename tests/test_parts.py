"""Questions of several parts, answers that do not answer, figures of someone else, dates.

The mechanisms of complete answers, each on its own: splitting a question into its parts,
telling a restated question from an answer, a figure supported only where the paragraph says
it of the same subject, reading on for a part the first answer leaves open (with a scripted
model, so that what each reading returns is known), and "this year" dated by the article.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rag import RAG, Answer, Passage
from rag.answer import final_answer, focus, sentences_for, stream_answer
from rag.cite import check_answer
from rag.cite.assemble import dated
from rag.cite.terms import asks_figure, new_terms
from rag.generate import Generation
from rag.parts import answered_parts, split_question
from rag.prompt import load_templates
from rag.types import ReadOn, Retry, Sentence


@pytest.mark.parametrize(
    ("question", "parts"),
    [
        (
            "How much money went missing at the bank, and in which city did the pair work?",
            ["How much money went missing at the bank?", "In which city did the pair work?"],
        ),
        (
            "At how many hotspots were they rolling out calls, and roughly how many users did "
            "the firm have?",
            [
                "At how many hotspots were they rolling out calls?",
                "Roughly how many users did the firm have?",
            ],
        ),
        (
            "Who discovered this and where did they come from?",
            ["Who discovered this?", "Where did they come from?"],
        ),
        (
            "Which film won, and which film beat it a few weeks later?",
            ["Which film won?", "Which film beat it a few weeks later?"],
        ),
        # One question: coordinated answers, names, no second question word.
        ("Disney-ABC merged with ABC Studios and what other entity in 2009?", None),
        ("How much did Amazon and Microsoft invest in AI firms?", None),
        ("Which events was she selected for, the 800m and 1500m?", None),
    ],
)
def test_a_question_splits_only_where_it_asks_a_second_question(
    question: str, parts: list[str] | None
) -> None:
    found = [p.text for p in split_question(question)]
    assert found == (parts or [question])


def test_a_figure_is_asked_for_by_how_much_how_many_and_what_share() -> None:
    assert asks_figure("How much did Sun spend?") and asks_figure("What share of spam is stopped?")
    assert asks_figure("How many staff does it employ?")
    assert not asks_figure("Which firm will sponsor the festival?")


def test_a_restated_question_states_nothing_new() -> None:
    question = "Which firm will sponsor the festival?"
    assert not new_terms("The firm will sponsor the festival.", question)
    assert new_terms("Acme will sponsor the festival.", question).names == ("Acme",)
    assert new_terms("There were 28 companies.", "How many companies?").numbers
    assert new_terms("There were three companies.", "How many companies?").numbers
    assert not new_terms("In 2004 it did.", "What did it do in 2004?").numbers


def passage(paragraph: int, text: str, title: str = "Deals", source: str = "deals.txt") -> Passage:
    return Passage(text, title, source, paragraph, "2023-09-25T09:55:00-04:00")


DEALS = passage(
    10,
    "Amazon's investment in Anthropic follows similar moves by cloud leaders such as Microsoft. "
    "In 2019, Microsoft invested $1 billion in ChatGPT-maker OpenAI. More recently, Microsoft "
    "made a $10 billion investment in OpenAI this year and launched a push into Bing.",
)


def test_an_answer_that_restates_the_question_is_declined() -> None:
    festival = passage(1, "The Edinburgh festival said the firm would sponsor it from 2006.")
    checked = check_answer(
        "The firm will sponsor the festival [1].",
        [festival],
        question="Which firm will sponsor the festival?",
    )
    assert checked.abstained


def test_a_figure_said_of_someone_else_does_not_support_the_claim() -> None:
    wrong = check_answer(
        "Amazon invested $10 billion in OpenAI this year [1].",
        [DEALS],
        question="How much did Amazon invest in OpenAI?",
    )
    assert wrong.abstained
    right = check_answer(
        "Microsoft invested $1 billion in OpenAI in 2019 [1]. More recently, it made a $10 "
        "billion investment in OpenAI this year [1].",
        [DEALS],
        question="How much did Microsoft invest in OpenAI?",
    )
    assert not right.abstained and all(s.supported for s in right.sentences)


def test_the_question_s_own_names_need_not_all_be_repeated_by_the_paragraph() -> None:
    lawsuit = passage(
        1,
        "The lawsuit, brought by 28 of the world's largest entertainment firms, has raged for "
        "several years. If the Supreme Court finds in favour of the industry, Grokster and "
        "Morpheus could be sued.",
    )
    question = (
        "How many entertainment companies brought the lawsuit against Grokster and Morpheus "
        "that went before the US Supreme Court?"
    )
    answer = (
        "There were 28 entertainment companies that brought the lawsuit against Grokster and "
        "Morpheus that went before the US Supreme Court [1]."
    )
    assert not check_answer(answer, [lawsuit], question=question).abstained
    # But a paragraph with none of the question's names is not about it.
    other = passage(2, "Brady finished the season with a rating of 28.")
    assert check_answer(answer, [other], question=question).abstained


def test_an_irregular_past_tense_meets_its_base_form() -> None:
    hall = passage(
        3, "In Britain, the Queen will lead the nation's commemoration in Westminster Hall."
    )
    checked = check_answer(
        "The Queen led the commemoration at Westminster Hall [1].",
        [hall],
        question="Where did the Queen lead the commemoration?",
    )
    assert not checked.abstained and all(s.supported for s in checked.sentences)


def test_this_year_is_dated_by_the_article() -> None:
    assert (
        dated("It invested this year [1].", ["2023-09-25"]) == "It invested this year (2023) [1]."
    )
    assert dated("Sales fell last year.", ["2005-01-10"]) == "Sales fell last year (2004)."
    assert (
        dated("Sales fell next month.", ["2004-12-10"]) == "Sales fell next month (January 2005)."
    )
    assert dated("Sales fell this year.", [None]) == "Sales fell this year."
    assert dated("Sales fell this year.", ["2004-01-01", "2005-01-01"]) == "Sales fell this year."
    checked = check_answer(
        "Microsoft made a $10 billion investment in OpenAI this year [1].",
        [DEALS],
        question="How much did Microsoft invest in OpenAI?",
    )
    assert "this year (2023) [1]" in checked.text


class PartModel:
    """Answers from what it reads: each passage holding a fact gets its sentence."""

    name = "parts"
    context_length = 4096

    def __init__(self) -> None:
        self.questions: list[str] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def stream(self, messages: list[dict[str, str]], *args: object) -> Iterator[str | Generation]:
        user = messages[-1]["content"]
        self.questions.append(user.rsplit("Question:", 1)[-1].strip())
        sentences = []
        if "$120m" in user:
            sentences.append("Up to $120m went missing [1].")
        if "Harbin" in user:
            sentences.append("The pair worked in Harbin [1].")
        reply = " ".join(sentences) or "The passages do not answer this question."
        yield from reply.split(" ")
        yield Generation(reply, 100, 10, 0.5, 0.25)


MONEY = passage(
    1, "Two officials at the bank disappeared after up to $120m went missing.", "Bank", "bank.txt"
)
CITY = passage(
    2, "The pair both worked at the bank in the northern city of Harbin.", "Bank", "bank.txt"
)
RAIN = passage(1, "Heavy rain is expected across the region this weekend.", "Weather", "rain.txt")
TWO_PART = "How much money went missing at the bank, and in which city did the pair work?"


def read(question: str, passages: list[Passage], found: list[Passage]) -> list[object]:
    return list(
        stream_answer(
            question,
            passages,
            PartModel(),  # type: ignore[arg-type]
            load_templates(),
            max_prompt_tokens=2048,
            max_new_tokens=32,
            retrieve=lambda part, k=None: found,
        )
    )


def test_the_first_reading_gets_each_part_s_best_paragraph() -> None:
    items = read(TWO_PART, [MONEY, RAIN], [CITY])
    assert not any(isinstance(i, ReadOn | Retry) for i in items)
    answer = items[-1]
    assert isinstance(answer, Answer) and not answer.abstained
    assert "$120m" in answer.text and "Harbin" in answer.text
    assert [c.passage for c in answer.citations] == [MONEY, CITY]
    assert [p.answered for p in answer.parts] == [True, True]
    assert answer.attempts == 1 and answer.readings[0].passages == [MONEY, CITY]


def test_a_part_the_first_answer_leaves_open_is_read_for_and_added() -> None:
    # The part's best paragraph is no answer (and was read already); the one after it is.
    items = read(TWO_PART, [MONEY, RAIN], [RAIN, CITY])
    read_on = [i for i in items if isinstance(i, ReadOn)]
    assert read_on == [ReadOn(part="In which city did the pair work?", passages=2)]
    answer = items[-1]
    assert isinstance(answer, Answer) and not answer.abstained
    assert "$120m" in answer.text and "Harbin" in answer.text
    assert [c.passage for c in answer.citations] == [MONEY, CITY]
    assert answer.text.endswith("[2].")  # the second reading's [1] is the answer's [2]
    assert [p.answered for p in answer.parts] == [True, True]
    # Both parts' best together, then for the part its best paragraph not read yet, alone.
    assert answer.attempts == len(answer.readings) == 2
    assert answer.readings[0].passages == [MONEY, RAIN]
    assert answer.readings[-1].passages == [CITY]


def test_reading_on_asks_the_part_itself_and_keeps_what_it_answers_of_other_parts() -> None:
    both = passage(3, "Up to $120m went missing; the pair worked in Harbin.", "Bank", "b.txt")
    model = PartModel()
    items = list(
        stream_answer(
            TWO_PART,
            [RAIN],
            model,  # type: ignore[arg-type]
            load_templates(),
            max_prompt_tokens=2048,
            max_new_tokens=32,
            retrieve=lambda part, k=None: [RAIN, both],
        )
    )
    # Read for the first part, the model answers both: the second is not read for.
    assert [i.part for i in items if isinstance(i, ReadOn)] == [
        "How much money went missing at the bank?"
    ]
    assert "How much money went missing at the bank?" in model.questions
    answer = items[-1]
    assert isinstance(answer, Answer) and not answer.abstained
    assert "$120m" in answer.text and "Harbin" in answer.text
    assert [p.answered for p in answer.parts] == [True, True]
    assert "do not answer" not in answer.text


@pytest.mark.parametrize(
    ("part", "asked"),
    [
        # Its own subject: asked as it is.
        ("How much data will a Blu-ray disc store?", "How much data will a Blu-ray disc store?"),
        # Nobody of its own, or pointing back: the names the question gives come along.
        (
            "In which city did the pair work?",
            "In which city did the pair work? (The question is about Bank of China.)",
        ),
        (
            "How old was he when he won the Davis Cup?",
            "How old was he when he won the Davis Cup? (The question is about Rafael Nadal.)",
        ),
        # Whom the subject played is not the subject.
        (
            "What was the final score against France?",
            "What was the final score against France? (The question is about Wales, Six Nations.)",
        ),
    ],
)
def test_reading_on_asks_the_part_with_the_names_it_leans_on(part: str, asked: str) -> None:
    question = {
        "In which city did the pair work?": "How much went missing at Bank of China, and in "
        "which city did the pair work?",
        "How old was he when he won the Davis Cup?": "Who did Rafael Nadal beat in the final, "
        "and how old was he when he won the Davis Cup?",
        "What was the final score against France?": "Who played on the Wales wing in the Six "
        "Nations, and what was the final score against France?",
    }.get(part, f"Which firms back Blu-ray, and {part[0].lower()}{part[1:]}")
    from rag.parts import Part

    assert focus(Part(part), question) == asked


def test_a_sentence_answers_the_part_it_is_most_about() -> None:
    question = (
        "How many businesses did Prime Minister Yulia Tymoshenko say would have their "
        "privatisations reviewed, and how many top firms had President Viktor Yushchenko said "
        "would be targeted?"
    )
    parts = split_question(question)
    first = Sentence(
        "Prime Minister Yulia Tymoshenko said as many as 3,000 firms may have their "
        "privatisations reviewed.",
        [1],
        True,
    )
    # It says "firms", a word of the second part only, but it is about the first.
    assert answered_parts(question, parts, [first]) == [True, False]
    second = Sentence("Mr Yushchenko said 30 to 40 top firms would be targeted.", [1], True)
    assert answered_parts(question, parts, [first, second]) == [True, True]


def test_a_sentence_sharing_only_words_common_to_the_parts_is_about_those_parts() -> None:
    question = (
        "How much did Meet the Fockers take over the Christmas weekend, and how much did it "
        "take the following weekend, its second at number one?"
    )
    parts = split_question(question)
    first = Sentence("Meet the Fockers took $44.7m between 24 and 26 December.", [1], True)
    second = Sentence("The following weekend, it took $42.8m.", [2], True)
    # "take" and "weekend" are words of both parts, none of either part's own: the second
    # sentence is about both, so the part it answers is not said to be unanswered.
    assert answered_parts(question, parts, [first, second]) == [True, True]
    assert answered_parts(question, parts, [first]) == [True, False]


def test_a_sentence_naming_one_parts_subject_is_not_about_the_part_naming_another() -> None:
    question = (
        "What was Brazil's unemployment rate in December 2004, and what was Germany's in "
        "November 2004?"
    )
    parts = split_question(question)
    germany = Sentence("Germany's unemployment rate in November 2004 was 10.8%.", [1], True)
    # "unemployment rate" is Brazil's part's own words, but the sentence names Germany: Brazil's
    # rate is still unanswered, and said to be.
    assert answered_parts(question, parts, [germany]) == [False, True]
    # A part that names nobody of its own ("in which city did the pair work") is not so judged.
    question = (
        "How much money went missing at Bank of China when two of its officials disappeared, "
        "and in which city did the pair work?"
    )
    harbin = Sentence("The pair worked at Bank of China in Harbin.", [1], True)
    assert answered_parts(question, split_question(question), [harbin])[1]


def test_a_bare_answer_to_the_part_read_for_answers_that_part() -> None:
    question = (
        "On what date was Gordon Brown due to deliver his Budget, and how many Budgets would "
        "that make for him since Labour came to power?"
    )
    parts = split_question(question)
    bare = [Sentence("On 16 March.", [1], True)]
    # Read for the date, "On 16 March." answers it without repeating its words ...
    assert sentences_for(question, parts, 0, bare, asked=0) == bare
    # ... but not a part it was not read for, nor a part another sentence is about.
    assert sentences_for(question, parts, 0, bare, asked=1) == []
    other = [Sentence("It was his ninth Budget since Labour came to power in 1997.", [1], True)]
    assert sentences_for(question, parts, 0, other, asked=0) == []


def test_a_part_no_passage_answers_is_said_plainly() -> None:
    answer = final_answer(read(TWO_PART, [MONEY], [RAIN]))  # type: ignore[arg-type]
    assert not answer.abstained and "$120m" in answer.text
    assert (
        "do not answer this part of the question: In which city did the pair work?" in answer.text
    )
    assert [p.answered for p in answer.parts] == [True, False]
    assert [c.passage for c in answer.citations] == [MONEY]


class GuessingModel(PartModel):
    """As :class:`PartModel`, but guesses the city from a paragraph that does not give it."""

    def stream(self, messages: list[dict[str, str]], *args: object) -> Iterator[str | Generation]:
        user = messages[-1]["content"]
        if "$120m" in user and "Heavy rain" in user:
            self.questions.append(user.rsplit("Question:", 1)[-1].strip())
            reply = "Up to $120m went missing [1]. The pair worked in Leeds [2]."
            yield from reply.split(" ")
            yield Generation(reply, 100, 10, 0.5, 0.25)
            return
        yield from super().stream(messages, *args)


@pytest.mark.parametrize("found", [[RAIN, CITY], [RAIN]], ids=["answered on", "not answered"])
def test_an_unsupported_sentence_about_a_part_read_on_for_is_left_out(
    found: list[Passage],
) -> None:
    # "The pair worked in Leeds [2]" is unsupported by the rain paragraph: the part stays open
    # and is read for; whatever that finds, the guess is not kept beside it.
    items = stream_answer(
        TWO_PART,
        [MONEY, RAIN],
        GuessingModel(),  # type: ignore[arg-type]
        load_templates(),
        max_prompt_tokens=2048,
        max_new_tokens=32,
        retrieve=lambda part, k=None: found,
    )
    answer = final_answer(items)
    assert answer.readings[0].text.count("Leeds") == 1  # the check kept it, flagged
    assert "Leeds" not in answer.text and "missing [1]." in answer.text
    assert RAIN not in [c.passage for c in answer.citations]
    if CITY in found:
        assert "Harbin [2]." in answer.text and [p.answered for p in answer.parts] == [True, True]
    else:
        assert "do not answer this part" in answer.text
        assert [p.answered for p in answer.parts] == [True, False]


def test_an_answer_of_one_part_only_is_not_read_on_for() -> None:
    items = read("How much money went missing at the bank?", [MONEY], [CITY])
    assert not any(isinstance(i, ReadOn | Retry) for i in items)
    answer = items[-1]
    assert isinstance(answer, Answer) and answer.parts == [] and answer.attempts == 1


def test_near_copies_of_a_paragraph_are_shown_once(tmp_path: Path) -> None:
    folder = tmp_path / "articles"
    folder.mkdir()
    story = (
        "Rail funding\n\nThe government gave $2 million to the rail company Northline in 2018 "
        "for new trains and a depot."
    )
    (folder / "a.txt").write_text(story + "\n")
    (folder / "b.txt").write_text(story.replace("new trains", "its new trains") + "\n")
    (folder / "c.txt").write_text("Weather\n\nHeavy rain is expected across the region.\n")
    with RAG(tmp_path / "index", progress=False) as rag:
        rag.ingest(folder)
        hits = rag.search("How much did the government give Northline?", k=2)
    names = [h.source.rsplit("/", 1)[-1] for h in hits]
    assert len(hits) == 2 and "c.txt" in names  # the copy gave its place to another paragraph
    assert sum(name in ("a.txt", "b.txt") for name in names) == 1


def test_reading_on_reads_the_part_s_paragraphs_one_at_a_time_until_one_answers_it() -> None:
    # The part's first two unread paragraphs say nothing of it, or answer the part answered
    # already; the third answers it. Each is read alone, in turn.
    other = passage(3, "Up to $120m went missing, the bank said on Monday.", "Bank", "other.txt")
    items = read(TWO_PART, [MONEY, RAIN], [RAIN, other, CITY])
    retries = [i for i in items if isinstance(i, Retry)]
    assert retries and all(r.passages == 1 for r in retries)
    answer = items[-1]
    assert isinstance(answer, Answer) and not answer.abstained
    assert "$120m" in answer.text and "Harbin" in answer.text
    assert [p.answered for p in answer.parts] == [True, True]
    assert [r.passages for r in answer.readings] == [[MONEY, RAIN], [other], [CITY]]


def test_reading_on_reads_the_part_s_paragraphs_together_when_none_alone_answers() -> None:
    weather = passage(4, "Sunshine is forecast for the weekend.", "Weather", "sun.txt")
    items = read(TWO_PART, [MONEY, RAIN], [RAIN, weather])
    answer = items[-1]
    assert isinstance(answer, Answer)
    assert [p.answered for p in answer.parts] == [True, False]
    assert "do not answer this part" in answer.text
    # The one unread paragraph alone, then as many as the question was given, together.
    assert [r.passages for r in answer.readings] == [[MONEY, RAIN], [weather], [weather, RAIN]]


def test_reading_on_reads_the_next_paragraphs_together_when_its_best_were_all_read() -> None:
    # The part's best two paragraphs (as many as the question was given) were read, alone or
    # in the first reading, to no answer: the next ones are read together.
    weather = [
        passage(10 + i, f"Sunshine is forecast for day {i}.", "Weather", f"sun{i}.txt")
        for i in range(5)
    ]
    found = [RAIN, *weather[:4], CITY, weather[4]]
    answer = final_answer(read(TWO_PART, [MONEY, RAIN], found))  # type: ignore[arg-type]
    assert [p.answered for p in answer.parts] == [True, True] and "Harbin" in answer.text
    assert [r.passages for r in answer.readings] == [
        [MONEY, RAIN],
        *([w] for w in weather[:4]),
        [CITY, weather[4]],
    ]


class MixingModel(PartModel):
    """Given several paragraphs, it mixes them up and says nothing supported; one alone, it
    reads well (the small model's failing)."""

    def stream(self, messages: list[dict[str, str]], *args: object) -> Iterator[str | Generation]:
        user = messages[-1]["content"]
        if user.count("\n[") > 1:  # "[1] ...", "[2] ...": more than one paragraph
            reply = "The passages do not answer this question."
            yield from reply.split(" ")
            yield Generation(reply, 100, 10, 0.5, 0.25)
            return
        yield from super().stream(messages, *args)


def test_a_first_reading_declined_whole_leaves_its_paragraphs_to_be_read_alone() -> None:
    model = MixingModel()
    items = list(
        stream_answer(
            TWO_PART,
            [MONEY],
            model,  # type: ignore[arg-type]
            load_templates(),
            max_prompt_tokens=2048,
            max_new_tokens=32,
            retrieve=lambda part, k=None: [MONEY, CITY] if "much" in part else [CITY, MONEY],
        )
    )
    answer = items[-1]
    assert isinstance(answer, Answer) and not answer.abstained
    assert "$120m" in answer.text and "Harbin" in answer.text
    assert [p.answered for p in answer.parts] == [True, True]
    # Both together, declined; then each part's own best, alone.
    assert answer.readings[0].passages == [MONEY, CITY]
    assert [MONEY] in [r.passages for r in answer.readings[1:]]
