"""Both notebooks run top to bottom (tiny model, a small SQuAD slice), so they cannot rot."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest
from conftest import ROOT, SHARED
from nbclient import NotebookClient

SQUAD = SHARED / "data" / "squad" / "squad-v1.1-dev-tune.json"


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


@pytest.fixture
def small_squad(tmp_path: Path) -> Path:
    if not SQUAD.exists():
        pytest.skip("../shared/data/squad is not beside the checkout")
    data = json.loads(SQUAD.read_text())
    data["data"] = data["data"][:3]
    for article in data["data"]:
        article["paragraphs"] = article["paragraphs"][:4]
    path = tmp_path / "squad-small.json"
    path.write_text(json.dumps({"version": "1.1", "data": data["data"]}))
    return path


def test_evaluate_accuracy_notebook_runs(tmp_path: Path, small_squad: Path, monkeypatch) -> None:
    monkeypatch.setenv("RAG_EVAL_MODEL", "smollm2-135m")
    monkeypatch.setenv("RAG_EVAL_N", "4")
    monkeypatch.setenv("RAG_EVAL_HOLDOUT", "1")
    monkeypatch.setenv("RAG_EVAL_SQUAD", str(small_squad))
    monkeypatch.setenv("RAG_EVAL_WORKDIR", str(tmp_path / "work"))
    monkeypatch.setenv("RAG_MAX_NEW_TOKENS", "24")
    outputs = run_notebook("evaluate_accuracy.ipynb")
    assert "recall@5" in outputs and "BM25 only" in outputs
    assert "citation_precision" in outputs and "declined_unanswerable" in outputs


def test_quickstart_notebook_runs(monkeypatch) -> None:
    monkeypatch.setenv("RAG_QUICKSTART_MODEL", "smollm2-135m")
    monkeypatch.setenv("RAG_MAX_NEW_TOKENS", "24")
    outputs = run_notebook("quickstart.ipynb")
    assert "article(s) added" in outputs and "abstained" in outputs and '"citations"' in outputs
