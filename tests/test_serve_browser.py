"""The web page in a real browser: Debian's chromium, headless, driven through Playwright.

No browser is downloaded: Playwright drives the system's ``chromium`` (``.ci/run`` installs
it with apt-get). The page is served by a real ``rag serve`` process. The quick tests use
the tiny model (page mechanics, keyboard, a narrow screen, an article holding markup);
the slow one asks the sample question with the default model, as a user would.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import QUESTION, SAMPLE_NAME
from playwright.sync_api import Browser, Page, expect, sync_playwright

from benchmarks.serve import TINY, ServerProcess
from rag import RAG
from rag.settings import DEFAULT_MODEL

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)"
)
# Headless on a machine with no display, GPU or network; the sandbox needs privileges
# that a CI container running as root does not give.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
WAIT_MS = 120_000
HOSTILE = """Breaking <script>window.__pwned = 1</script> news

The mayor of Springfield opened the new <script>document.title = "pwned"; window.__pwned = 2\
</script> library on Monday.

Visitors saw <img src=x onerror="window.__pwned = 3"> a display of rare maps, the mayor said.
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory, sample_article: Path) -> Path:
    """The sample article and one whose text is markup that must never run."""
    folder = tmp_path_factory.mktemp("serve-browser")
    (folder / "articles").mkdir()
    shutil.copy(sample_article, folder / "articles" / SAMPLE_NAME)
    (folder / "articles" / "breaking.txt").write_text(HOSTILE)
    with RAG(folder / "index", progress=False) as rag:
        rag.ingest(folder / "articles")
    return folder / "index"


@pytest.fixture(scope="module")
def server(index: Path) -> Iterator[ServerProcess]:
    args = ("--model", TINY, "--max-new-tokens", "32", "--no-progress")
    with ServerProcess(index, *args, log=index.parent / "server.log", cwd=index.parent) as running:
        yield running


def open_page(browser: Browser, url: str, **options: object) -> Page:
    page = browser.new_page(**options)  # type: ignore[arg-type]
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("dialog", lambda dialog: problems.append(f"dialog: {dialog.message}"))
    page.problems = problems  # type: ignore[attr-defined]
    page.goto(url)
    expect(page.locator("#health")).to_contain_text("ready", timeout=WAIT_MS)
    return page


def tab_to(page: Page, selector: str) -> None:
    """Move the focus with the Tab key alone until ``selector`` has it."""
    target = page.locator(selector)
    for _ in range(20):
        if target.evaluate("node => node === document.activeElement"):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {selector}")


def ask_by_keyboard(page: Page, question: str) -> None:
    tab_to(page, "#question")
    page.keyboard.type(question)
    page.keyboard.press("Enter")


def test_the_page_answers_a_question_asked_with_the_keyboard(
    browser: Browser, server: ServerProcess, tmp_path: Path
) -> None:
    page = open_page(browser, server.url + "/")
    ask_by_keyboard(page, QUESTION)
    # The checked answer replaces the streamed text: an answer with its sources, or a decline.
    answer = page.locator("#answer > p").first
    expect(answer).not_to_have_class("live", timeout=WAIT_MS)
    expect(page.locator("#go")).to_be_enabled()
    text = answer.inner_text()
    assert text.strip(), "no answer shown"
    if page.locator("#answer.decline").count():
        assert "do not answer" in text
    elif page.locator("#answer a.marker").count():
        page.locator("#answer a.marker").first.press("Enter")  # a marker is a link: Enter works
        expect(page.locator("#citation")).to_be_visible()
        expect(page.locator("#citation-meta")).to_contain_text("paragraph")
    page.screenshot(path=tmp_path / "tiny-answer.png", full_page=True)
    assert page.problems == []  # type: ignore[attr-defined]


def scripted_stream(passages: list[dict[str, object]]) -> str:
    """An answer stream as the server sends it: a first reading withdrawn, then an answer
    with one supported and one unsupported sentence, citing two real paragraphs."""
    first = "Microsoft invested $7 billion in OpenAI [1]."
    supported = "In 2019, Microsoft invested $1 billion in OpenAI [1]."
    unsupported = "It also bought the Moon [2]."
    answer = {
        "question": QUESTION,
        "text": f"{supported} {unsupported}",
        "citations": [
            {"number": 1, "passage": passages[0], "supported": True, "support": 1.0},
            {"number": 2, "passage": passages[1], "supported": False, "support": 0.2},
        ],
        "passages": passages,
        "abstained": False,
        "sentences": [
            {"text": supported, "citations": [1], "supported": True},
            {"text": unsupported, "citations": [2], "supported": False},
        ],
        "timings": {},
        "model": "scripted",
        "raw_text": f"{supported} {unsupported}",
        "dropped_markers": 0,
        "standalone_question": None,
        "attempts": 2,
    }
    events = [("token", {"text": word + " "}) for word in first.split()]
    events.append(("retry", {"passages": 2, "withdrawn": first}))
    events += [("token", {"text": word + " "}) for word in answer["raw_text"].split()]
    events.append(("answer", answer))
    return "".join(f"event: {kind}\ndata: {json.dumps(data)}\n\n" for kind, data in events)


def test_the_page_shows_citations_unsupported_sentences_and_both_readings(
    browser: Browser, server: ServerProcess, tmp_path: Path
) -> None:
    """The page's reading of a stream, on one whose every kind of event is known in advance
    (the tiny model declines the sample question more often than not)."""
    found = httpx.post(f"{server.url}/search", json={"question": QUESTION, "k": 2}, timeout=60)
    passages = found.json()
    assert passages[0]["paragraph"] == 10
    page = open_page(browser, server.url + "/")
    page.route(
        "**/ask/stream",
        lambda route: route.fulfill(
            status=200, content_type="text/event-stream", body=scripted_stream(passages)
        ),
    )
    ask_by_keyboard(page, QUESTION)
    answer = page.locator("#answer > p").first
    expect(answer).to_contain_text("In 2019, Microsoft invested $1 billion in OpenAI")
    expect(page.locator("#answer .unsupported")).to_contain_text("It also bought the Moon")
    expect(page.locator("#readings")).to_be_visible()
    expect(page.locator("#readings-note")).to_contain_text("Two readings")
    page.locator("#readings summary").click()
    expect(page.locator("#withdrawn")).to_have_text("Microsoft invested $7 billion in OpenAI [1].")
    # [1] is a link to the cited paragraph, with the sentence's words marked in it.
    tab_to(page, "#answer a.marker >> nth=0")
    page.keyboard.press("Enter")
    expect(page.locator("#citation")).to_be_focused()
    expect(page.locator("#citation-head")).to_contain_text("[1]")
    expect(page.locator("#citation-meta")).to_contain_text("paragraph 10")
    marked = page.locator("#citation-text mark").all_inner_texts()
    assert {"2019", "Microsoft", "$1", "OpenAI"} <= set(marked), marked
    expect(page.locator("#citation-warning")).to_be_hidden()
    page.locator("#answer a.marker", has_text="[2]").click()
    expect(page.locator("#citation-warning")).to_be_visible()
    expect(page.locator("#source-list li")).to_have_count(2)
    page.locator("#answer a.marker", has_text="[1]").click()
    page.screenshot(path=tmp_path / "scripted-answer.png", full_page=True)
    page.locator("#citation-link").click()
    cited = page.locator("#article-paragraphs li.cited")
    expect(cited).to_be_focused()
    assert cited.get_attribute("value") == "10"
    expect(page.locator("#query")).to_be_hidden()
    page.locator("#back").click()
    expect(page.locator("#answer .unsupported")).to_be_visible()  # the answer is still there
    assert page.problems == []  # type: ignore[attr-defined]


def test_an_article_with_markup_is_shown_as_text(
    browser: Browser, server: ServerProcess, tmp_path: Path
) -> None:
    page = open_page(browser, server.url + "/#search")
    ask_by_keyboard(page, "Springfield library mayor")
    first = page.locator("#results li").first
    expect(first).to_contain_text("<script>", timeout=WAIT_MS)
    expect(first.locator("h3")).to_have_text("Breaking <script>window.__pwned = 1</script> news")
    first.locator("h3 a").click()
    expect(page.locator("#query")).to_be_hidden()
    cited = page.locator("#article-paragraphs li.cited")
    expect(cited).to_contain_text('<script>document.title = "pwned"')
    expect(page.locator("#article-paragraphs li").nth(1)).to_contain_text('<img src=x onerror="')
    assert page.locator("main script, main img").count() == 0  # shown, not made into elements
    assert page.evaluate("() => window.__pwned") is None
    assert page.title() != "pwned"
    page.screenshot(path=tmp_path / "hostile-article.png", full_page=True)
    assert page.problems == []  # type: ignore[attr-defined]


def test_the_page_fits_a_narrow_screen(
    browser: Browser, server: ServerProcess, tmp_path: Path
) -> None:
    page = open_page(browser, server.url + "/#search", viewport={"width": 360, "height": 740})
    ask_by_keyboard(page, QUESTION)
    expect(page.locator("#results li").first).to_be_visible(timeout=WAIT_MS)
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 360, f"the page is {width} px wide on a 360 px screen"
    page.screenshot(path=tmp_path / "narrow.png", full_page=True)


# --- the default model --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def default_server(index: Path) -> Iterator[ServerProcess]:
    args = ("--model", DEFAULT_MODEL, "--no-progress")
    log = index.parent / "default.log"
    with ServerProcess(index, *args, log=log, cwd=index.parent, ready_timeout_s=900) as running:
        yield running


@pytest.mark.slow
def test_the_sample_question_on_the_page(
    browser: Browser, default_server: ServerProcess, tmp_path: Path
) -> None:
    page = open_page(browser, default_server.url + "/", viewport={"width": 1000, "height": 900})
    ask_by_keyboard(page, QUESTION)
    # Streamed: the text grows in the live paragraph while the model writes.
    live = page.locator("#answer p.live")
    expect(live).to_contain_text("billion", timeout=600_000)
    answer = page.locator("#answer > p").first
    expect(answer).not_to_have_class("live", timeout=600_000)
    text = answer.inner_text().replace(",", "")
    assert "$1 billion" in text and "$10 billion" in text, text
    page.locator("#answer a.marker", has_text="[1]").first.click()
    citation = page.locator("#citation")
    expect(citation).to_be_visible()
    expect(page.locator("#citation-meta")).to_contain_text("paragraph 10")
    expect(page.locator("#citation-text")).to_contain_text("$10 billion")
    assert page.locator("#citation-text mark").count() > 0  # the supporting words
    page.screenshot(path=tmp_path / "sample-answer.png", full_page=True)
    page.locator("#citation-link").click()
    cited = page.locator("#article-paragraphs li.cited")
    expect(cited).to_be_visible()
    expect(cited).to_be_focused()
    assert cited.get_attribute("value") == "10"
    page.screenshot(path=tmp_path / "sample-article.png")
    assert page.problems == []  # type: ignore[attr-defined]
