"""Messy folders: every bad file is named in the ingest report with its reason, the rest ingested.

One folder holds every kind of bad input at once, as users' folders do, and is
ingested once for the module; each test then checks what became of its own file.
Cases that need a setting, the command line, another user or many files have
their own folders. Everything is real: real files (the BBC file that is not UTF-8,
a PNG and a JPEG written by an image library), the real embedder, real SQLite.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import QUESTION, SAMPLE_NAME
from typer.testing import CliRunner

from rag import RAG, api
from rag.cli import app
from rag.embed import Embedder
from rag.parsers import NOT_A_REGULAR_FILE
from rag.types import FileFailure, IngestReport

DATA = Path(__file__).resolve().parent / "data"
runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})

FOLDER_LINK = "link to a folder: not followed (give the folder itself to read it)"
# A file name that is not UTF-8 (Latin-1 "café.txt"), as old archives have; Python
# holds the stray byte as a lone surrogate, which the report shows as \xe9.
LATIN1_NAME = os.fsdecode(b"caf\xe9.txt")
LATIN1_TEXT = (
    "Hausse du prix du café\n\n"
    "À Genève, le café crème coûte désormais 3,50 francs, dit la brasserie Müller.\n\n"
    "Les habitués réagissent « sans surprise ».\n"
)
JSONL_LINES = [
    '{"id": "rates", "title": "Rates held", "text": "The central bank held rates at 5%."}',
    '{"id": "broken", "text": "a closing brace is missing"',
    '["not", "an", "object"]',
    '{"id": "notext", "title": "No text"}',
    "",
    '{"id": "odd", "title": "Odd", "text": "A lone \\ud800 surrogate is replaced."}',
    '{"id": "ferry", "text": "Ferries resumed sailing on Friday."}',
    '{"id": "cut", "text": "The file was cut off mid-wr',  # a truncated last line
]
NO_BODY_HTML = (
    "<!doctype html><html><head><title>Example News</title><script>var a = 1;</script>"
    '</head><body><nav><ul><li><a href="/">Home</a></li><li><a href="/world">World</a></li>'
    '<li><a href="/sport">Sport</a></li></ul></nav><noscript>Please enable JavaScript.'
    "</noscript></body></html>"
)
MENU_HTML = (
    "<html><head><title>Index</title></head><body><div class='menu'><ul>"
    '<li><a href="/">Home</a></li><li><a href="/news">News</a></li>'
    '<li><a href="/about">About us</a></li></ul></div></body></html>'
)

# What the messy folder's bad files must be reported as (path relative to the folder).
BINARY = "binary content in a '.txt' file, not text"
EXPECTED_FAILED = {
    "blank.md": "empty file",
    "dangling.txt": "broken symbolic link (its target does not exist)",
    "empty.txt": "empty file",
    "feed.jsonl:2": "invalid JSON: Expecting ',' delimiter (column 54)",
    "feed.jsonl:3": "expected a JSON object, got list",
    "feed.jsonl:4": "missing 'text' (or 'body')",
    "feed.jsonl:8": "invalid JSON: Unterminated string starting at (column 23)",
    "menu.html": "no article text found (only links)",
    "no-body.html": "no article text found",
    "noise-without-nul.txt": BINARY,
    "noise.txt": BINARY,
    "photo-jpg.txt": "binary content (a JPEG image) in a '.txt' file, not text",
    "photo-png.txt": "binary content (a PNG image) in a '.txt' file, not text",
    "self.txt": "symbolic link loop",
}
EXPECTED_SKIPPED = {
    "README": "unsupported file type (no extension)",
    "cycle/back": FOLDER_LINK,
    "cycle/here": FOLDER_LINK,
    "notes.xyz": "unsupported file type '.xyz'",
    "photo.jpg": "unsupported file type '.jpg'",
    "photo.png": "unsupported file type '.png'",
    "pipe.txt": NOT_A_REGULAR_FILE,
}
EXPECTED_SOURCES = {
    SAMPLE_NAME,
    "bbc/001.txt",
    "bbc/199.txt",
    "feed.jsonl#ferry",
    "feed.jsonl#odd",
    "feed.jsonl#rates",
    "latin1.txt",
    "caf\\xe9.txt",
}


def named(entries: list[FileFailure], folder: Path) -> dict[str, str]:
    """Report entries as {path relative to ``folder``: reason}."""
    return {os.path.relpath(e.path, folder): e.reason for e in entries}


def sources(rag: RAG, folder: Path) -> set[str]:
    """Sources of the stored articles under ``folder``, relative to it."""
    return {os.path.relpath(s, folder) for s, _ in rag.store.sources_matching(f"{folder}/*")}


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def write_article(path: Path, title: str, *paragraphs: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join([title, *paragraphs]) + "\n")
    return path


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    """The real embedder, loaded once: loading it is most of the time of a small ingest."""
    return Embedder()


@pytest.fixture
def one_embedder(embedder: Embedder, monkeypatch: pytest.MonkeyPatch) -> Embedder:
    """Every RAG the test opens (the command line's too) uses the module's embedder."""
    monkeypatch.setattr(api, "Embedder", lambda *args, **kwargs: embedder)
    return embedder


# --------------------------------------------------------------------------- the messy folder


@dataclass
class Messy:
    folder: Path
    report: IngestReport
    rag: RAG
    seconds: float


def build_messy_folder(folder: Path, sample_article: Path, bbc_dir: Path) -> None:
    """Good articles among every kind of bad file a folder of downloads collects."""
    # Good files: the sample, two BBC stories (one of them the file that is not UTF-8),
    # Latin-1 text, and a good article whose name is not UTF-8.
    shutil.copy(sample_article, folder / SAMPLE_NAME)
    (folder / "bbc").mkdir()
    shutil.copy(bbc_dir / "business" / "001.txt", folder / "bbc" / "001.txt")
    shutil.copy(bbc_dir / "sports" / "199.txt", folder / "bbc" / "199.txt")
    (folder / "latin1.txt").write_bytes(LATIN1_TEXT.encode("latin-1"))
    (folder / LATIN1_NAME).write_bytes(b"Odd name\n\nThe name of this file is Latin-1.\n")
    (folder / "feed.jsonl").write_text("\n".join(JSONL_LINES))
    # Empty, binary, images with their own extension and renamed to .txt.
    (folder / "empty.txt").write_bytes(b"")
    (folder / "blank.md").write_text("\n  \n\t\n")
    noise = random.Random(0).randbytes(4096)
    (folder / "noise.txt").write_bytes(noise)
    (folder / "noise-without-nul.txt").write_bytes(noise.replace(b"\x00", b"\x01"))
    for image in ("photo.png", "photo.jpg"):
        shutil.copy(DATA / image, folder / image)
        shutil.copy(DATA / image, folder / (image.replace(".", "-") + ".txt"))
    # Web pages without an article, unknown kinds, a hidden file (ignored quietly).
    (folder / "no-body.html").write_text(NO_BODY_HTML)
    (folder / "menu.html").write_text(MENU_HTML)
    (folder / "notes.xyz").write_text("Some notes in an unknown format.\n")
    (folder / "README").write_text("Read me.\n")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    # Links: to itself, to nothing, and two folder links that make cycles.
    (folder / "self.txt").symlink_to("self.txt")
    (folder / "dangling.txt").symlink_to("no-such-target.txt")
    (folder / "cycle").mkdir()
    (folder / "cycle" / "back").symlink_to("..", target_is_directory=True)
    (folder / "cycle" / "here").symlink_to(".", target_is_directory=True)
    # A named pipe: reading it would wait for a writer for ever.
    os.mkfifo(folder / "pipe.txt")


@pytest.fixture(scope="module")
def messy(
    tmp_path_factory: pytest.TempPathFactory,
    sample_article: Path,
    bbc_dir: Path,
    embedder: Embedder,
) -> Iterator[Messy]:
    folder = tmp_path_factory.mktemp("messy").resolve()
    build_messy_folder(folder, sample_article, bbc_dir)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(api, "Embedder", lambda *args, **kwargs: embedder)
        rag = RAG(tmp_path_factory.mktemp("index"), progress=False)
        started = time.perf_counter()
        report = rag.ingest([folder])
        seconds = time.perf_counter() - started
        yield Messy(folder, report, rag, seconds)
        rag.close()


def test_messy_folder_names_every_bad_file_and_ingests_the_rest(messy: Messy) -> None:
    """Nothing is dropped silently (hidden files aside) and no bad file stops the others."""
    assert named(messy.report.failed, messy.folder) == EXPECTED_FAILED
    assert named(messy.report.skipped, messy.folder) == EXPECTED_SKIPPED
    assert sources(messy.rag, messy.folder) == EXPECTED_SOURCES
    assert messy.report.added == len(EXPECTED_SOURCES)
    assert messy.rag.search(QUESTION, k=1)[0].paragraph == 10
    assert messy.seconds < 60  # the pipe and the link cycles did not hold it up


def test_messy_folder_reingest_reports_the_same(messy: Messy) -> None:
    """A second run changes nothing and names the same bad files again, bad JSONL lines too."""
    again = messy.rag.ingest([messy.folder])
    assert (again.added, again.updated, again.removed, again.embedded) == (0, 0, 0, 0)
    assert again.unchanged == len(EXPECTED_SOURCES)
    assert named(again.failed, messy.folder) == EXPECTED_FAILED
    assert named(again.skipped, messy.folder) == EXPECTED_SKIPPED


def test_empty_file(messy: Messy) -> None:
    failed = named(messy.report.failed, messy.folder)
    assert failed["empty.txt"] == "empty file"
    assert failed["blank.md"] == "empty file"  # only whitespace is empty too


def test_binary_file_with_a_text_extension(messy: Messy) -> None:
    """Random bytes are binary whether or not a NUL byte gives them away."""
    failed = named(messy.report.failed, messy.folder)
    assert failed["noise.txt"] == BINARY
    assert b"\x00" not in (messy.folder / "noise-without-nul.txt").read_bytes()
    assert failed["noise-without-nul.txt"] == BINARY


def test_images_with_their_own_extension_are_skipped(messy: Messy) -> None:
    skipped = named(messy.report.skipped, messy.folder)
    assert skipped["photo.png"] == "unsupported file type '.png'"
    assert skipped["photo.jpg"] == "unsupported file type '.jpg'"


def test_images_renamed_to_txt_fail_as_binary(messy: Messy) -> None:
    failed = named(messy.report.failed, messy.folder)
    assert failed["photo-png.txt"] == "binary content (a PNG image) in a '.txt' file, not text"
    assert failed["photo-jpg.txt"] == "binary content (a JPEG image) in a '.txt' file, not text"


def test_latin1_text_is_decoded(messy: Messy) -> None:
    with pytest.raises(UnicodeDecodeError):
        (messy.folder / "latin1.txt").read_bytes().decode("utf-8")
    hits = messy.rag.search("café crème Genève", k=1, source="*/latin1.txt")
    assert hits[0].title == "Hausse du prix du café"
    assert hits[0].text == (
        "À Genève, le café crème coûte désormais 3,50 francs, dit la brasserie Müller."
    )


def test_bbc_file_that_is_not_utf8_is_ingested(messy: Messy) -> None:
    with pytest.raises(UnicodeDecodeError):
        (messy.folder / "bbc" / "199.txt").read_bytes().decode("utf-8")
    hits = messy.rag.search("Mutu signing from Parma fee", k=1, source="*/bbc/199.txt")
    assert hits[0].title == "Chelsea sack Mutu"
    assert "£15.8m signing from Parma" in hits[0].text


def test_html_without_article_body(messy: Messy) -> None:
    """A page of navigation or links is no article, even though it holds text."""
    failed = named(messy.report.failed, messy.folder)
    assert failed["no-body.html"] == "no article text found"
    assert failed["menu.html"] == "no article text found (only links)"


def test_malformed_jsonl_lines_are_named_and_good_lines_ingested(messy: Messy) -> None:
    failed = named(messy.report.failed, messy.folder)
    assert {k: v for k, v in failed.items() if k.startswith("feed.jsonl")} == {
        "feed.jsonl:2": "invalid JSON: Expecting ',' delimiter (column 54)",
        "feed.jsonl:3": "expected a JSON object, got list",
        "feed.jsonl:4": "missing 'text' (or 'body')",
        "feed.jsonl:8": "invalid JSON: Unterminated string starting at (column 23)",
    }
    stored = {s for s in sources(messy.rag, messy.folder) if s.startswith("feed.jsonl")}
    assert stored == {"feed.jsonl#rates", "feed.jsonl#odd", "feed.jsonl#ferry"}
    # A lone surrogate escape is legal JSON but no UTF-8: replaced, not a crash.
    odd = messy.rag.search("lone surrogate replaced", k=1, source="*/feed.jsonl#odd")
    assert odd[0].text == "A lone \ufffd surrogate is replaced."


def test_unknown_extension_is_skipped(messy: Messy) -> None:
    skipped = named(messy.report.skipped, messy.folder)
    assert skipped["notes.xyz"] == "unsupported file type '.xyz'"
    assert skipped["README"] == "unsupported file type (no extension)"


def test_symlink_loops_are_named_and_not_followed(messy: Messy) -> None:
    """Links to folders are not followed (so cycles end), broken or looping links are named."""
    failed = named(messy.report.failed, messy.folder)
    skipped = named(messy.report.skipped, messy.folder)
    assert failed["self.txt"] == "symbolic link loop"
    assert failed["dangling.txt"] == "broken symbolic link (its target does not exist)"
    assert skipped["cycle/back"] == skipped["cycle/here"] == FOLDER_LINK
    # Given by name, a looping link is named once (not again from the folder walk).
    report = messy.rag.ingest([messy.folder / "self.txt", messy.folder])
    assert [e.reason for e in report.failed if e.path.endswith("self.txt")] == [
        "symbolic link loop"
    ]


def test_file_name_that_is_not_utf8(messy: Messy, tmp_path: Path, one_embedder: Embedder) -> None:
    """Read, stored and named with the stray byte escaped; JSON output does not crash."""
    assert "caf\\xe9.txt" in sources(messy.rag, messy.folder)
    folder = tmp_path / "names"
    folder.mkdir()
    (folder / os.fsdecode(b"\xff-empty.txt")).write_bytes(b"")
    write_article(folder / "good.txt", "Good", "A good article.")
    result = invoke(
        "ingest", str(folder), "--index", str(tmp_path / "i"), "--no-progress", "--json"
    )
    assert result.exit_code == 3
    report = json.loads(result.stdout)
    assert report["added"] == 1
    assert report["failed"] == [{"path": f"{folder}/\\xff-empty.txt", "reason": "empty file"}]


def test_pipe_is_skipped_without_blocking(messy: Messy) -> None:
    assert named(messy.report.skipped, messy.folder)["pipe.txt"] == NOT_A_REGULAR_FILE


# --------------------------------------------------------------------------- exit status


def test_exit_0_when_every_file_is_ingested_or_skipped(
    tmp_path: Path, one_embedder: Embedder
) -> None:
    folder = tmp_path / "ok"
    write_article(folder / "story.txt", "Story", "A story about tea.")
    shutil.copy(DATA / "photo.png", folder / "photo.png")
    index = str(tmp_path / "index")
    result = invoke("ingest", str(folder), "--index", index, "--no-progress")
    assert result.exit_code == 0, result.output
    assert "1 added" in result.output and "1 skipped, 0 failed" in result.output
    assert "skipped" in result.output and "photo.png: unsupported file type '.png'" in result.output
    assert invoke("ingest", str(folder), "--index", index, "--no-progress").exit_code == 0


def test_exit_3_when_some_files_fail_and_the_rest_is_ingested(
    tmp_path: Path, one_embedder: Embedder
) -> None:
    folder = tmp_path / "partly"
    write_article(folder / "story.txt", "Story", "A story about tea.")
    (folder / "empty.txt").write_bytes(b"")
    index = str(tmp_path / "index")
    result = invoke("ingest", str(folder), "--index", index, "--no-progress")
    assert result.exit_code == 3, result.output
    assert "1 added" in result.output and "1 failed" in result.output
    assert "empty.txt: empty file" in result.output and "Traceback" not in result.output
    # Unchanged files count as ingested: a re-run is still partial, not a failure.
    result = invoke("ingest", str(folder), "--index", index, "--no-progress", "--json")
    assert result.exit_code == 3
    assert json.loads(result.stdout)["unchanged"] == 1


def test_exit_1_when_every_file_fails_or_none_is_found(tmp_path: Path) -> None:
    """Nothing to embed here, so no model is loaded."""
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "empty.txt").write_bytes(b"")
    shutil.copy(DATA / "photo.png", folder / "photo.txt")
    index = str(tmp_path / "index")
    result = invoke("ingest", str(folder), "--index", index, "--no-progress")
    assert result.exit_code == 1
    assert "0 added" in result.output and "2 failed" in result.output
    assert "photo.txt: binary content (a PNG image)" in result.output

    nothing = tmp_path / "nothing"
    nothing.mkdir()
    result = invoke("ingest", str(nothing), "--index", index, "--no-progress")
    assert result.exit_code == 1
    assert "Nothing ingested: no files found" in result.output
    only_skipped = tmp_path / "pictures"
    only_skipped.mkdir()
    shutil.copy(DATA / "photo.jpg", only_skipped / "photo.jpg")
    assert invoke("ingest", str(only_skipped), "--index", index, "--no-progress").exit_code == 1


def test_exit_2_on_usage_errors(tmp_path: Path) -> None:
    assert invoke("ingest", "--index", str(tmp_path / "i")).exit_code == 2  # no paths
    result = invoke("ingest", str(tmp_path), "--max-file-mb", "lots")
    assert result.exit_code == 2


def test_help_documents_the_exit_status() -> None:
    result = invoke("ingest", "--help")
    assert "Exit status" in result.output and "--max-file-mb" in result.output
    assert "RAG_MAX_FILE_MB" in result.output


# --------------------------------------------------------------------------- paths given


def test_missing_path_on_the_command_line(tmp_path: Path, one_embedder: Embedder) -> None:
    """The missing path is named; the files and folders given beside it are ingested."""
    one = write_article(tmp_path / "one.txt", "One", "The first story.")
    folder = tmp_path / "more"
    write_article(folder / "two.txt", "Two", "The second story.")
    missing = tmp_path / "no-such-folder"
    index = str(tmp_path / "index")
    args = ("ingest", str(one), str(missing), str(folder), "--index", index, "--no-progress")
    result = invoke(*args, "--json")
    assert result.exit_code == 3
    report = json.loads(result.stdout)
    assert report["added"] == 2
    assert report["failed"] == [{"path": str(missing), "reason": "no such file or folder"}]
    result = invoke("ingest", str(missing), "--index", index, "--no-progress")
    assert result.exit_code == 1
    assert "no-such-folder: no such file or folder" in result.output


# --------------------------------------------------------------------------- size limit


def write_big_text(path: Path, megabytes: int) -> None:
    """A real text file of ``megabytes`` MB: the same short paragraph over and over."""
    block = ("A paragraph of a very long log that nobody should embed whole.\n\n" * 16384).encode()
    assert len(block) == 1024 * 1024
    with path.open("wb") as handle:
        for _ in range(megabytes):
            handle.write(block)


def test_file_over_the_size_limit_is_skipped_unread(tmp_path: Path, one_embedder: Embedder) -> None:
    """A 100 MB file is judged by its size (stat), never read: memory stays small."""
    folder = tmp_path / "big"
    folder.mkdir()
    write_big_text(folder / "huge.txt", 100)
    write_article(folder / "small.txt", "Small", "A small story beside a huge file.")
    rag = RAG(tmp_path / "index", progress=False)
    rag.embedder  # noqa: B018  (loaded before measuring: the model is not the file)
    tracemalloc.start()
    try:
        report = rag.ingest([folder])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        (folder / "huge.txt").unlink()  # pytest keeps the last runs' folders
    assert report.added == 1 and report.failed == []
    assert named(report.skipped, folder) == {
        "huge.txt": "too large: 100.0 MB, over the 50 MB limit "
        "(raise it with --max-file-mb or RAG_MAX_FILE_MB)"
    }
    assert peak < 10 * 1024 * 1024, f"peak {peak / 2**20:.1f} MB of Python memory"


def test_max_file_mb_in_the_ingest_module(tmp_path: Path, embedder: Embedder) -> None:
    """The limit is a parameter of rag.ingest.ingest; a file just under it is read."""
    from rag import ingest as ingest_mod
    from rag.stores.folder import FolderStore

    folder = tmp_path / "sized"
    write_article(folder / "small.txt", "Small", "A small story.")
    write_big_text(folder / "two-mb.txt", 2)
    store = FolderStore(tmp_path / "index", create=True, dimension=lambda: embedder.info.dimension)
    report = ingest_mod.ingest(
        [folder], store, lambda: embedder, max_file_mb=1.5, show_progress=False
    )
    store.close()
    assert report.added == 1
    assert named(report.skipped, folder) == {
        "two-mb.txt": "too large: 2.0 MB, over the 1.5 MB limit "
        "(raise it with --max-file-mb or RAG_MAX_FILE_MB)"
    }


def test_max_file_mb_option_and_variable(
    tmp_path: Path, one_embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "sized"
    write_article(folder / "small.txt", "Small", "A small story.")
    write_big_text(folder / "two-mb.txt", 2)
    index = str(tmp_path / "index")
    result = invoke("ingest", str(folder), "--index", index, "--no-progress", "--max-file-mb", "1")
    assert result.exit_code == 0, result.output
    assert "two-mb.txt: too large: 2.0 MB, over the 1 MB limit" in result.output
    monkeypatch.setenv("RAG_MAX_FILE_MB", "1")
    result = invoke("ingest", str(folder), "--index", str(tmp_path / "i2"), "--no-progress")
    assert "over the 1 MB limit" in result.output
    # RAG(...) takes it as a keyword, as every setting.
    report = RAG(tmp_path / "i3", progress=False, max_file_mb=3).ingest([folder])
    assert report.added == 2


# --------------------------------------------------------------------------- permissions


def test_unreadable_file_and_folder(tmp_path: Path) -> None:
    """`rag ingest` in a process that file modes bind: the 000 file and folder are named.

    Root reads files whatever their mode, thanks to two capabilities. Dropping to
    another user is no way out here, as the interpreter lives under /root (mode
    700), so the command runs as root without those two capabilities (setpriv
    takes them out of its bounding set): mode 000 then stops root as it stops
    anyone. Run as another user, the test needs no help.
    """
    articles = tmp_path / "articles"
    write_article(articles / "good.txt", "Good", "A story anyone may read.")
    locked = write_article(articles / "locked.txt", "Locked", "A story nobody may read.")
    private = write_article(articles / "private" / "inside.txt", "Inside", "Hidden away.")
    rag = Path(sys.executable).with_name("rag")
    command = [str(rag), "ingest", str(articles), "--index", str(tmp_path / "index")]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root and util-linux's setpriv is not installed")
        command = [setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--", *command]
    locked.chmod(0o000)
    private.parent.chmod(0o000)
    try:
        result = subprocess.run(
            [*command, "--no-progress", "--json"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        private.parent.chmod(0o755)  # so that pytest can clean up as any user
        locked.chmod(0o644)
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    report = json.loads(result.stdout)
    assert report["added"] == 1
    assert {item["path"]: item["reason"] for item in report["failed"]} == {
        str(private.parent): "cannot read folder: Permission denied",
        str(locked): "cannot read: Permission denied",
    }


# --------------------------------------------------------------------------- many files


def test_ten_thousand_small_files(tmp_path: Path, one_embedder: Embedder) -> None:
    """A folder of 10,000 short notes: all ingested; a re-run reads nothing new."""
    pool = [
        f"Note text number {i}: the council met on a {day} to discuss the {topic}."
        for i, (day, topic) in enumerate(
            (d, t)
            for d in ("Monday", "Tuesday", "Wednesday", "Thursday")
            for t in ("budget", "bridge", "library", "harbour", "school")
        )
    ]
    folder = tmp_path / "notes"
    for n in range(10_000):
        path = folder / f"{n // 100:03d}" / f"{n:05d}.txt"
        if n % 100 == 0:
            path.parent.mkdir(parents=True)
        path.write_text(f"Note {n:05d}\n\n{pool[n % len(pool)]}\n")
    rag = RAG(tmp_path / "index", progress=False)
    started = time.perf_counter()
    report = rag.ingest([folder])
    seconds = time.perf_counter() - started
    assert (report.added, report.failed, report.skipped) == (10_000, [], [])
    assert report.embedded == len(pool)  # the same text is embedded once
    assert rag.info().articles == 10_000
    assert seconds < 120, f"{seconds:.0f} s for 10,000 files"
    again = rag.ingest([folder])
    assert (again.unchanged, again.added, again.embedded) == (10_000, 0, 0)
