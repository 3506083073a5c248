"""Parsers on real files: the sample CNN article, BBC stories and small fixtures per format."""

from __future__ import annotations

import codecs
import errno
import os
import random
from pathlib import Path

import pytest

from rag.parsers import (
    NOT_A_REGULAR_FILE,
    UnreadableFile,
    UnsupportedFile,
    check_supported,
    iter_files,
    read_file,
    supported_suffixes,
)
from rag.parsers.common import (
    decode_bytes,
    fold_whitespace,
    normalize_date,
    path_text,
    split_paragraphs,
)
from rag.types import Document, FileFailure

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


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        # trafilatura's fallback would return "Home World Sport" as the article.
        (
            '<nav><a href="/">Home</a> <a href="/world">World</a> <a href="/s">Sport</a></nav>',
            "no article text found",
        ),
        ('<div role="navigation"><a href="/">Home</a></div>', "no article text found"),
        ('<div id="app"></div><noscript>Please enable JavaScript.</noscript>', "no article"),
        ("<h1>Only a headline</h1>", "no article text found"),
        (
            '<div class="menu"><p><a href="/">Home</a></p><p><a href="/news">News</a></p></div>',
            "no article text found (only links)",
        ),
    ],
)
def test_html_pages_without_an_article(tmp_path: Path, body: str, reason: str) -> None:
    path = tmp_path / "page.html"
    path.write_text(f"<html><head><title>Only a headline</title></head><body>{body}</body></html>")
    with pytest.raises(ValueError) as caught:
        read_file(path)
    assert str(caught.value).startswith(reason)


def test_html_article_with_links_in_its_text_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "linked.html"
    path.write_text(
        "<html><head><title>Rates</title></head><body><nav><a href='/'>Home</a></nav><article>"
        "<p>The <a href='/bank'>central bank</a> held rates at 5% on Thursday.</p>"
        "<p>Inflation was easing, it said, and the next meeting is in June.</p>"
        "<p><a href='/more'>Read more</a></p></article></body></html>"
    )
    doc = read_one(path)
    assert doc.paragraphs[0].text.startswith("The central bank held rates at 5% on Thursday.")
    assert not any("Home" in p.text for p in doc.paragraphs)


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


def test_jsonl_lone_surrogate_is_replaced(tmp_path: Path) -> None:
    """JSON may escape half a surrogate pair; such text cannot be stored, so it is mended."""
    path = tmp_path / "odd.jsonl"
    path.write_text('{"id": "x\\udfff", "title": "\\ud83d", "text": "Half \\ud800 a pair."}\n')
    doc = read_one(path)
    assert doc.paragraphs[0].text == "Half \ufffd a pair."
    assert doc.title == "\ufffd"
    assert doc.source.endswith("#x\ufffd")
    doc.source.encode("utf-8")  # storable


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


def test_check_supported_reads_only_the_name(tmp_path: Path) -> None:
    check_supported(tmp_path / "never-created.TXT")
    with pytest.raises(UnsupportedFile, match=r"unsupported file type '\.mp4'"):
        check_supported(tmp_path / "film.mp4")


@pytest.mark.parametrize("suffix", [".txt", ".md", ".html", ".jsonl"])
@pytest.mark.parametrize("content", [b"", b"  \n\n\t \r\n"])
def test_empty_file_in_every_format(tmp_path: Path, suffix: str, content: bytes) -> None:
    path = tmp_path / f"empty{suffix}"
    path.write_bytes(content)
    with pytest.raises(ValueError) as caught:
        read_file(path)
    assert str(caught.value) == "empty file"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("photo.png", "binary content (a PNG image) in a '.txt' file, not text"),
        ("photo.jpg", "binary content (a JPEG image) in a '.txt' file, not text"),
    ],
)
def test_image_renamed_to_txt(tmp_path: Path, name: str, reason: str) -> None:
    path = tmp_path / "picture.txt"
    path.write_bytes((DATA / name).read_bytes())
    with pytest.raises(ValueError) as caught:
        read_file(path)
    assert str(caught.value) == reason


def test_binary_content_is_told_from_text(tmp_path: Path) -> None:
    noise = random.Random(1).randbytes(3000)
    cases = {
        "nul.txt": b"Title\n\nText with a NUL \x00 byte.\n",
        "no-nul.txt": noise.replace(b"\x00", b"\x02"),  # compressed data need not hold a NUL
        "pdf.txt": b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n",
        "gzip.md": b"\x1f\x8b\x08\x00" + noise[:100],
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ValueError, match=r"^binary content.* file, not text$"):
            read_file(path)
    # Text keeps its tabs, form feeds and line breaks, and its odd stray control byte.
    text = tmp_path / "text.txt"
    text.write_bytes(b"Title\n\n\tIndented text,\x0c a form feed\r\n" + b"word " * 40 + b"\x01.\n")
    assert read_one(text).title == "Title"
    utf16 = tmp_path / "utf16.txt"
    utf16.write_bytes(codecs.BOM_UTF16_LE + "Zoë\n\nHer story.\n".encode("utf-16-le"))
    assert read_one(utf16).title == "Zoë"


def test_read_file_uses_the_bytes_given(tmp_path: Path) -> None:
    """The ingest hashes the bytes it read and hands them over: the file is read once."""
    documents, failures = read_file(tmp_path / "not-on-disk.txt", b"Headline\n\nBody text.\n")
    assert failures == []
    assert [(d.title, d.paragraphs[0].text) for d in documents] == [("Headline", "Body text.")]


def test_path_text_escapes_names_that_are_not_utf8() -> None:
    assert path_text("/news/café.txt") == "/news/café.txt"
    assert path_text(Path(os.fsdecode(b"/news/caf\xe9.txt"))) == "/news/caf\\xe9.txt"
    assert path_text("half \ud800 a pair") == "half \\ud800 a pair"  # no file system makes it


def test_latin1_file_name_is_read(tmp_path: Path) -> None:
    path = tmp_path / os.fsdecode(b"r\xe9sum\xe9.md")
    path.write_text("# Résumé\n\nA short story.\n")
    doc = read_one(path)
    assert doc.source == f"{tmp_path.resolve()}/r\\xe9sum\\xe9.md"
    assert doc.title == "Résumé"
    (tmp_path / os.fsdecode(b"\xff.md")).write_text("No heading, just a paragraph.\n")
    assert read_one(tmp_path / os.fsdecode(b"\xff.md")).title == "\\xff"


def test_iter_files_names_links_and_special_files(tmp_path: Path) -> None:
    """Links to files are followed, links to folders are not (no cycles); the rest is named."""
    folder = tmp_path / "walk"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "story.txt").write_text("Story\n\nText.\n")
    (folder / "linked.txt").symlink_to(folder / "sub" / "story.txt")
    (folder / "loop.txt").symlink_to("loop.txt")
    (folder / "dangling.md").symlink_to("gone.md")
    (folder / "sub" / "up").symlink_to("..", target_is_directory=True)
    os.mkfifo(folder / "pipe.txt")
    skipped: list[FileFailure] = []
    failed: list[FileFailure] = []
    files = list(iter_files([folder], skipped=skipped, failed=failed))
    # The link and its target are one file: it comes once, under the first name reached.
    assert [f.relative_to(folder).as_posix() for f in files] == ["linked.txt"]
    assert {os.path.relpath(f.path, folder): f.reason for f in skipped} == {
        "pipe.txt": NOT_A_REGULAR_FILE,
        "sub/up": "link to a folder: not followed (give the folder itself to read it)",
    }
    assert {os.path.relpath(f.path, folder): f.reason for f in failed} == {
        "dangling.md": "broken symbolic link (its target does not exist)",
        "loop.txt": "symbolic link loop",
    }
    # Without the lists the walk is as quiet as before; a linked folder given by name is read.
    assert list(iter_files([folder])) == files
    assert list(iter_files([folder / "sub" / "up"])) == [folder / "sub" / "up" / "linked.txt"]


def test_iter_files_given_a_looping_link(tmp_path: Path) -> None:
    (tmp_path / "loop.txt").symlink_to("loop.txt")
    with pytest.raises(OSError) as caught:
        list(iter_files([tmp_path / "loop.txt"]))
    assert caught.value.errno == errno.ELOOP
