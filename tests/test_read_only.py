"""Reading never writes, and every bad value is a usage error that names it.

Commands and API calls that only read (search, ask, chat, info, check without --repair,
eval --retrieval-only on an existing index) must not create or change a file: a mistyped
--index is an error that names the folder and says how to make an index, not an empty new
index. Values out of their settings' bounds fail before any work, the same way from an
option, a RAG_* variable or RAG(**settings).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import QUESTION
from pydantic import ValidationError
from typer.testing import CliRunner

from rag import RAG, EmptyIndex
from rag.cli import app
from rag.errors import NoIndex

TINY = "smollm2-135m"
runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1", "RAG_MODEL": TINY})

# Every command that only reads, with the arguments it needs besides --index.
READERS: dict[str, list[str]] = {
    "search": ["search", QUESTION],
    "ask": ["ask", QUESTION, "--no-progress", "--max-new-tokens", "8"],
    "chat": ["chat", "--no-progress"],
    "info": ["info"],
    "check": ["check"],
}


def invoke(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, list(args), catch_exceptions=False, env=env, input="/quit\n")


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and modification time."""
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def sample_index(tmp_path_factory: pytest.TempPathFactory, sample_article: Path) -> Path:
    folder = tmp_path_factory.mktemp("ro") / "index"
    with RAG(folder, progress=False) as rag:
        rag.ingest(sample_article)
    return folder


@pytest.mark.parametrize("command", list(READERS))
def test_a_mistyped_index_is_named_and_nothing_is_created(tmp_path: Path, command: str) -> None:
    typo = tmp_path / "idnex"
    result = invoke(*READERS[command], "--index", str(typo))
    assert result.exit_code == 1, result.output
    assert str(typo) in result.output.replace("\n", "")
    assert "rag ingest PATH --index" in result.output.replace("\n", "")
    assert "Traceback" not in result.output
    assert not typo.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", list(READERS))
def test_a_folder_that_is_not_an_index_is_refused(tmp_path: Path, command: str) -> None:
    """Like `rag info --index /etc`: a folder of other files is not taken for an index."""
    foreign = tmp_path / "etc"
    foreign.mkdir()
    (foreign / "passwd").write_text("root:x:0:0\n")
    (foreign / "hosts").write_text("127.0.0.1 localhost\n")
    before = snapshot(foreign)
    result = invoke(*READERS[command], "--index", str(foreign))
    assert result.exit_code == 1, result.output
    assert "is not an index" in result.output
    assert snapshot(foreign) == before


@pytest.mark.parametrize("command", ["search", "info", "ingest"])
def test_a_file_is_not_an_index_folder(tmp_path: Path, command: str, sample_article: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not an index\n")
    args = ["ingest", str(sample_article), "--no-progress"] if command == "ingest" else []
    result = invoke(*(args or READERS[command]), "--index", str(path))
    assert result.exit_code == 1, result.output
    assert "is a file, not an index folder" in result.output
    assert path.read_text() == "not an index\n" and sorted(tmp_path.iterdir()) == [path]


def test_ingest_refuses_to_make_an_index_among_other_files(
    tmp_path: Path, sample_article: Path
) -> None:
    foreign = tmp_path / "etc"
    foreign.mkdir()
    (foreign / "passwd").write_text("root:x:0:0\n")
    result = invoke("ingest", str(sample_article), "--index", str(foreign), "--no-progress")
    assert result.exit_code == 1 and "is not an index" in result.output
    assert [p.name for p in foreign.iterdir()] == ["passwd"]
    # A new or empty folder (hidden files aside, as the repository's index/.gitkeep) is fine.
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / ".gitkeep").write_text("")
    result = invoke("ingest", str(sample_article), "--index", str(empty), "--no-progress")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("command", ["search", "ask", "info", "check"])
def test_reading_an_index_changes_no_file(sample_index: Path, command: str) -> None:
    before = snapshot(sample_index)
    result = invoke(*READERS[command], "--index", str(sample_index))
    assert result.exit_code == 0, result.output
    assert snapshot(sample_index) == before


def test_eval_retrieval_only_on_an_existing_index_changes_no_file(
    tmp_path: Path, small_squad: Path
) -> None:
    index = tmp_path / "e"
    args = ["eval", str(small_squad), "--index", str(index), "--retrieval-only", "--no-progress"]
    assert invoke(*args).exit_code == 0  # the first run builds the evaluation index
    before = snapshot(index)
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert snapshot(index) == before


def test_the_api_creates_an_index_only_on_ingest_or_when_asked(
    tmp_path: Path, sample_article: Path
) -> None:
    folder = tmp_path / "index"
    rag = RAG(folder, progress=False)
    with pytest.raises(NoIndex, match="rag ingest PATH"):
        rag.search(QUESTION)
    with pytest.raises(EmptyIndex):  # a folder with no index has no articles
        rag.info()
    assert not folder.exists()
    rag.ingest(sample_article)  # the documented flow: RAG("index") then ingest
    assert (folder / "rag.sqlite").exists()
    assert rag.search(QUESTION, k=1)[0].paragraph == 10
    rag.close()

    made = tmp_path / "made"
    with RAG(made, create=True) as empty:
        assert empty.info().articles == 0
    assert (made / "rag.sqlite").exists()


def test_size_on_disk_counts_the_index_files_only(sample_index: Path) -> None:
    def on_disk() -> int:
        return sum(f.stat().st_size for f in sample_index.rglob("*") if f.is_file())

    stray = sample_index / "big-unrelated.bin"
    with RAG(sample_index, progress=False) as rag:
        assert rag.info().size_bytes == on_disk()  # while open: the database's -wal too
        stray.write_bytes(os.urandom(1_000_000))
        try:
            assert rag.info().size_bytes == on_disk() - 1_000_000
        finally:
            stray.unlink()


# --- bad values -------------------------------------------------------------------------------

BAD_OPTIONS = [
    (["search", "x", "--k", "0"], "'--k'", "greater than or equal to 1"),
    (["search", "x", "--k", "-5"], "'--k'", "greater than or equal to 1"),
    (["search", "x", "--since", "notadate"], "'--since'", "YYYY-MM-DD"),
    (["search", "x", "--until", "31/12/2024"], "'--until'", "YYYY-MM-DD"),
    (["search", "x", "--since", "2024-02-01", "--until", "2024-01-01"], "'--since'", "after"),
    (["search", "x", "--dense-weight", "1.5"], "'--dense-weight'", "less than or equal to 1"),
    (["search", "x", "--fusion", "magic"], "'--fusion'", "magic"),
    (["ask", "x", "--passages", "0"], "'--passages'", "greater than or equal to 1"),
    (["ask", "x", "--passages", "21"], "'--passages'", "less than or equal to 20"),
    (["ask", "x", "--since", "yesterday"], "'--since'", "YYYY-MM-DD"),
    (["ingest", ".", "--max-file-mb", "0"], "'--max-file-mb'", "greater than 0"),
]


@pytest.mark.parametrize(("args", "option", "words"), BAD_OPTIONS)
def test_a_bad_option_value_is_a_usage_error_naming_it(
    sample_index: Path, args: list[str], option: str, words: str
) -> None:
    before = snapshot(sample_index)
    result = invoke(*args, "--index", str(sample_index))
    assert result.exit_code == 2, result.output
    assert option in result.output and words in result.output, result.output
    assert "No paragraph matches" not in result.output and "Traceback" not in result.output
    assert snapshot(sample_index) == before


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [("RAG_K", "0", "greater than or equal to 1"), ("RAG_FUSION", "magic", "weighted")],
)
def test_a_bad_variable_is_a_usage_error_naming_it(
    sample_index: Path, variable: str, value: str, words: str
) -> None:
    result = invoke("search", "x", "--index", str(sample_index), env={variable: value})
    assert result.exit_code == 2, result.output
    assert variable in result.output and words in result.output, result.output


def test_the_same_values_fail_the_same_way_in_the_api(sample_index: Path) -> None:
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        RAG(sample_index, k=0)
    with pytest.raises(ValidationError, match="passages"):
        RAG(sample_index, passages=21)
    with RAG(sample_index, progress=False) as rag:
        with pytest.raises(ValidationError, match="greater than or equal to 1"):
            rag.search("x", k=0)
        with pytest.raises(ValidationError, match="YYYY-MM-DD"):
            rag.search("x", since="notadate")
        with pytest.raises(ValidationError, match="after"):
            rag.search("x", since="2024-02-01", until="2024-01-01")
        with pytest.raises(ValidationError, match="passages"):
            next(iter(rag.ask_stream("x", k=0)))
        assert rag.search("Microsoft", k=1, since="2023-09-25", until="2023-09-25")
