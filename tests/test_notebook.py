"""Both notebooks run top to bottom (tiny model, a small SQuAD slice, four news questions), so
they cannot rot."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
from conftest import ROOT
from nbclient import NotebookClient


def run_notebook(name: str) -> str:
    """Execute a notebook in a fresh kernel and return the text of its outputs."""
    notebook = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    client = NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute(env=dict(os.environ))
    return "".join(
        str(o.get("text", ""))
        + str(o.get("data", {}).get("text/plain", ""))
        + str(o.get("data", {}).get("text/html", ""))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for o in cell.get("outputs", [])
    )


def test_evaluate_accuracy_notebook_runs(tmp_path: Path, small_squad: Path, monkeypatch) -> None:
    monkeypatch.setenv("RAG_EVAL_MODEL", "smollm2-135m")
    monkeypatch.setenv("RAG_EVAL_N", "4")
    monkeypatch.setenv("RAG_EVAL_HOLDOUT", "1")
    monkeypatch.setenv("RAG_EVAL_SQUAD", str(small_squad))
    monkeypatch.setenv("RAG_EVAL_WORKDIR", str(tmp_path / "work"))
    monkeypatch.setenv("RAG_EVAL_NEWS_N", "4")
    monkeypatch.setenv("RAG_MAX_NEW_TOKENS", "24")
    outputs = run_notebook("evaluate_accuracy.ipynb")
    assert "recall@5" in outputs and "BM25 only" in outputs
    assert "citation_precision" in outputs and "declined_unanswerable" in outputs
    # the news set: one question of each kind, scored per kind
    for kind in ("single", "two-part", "cross-article", "unanswerable"):
        assert kind in outputs
    assert "complete_two_part" in outputs and "questions not answered as asked" in outputs


def test_quickstart_notebook_runs(monkeypatch) -> None:
    monkeypatch.setenv("RAG_QUICKSTART_MODEL", "smollm2-135m")
    monkeypatch.setenv("RAG_MAX_NEW_TOKENS", "24")
    outputs = run_notebook("quickstart.ipynb")
    assert "article(s) added" in outputs and "abstained" in outputs and '"citations"' in outputs
