"""The `rag` command through typer's runner (same code path as the console script)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import QUESTION
from typer.testing import CliRunner

from rag.cli import app

runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_help_lists_every_command_with_one_line() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("ingest", "search", "info", "remove", "rebuild", "check", "eval", "ask"):
        assert command in result.output


def test_setting_options_come_from_settings() -> None:
    result = invoke("search", "--help")
    assert "--fusion" in result.output and "RAG_FUSION" in result.output
    assert "--dense-weight" in result.output


def test_ingest_search_info_remove(tmp_path: Path, articles: Path) -> None:
    index = str(tmp_path / "index")
    result = invoke("ingest", str(articles), "--index", index, "--no-progress", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["added"] == 4 and report["paragraphs_per_second"] > 0

    result = invoke("search", QUESTION, "--index", index, "--k", "2", "--json")
    hits = json.loads(result.stdout)
    assert len(hits) == 2
    assert hits[0]["paragraph"] == 10 and "In 2019, Microsoft invested" in hits[0]["text"]

    table = invoke("search", QUESTION, "--index", index, "--k", "2")
    assert "Microsoft" in table.stdout and "10" in table.stdout

    info = json.loads(invoke("info", "--index", index, "--json").stdout)
    assert info["articles"] == 4 and info["embedder"] == "all-MiniLM-L6-v2"
    assert info["size_bytes"] > 0

    result = invoke("remove", str(articles / "business" / "001.txt"), "--index", index)
    assert result.exit_code == 0
    assert json.loads(invoke("info", "--index", index, "--json").stdout)["articles"] == 3


def test_errors_are_messages_not_tracebacks(tmp_path: Path) -> None:
    index = str(tmp_path / "empty")
    result = invoke("search", QUESTION, "--index", index)
    assert result.exit_code == 1
    assert "no articles yet" in result.output and "Traceback" not in result.output
    result = invoke("search", QUESTION, "--index", index, "--fusion", "magic")
    assert result.exit_code == 2  # click rejects a value outside the choices


def test_console_script_runs(tmp_path: Path) -> None:
    """The installed `rag` entry point (what users type) starts and shows help."""
    rag = Path(sys.executable).with_name("rag")
    result = subprocess.run([str(rag), "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0
    assert "search" in result.stdout


def test_log_level_info_names_each_stage_of_an_ingest(tmp_path: Path, articles: Path) -> None:
    """`--log-level info` says what an ingest is doing; the default says nothing extra."""
    rag = Path(sys.executable).with_name("rag")
    index = str(tmp_path / "index")
    command = [str(rag), "--log-level", "info", "ingest", str(articles), "--index", index]
    result = subprocess.run(
        [*command, "--no-progress"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    stages = ["4 files to add", "group 1: embedding", "group 1: committed", "published"]
    positions = [result.stderr.find(stage) for stage in stages]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), result.stderr
    (articles_copy := tmp_path / "more").mkdir()
    (articles_copy / "a.txt").write_text("A title\n\nOne paragraph about the weather.\n")
    quiet = subprocess.run(
        [str(rag), "ingest", str(articles_copy), "--index", index, "--no-progress"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert quiet.returncode == 0 and "group 1" not in quiet.stderr, quiet.stderr


def test_the_live_answer_withdraws_the_first_reading_on_a_retry() -> None:
    import io

    from rich.console import Console

    from rag.cli import stream_to_terminal
    from rag.types import Answer, Retry

    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100)
    final = Answer(question=QUESTION, text="right [1].", citations=[], passages=[])
    seen: list[object] = []

    def stream():
        for item in ["wrong ", "guess", Retry(passages=3, withdrawn="wrong guess"), "right [1]."]:
            seen.append(item)
            yield item
        yield final

    assert stream_to_terminal(stream(), console) is final
    assert len(seen) == 4  # every piece was consumed, through the retry
    # The last frame (the live view refreshes at its own pace, so earlier ones may be skipped).
    shown = screen.getvalue()
    assert "reading 3" in shown and "right [1]." in shown
    assert "wrong" not in shown.split("reading 3")[-1]
