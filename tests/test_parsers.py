"""Parsers on real files: the sample CNN article, BBC stories and small fixtures per format."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from rag.parsers import (
    UnreadableFile,
    UnsupportedFile,
    iter_files,
    read_file,
    supported_suffixes,
)
from rag.parsers.common import (
    decode_bytes,
    fold_whitespace,
    normalize_date,
    split_paragraphs,
)
from rag.types import Document

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
SAMPLE = "000_a385e70649e5e390.txt"
BBC = ROOT.parent / "shared" / "data" / "bbc-news"
# The one file of the BBC corpus that is not UTF-8 (a raw cp1252 "£" byte).
BBC_NON_UTF8 = BBC / "sports" / "199.txt"


def sample_path() -> Path:
    """The sample article from ../shared, or the copy under examples/ when that is absent."""
    shared = ROOT.parent / "shared" / "articles" / SAMPLE
    return shared if shared.exists() else ROOT / "examples" / SAMPLE


def read_one(path: Path) -> Document:
    documents, failures = read_file(path)
    assert failures == []
    assert len(documents) == 1
    return documents[0]


def assert_offsets_match(text: str, document: Document) -> None:
    """Each paragraph's span is its raw block: stripped, and folding it gives the text."""
    for paragraph in document.paragraphs:
        raw = text[paragraph.start : paragraph.end]
        assert raw == raw.strip()
        assert fold_whitespace(raw) == paragraph.text


needs_bbc = pytest.mark.skipif(not BBC.exists(), reason="../shared/data/bbc-news is absent")


# --------------------------------------------------------------------------- scraped sample


@pytest.fixture(scope="module")
def sample() -> Document:
    return read_one(sample_path())


def test_sample_metadata(sample: Document) -> None:
    path = sample_path().resolve()
    assert sample.format == "scraped"
    assert sample.author == "Brian Fung, CNN"
    assert sample.publisher == "Cable News Network"
    assert sample.published == "2023-09-25T09:55:00-04:00"
    assert sample.title == "000_a385e70649e5e390"  # no Title: header, so the file stem
    assert sample.source == sample.path == str(path)
    assert sample.url is None


def test_sample_paragraphs(sample: Document) -> None:
    numbers = [p.number for p in sample.paragraphs]
    assert numbers == list(range(1, len(numbers) + 1))
    # The "CNN —" dateline block is dropped, so the first paragraph is the lede.
    assert sample.paragraphs[0].text.startswith("Amazon said on Monday")
    assert all("CNN —" not in p.text for p in sample.paragraphs)
    microsoft = [p for p in sample.paragraphs if "In 2019, Microsoft invested $1 billion" in p.text]
    assert len(microsoft) == 1
    assert microsoft[0].number == 10
    assert microsoft[0].text.startswith("Amazon’s investment in Anthropic follows similar moves")
    assert len(sample.paragraphs) == 10
    assert_offsets_match(decode_bytes(sample_path().read_bytes()), sample)


def test_sample_numbers_stable_on_reread(sample: Document) -> None:
    again = read_one(sample_path())
    assert again.paragraphs == sample.paragraphs


def test_scraped_with_title_and_multiline_headers(tmp_path: Path) -> None:
    path = tmp_path / "story.txt"
    path.write_text(
        "\n"
        "Title: Storm hits\n"
        "    the coast\n"
        "Author:\n"
        "\tBy Ann Lee\n"
        "Place of Publish: Example News\n"
        "Published on: 2024-02-01\n"
        "Body: The storm reached land at dawn.\n"
        "\n"
        "Thousands lost power.\n",
        encoding="utf-8",
    )
    doc = read_one(path)
    assert doc.format == "scraped"
    assert doc.title == "Storm hits the coast"
    assert doc.author == "Ann Lee"
    assert doc.publisher == "Example News"  # no © line: kept as written
    assert doc.published == "2024-02-01"
    assert [p.text for p in doc.paragraphs] == [
        "The storm reached land at dawn.",
        "Thousands lost power.",
    ]


def test_header_like_headline_without_body_is_plain_text(tmp_path: Path) -> None:
    path = tmp_path / "headline.txt"
    path.write_text("Title: a story about titles\n\nIt has no Body header.\n", encoding="utf-8")
    doc = read_one(path)
    assert doc.format == "text"
    assert doc.title == "Title: a story about titles"


# --------------------------------------------------------------------------- plain text / BBC


@needs_bbc
def test_bbc_article() -> None:
    path = BBC / "business" / "001.txt"
    doc = read_one(path)
    assert doc.format == "text"
    assert doc.title == "Ad sales boost Time Warner profit"
    assert doc.source == doc.path == str(path.resolve())
    assert doc.author is doc.publisher is doc.published is None
    assert len(doc.paragraphs) == 5
    assert doc.paragraphs[0].text.startswith("Quarterly profits at US media giant TimeWarner")
    assert "(£600m)" in doc.paragraphs[0].text
    assert_offsets_match(decode_bytes(path.read_bytes()), doc)


@needs_bbc
def test_bbc_non_utf8_file_decodes() -> None:
    data = BBC_NON_UTF8.read_bytes()
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    doc = read_one(BBC_NON_UTF8)
    assert doc.title == "Chelsea sack Mutu"
    assert any("£15.8m signing from Parma" in p.text for p in doc.paragraphs)


def test_cp1252_fixture_decodes() -> None:
    doc = read_one(DATA / "cp1252.txt")
    assert doc.title == "Café prices rise"
    assert doc.paragraphs[0].text == "A coffee now costs £3.50 – up from £2.80 “last year”."


def test_decode_bytes_variants() -> None:
    assert decode_bytes(codecs.BOM_UTF8 + "Zoë".encode()) == "Zoë"
    assert decode_bytes(codecs.BOM_UTF16_LE + "Zoë".encode("utf-16-le")) == "Zoë"
    assert decode_bytes(b"\xa3") == "£"  # cp1252
    assert decode_bytes(b"\x81") == "\x81"  # undefined in cp1252: latin-1 still decodes it


def test_plain_text_without_blank_line_after_title(tmp_path: Path) -> None:
    path = tmp_path / "tight.txt"
    path.write_text("Headline here\nFirst paragraph.\n\nSecond.\n", encoding="utf-8")
    doc = read_one(path)
    assert doc.title == "Headline here"
    assert [p.text for p in doc.paragraphs] == ["First paragraph.", "Second."]


# --------------------------------------------------------------------------- paragraphs


def test_whitespace_folded_and_blank_lines_with_spaces() -> None:
    body = "  First   line\n\tcontinues\u00a0here.  \n   \t \n\n  Second\r\n  para.\n \n"
    paragraphs = split_paragraphs(body)
    assert [(p.number, p.text) for p in paragraphs] == [
        (1, "First line continues here."),
        (2, "Second para."),
    ]
    assert body[paragraphs[0].start : paragraphs[0].end] == "First   line\n\tcontinues\u00a0here."
    assert body[paragraphs[1].start : paragraphs[1].end] == "Second\r\n  para."


@pytest.mark.parametrize(
    "dateline",
    [
        "CNN —",
        "CNN\n        \u00a0—\u00a0 ",
        "WASHINGTON (Reuters) -",
        "NEW YORK (CNN) —",
        "Hong Kong\nCNN\n —",
    ],
)
def test_dateline_blocks_dropped(dateline: str) -> None:
    paragraphs = split_paragraphs(f"{dateline}\n\nThe news itself.\n\nMore news.")
    assert [(p.number, p.text) for p in paragraphs] == [(1, "The news itself."), (2, "More news.")]


def test_dateline_prefix_cut_from_first_paragraph_only() -> None:
    body = "NEW YORK (CNN) — Stocks fell on Monday.\n\nLONDON (CNN) — Second stays whole."
    first, second = split_paragraphs(body)
    assert first.text == "Stocks fell on Monday."
    assert body[first.start : first.end] == "Stocks fell on Monday."
    assert second.text == "LONDON (CNN) — Second stays whole."


@pytest.mark.parametrize(
    "text",
    [
        "WASHINGTON (Reuters) - A hyphen is too common to cut on.",
        "Amazon — the retailer — said so.",
        "NATO — the alliance said it would meet.",
        "Short answer - yes, it is.",
    ],
)
def test_no_false_dateline(text: str) -> None:
    assert [p.text for p in split_paragraphs(text)] == [text]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Updated\n 9:55 AM EDT, Mon September 25, 2023", "2023-09-25T09:55:00-04:00"),
        ("Published 10:00 AM GMT, Tue January 3, 2023", "2023-01-03T10:00:00+00:00"),
        ("25 Sep 2023 14:05 BST", "2023-09-25T14:05:00+01:00"),
        ("3 March 2024, 08:00 CET", "2024-03-03T08:00:00+01:00"),
        ("Jan 5, 2024 6:00 PM PST", "2024-01-05T18:00:00-08:00"),
        ("2023-09-25T09:55:00Z", "2023-09-25T09:55:00+00:00"),
        ("September 25, 2023", "2023-09-25"),
        ("2024-03-12 10:30", "2024-03-12T10:30:00"),
        ("Sept 25", None),
        ("9:55 AM", None),
        ("no date here", None),
        ("", None),
    ],
)
def test_normalize_date(text: str, expected: str | None) -> None:
    assert normalize_date(text) == expected


# --------------------------------------------------------------------------- markdown


def test_markdown_article() -> None:
    path = DATA / "article.md"
    doc = read_one(path)
    assert doc.format == "markdown"
    assert doc.title == "Solar farm opens on former coal site"
    assert doc.author == "Jane Doe"
    assert doc.publisher == "The Example Times"
    assert doc.published == "2024-05-02T14:30:00+01:00"
    assert doc.url == "https://example.com/solar-farm"
    assert [p.text for p in doc.paragraphs] == [
        # Dateline cut, emphasis stripped, link text kept, image dropped.
        "A 50-megawatt solar farm opened on Thursday on the site of a coal mine that closed"
        " in 1994, the operator said.",
        "The project will power about 15,000 homes, according to the operator's figures.",
        "Panels cover 80 hectares.",
        "Sheep will graze between the rows.",
        '"This is a fitting second life for the land," said the mayor.',
    ]
    text = path.read_text(encoding="utf-8")
    first = doc.paragraphs[0]
    assert text[first.start : first.end].startswith("A **50-megawatt** solar farm")
    assert text[first.start : first.end].endswith("said.")
    assert text[doc.paragraphs[4].start : doc.paragraphs[4].end].startswith("> ")
    joined = " ".join(p.text for p in doc.paragraphs)
    for absent in ("Why it matters", "code blocks", "HTML-BLOCK-MARKER", "Aerial view"):
        assert absent not in joined


def test_markdown_title_fallbacks(tmp_path: Path) -> None:
    doc = read_one(DATA / "no_title.markdown")
    assert doc.title == "no_title"
    assert [p.number for p in doc.paragraphs] == [1, 2]
    assert doc.paragraphs[0].text.endswith("spread over two lines.")

    path = tmp_path / "fm.md"
    path.write_text("---\ntitle: 'From front matter'\n---\n# Heading\n\nText.\n", encoding="utf-8")
    doc = read_one(path)
    assert doc.title == "From front matter"
    assert [p.text for p in doc.paragraphs] == ["Text."]


# --------------------------------------------------------------------------- html


def test_html_article() -> None:
    path = DATA / "article.html"
    doc = read_one(path)
    assert doc.format == "html"
    assert doc.title == "City council approves new river bridge"
    assert doc.author == "Maria Lopez"
    assert doc.publisher == "The Riverside Gazette"
    assert doc.published == "2024-03-12T08:30:00-05:00"  # from article:published_time
    assert doc.url == "https://gazette.example.com/2024/03/12/river-bridge"
    assert [p.number for p in doc.paragraphs] == [1, 2, 3, 4]
    assert doc.paragraphs[0].text.startswith("The city council voted 7 to 2")
    assert doc.paragraphs[3].text.endswith("as the design work moves ahead this year.")
    joined = "\n".join(p.text for p in doc.paragraphs)
    for absent in ("NAV-MARKER", "SCRIPT-MARKER", "FOOTER-MARKER", "Related stories", "Privacy"):
        assert absent not in joined
    assert doc.title not in joined  # the repeated <h1> is the title, not a paragraph


def test_html_without_article_text(tmp_path: Path) -> None:
    path = tmp_path / "empty.html"
    path.write_text(
        "<html><head><title>x</title><script>var a = 1;</script></head><body></body></html>"
    )
    with pytest.raises(ValueError, match="no article text found"):
        read_file(path)


# --------------------------------------------------------------------------- jsonl


def test_jsonl_articles_and_bad_lines() -> None:
    path = DATA / "articles.jsonl"
    resolved = str(path.resolve())
    documents, failures = read_file(path)
    by_source = {d.source: d for d in documents}
    assert list(by_source) == [f"{resolved}#a1", f"{resolved}#3", f"{resolved}#8"]

    first = by_source[f"{resolved}#a1"]
    assert first.format == "jsonl"
    assert first.path == resolved
    assert first.title == "Rates held"
    assert first.author == "Ann Lee, Bo Chan"
    assert first.publisher == "Example Wire"
    assert first.published == "2023-09-25T09:55:00-04:00"
    assert first.url == "https://example.com/rates"
    assert [(p.number, p.text) for p in first.paragraphs] == [
        (1, "The central bank held rates at 5%."),
        (2, "It said inflation was easing."),
    ]
    assert by_source[f"{resolved}#3"].title == "articles #3"  # "body" field, id = line number
    ferry = by_source[f"{resolved}#8"]
    assert ferry.published == "2024-01-05"
    assert ferry.paragraphs[0].text == "Ferries resumed sailing on Friday."

    reasons = {f.path: f.reason for f in failures}
    assert list(reasons) == [f"{resolved}:{n}" for n in (4, 5, 6, 7)]
    assert reasons[f"{resolved}:4"] == "'text' is empty"
    assert reasons[f"{resolved}:5"].startswith("invalid JSON")
    assert reasons[f"{resolved}:6"] == "duplicate id 'a1' (first on line 1)"
    assert reasons[f"{resolved}:7"] == "expected a JSON object, got list"


# --------------------------------------------------------------------------- files and kinds


def test_iter_files_recursive_sorted_without_hidden() -> None:
    tree = DATA / "tree"
    files = list(iter_files([tree]))
    assert [f.relative_to(tree).as_posix() for f in files] == [
        "b_top.txt",
        "sub/a_note.md",
        "sub/deeper/deep.txt",
        "sub/report.pdf",
    ]
    # A file given again (or also inside a given folder) comes once.
    assert list(iter_files([tree / "b_top.txt", tree])) == [tree / "b_top.txt", *files[1:]]
    # A hidden file named explicitly is read: the user asked for it.
    assert list(iter_files([str(tree / ".dotfile.txt")])) == [tree / ".dotfile.txt"]


def test_iter_files_missing_path() -> None:
    with pytest.raises(FileNotFoundError):
        list(iter_files([DATA / "tree", DATA / "does-not-exist"]))


def test_read_folder_of_mixed_files() -> None:
    read: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for path in iter_files([DATA / "tree"]):
        try:
            documents, _ = read_file(path)
        except UnsupportedFile as why:
            skipped[path.name] = str(why)
            continue
        read[path.name] = documents[0].format
    assert read == {"b_top.txt": "text", "a_note.md": "markdown", "deep.txt": "text"}
    assert skipped == {"report.pdf": "unsupported file type '.pdf'"}


def test_unsupported_and_unreadable(tmp_path: Path) -> None:
    assert supported_suffixes() == {
        ".txt",
        ".md",
        ".markdown",
        ".html",
        ".htm",
        ".jsonl",
        ".ndjson",
    }
    for name, reason in [
        ("scan.pdf", "unsupported file type '.pdf'"),
        ("Makefile", "unsupported file type (no extension)"),
    ]:
        path = tmp_path / name
        path.write_bytes(b"x")
        with pytest.raises(UnsupportedFile) as caught:
            read_file(path)
        assert str(caught.value) == reason
        assert not isinstance(caught.value, ValueError)

    empty = tmp_path / "empty.txt"
    empty.write_text("  \n\n")
    with pytest.raises(ValueError, match="empty file"):
        read_file(empty)
    binary = tmp_path / "image.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    with pytest.raises(ValueError, match="binary"):
        read_file(binary)
    with pytest.raises(UnreadableFile):
        read_file(tmp_path / "gone.txt")


def test_uppercase_suffix(tmp_path: Path) -> None:
    path = tmp_path / "LOUD.TXT"
    path.write_text("Headline\n\nBody text.\n")
    assert read_one(path).format == "text"
