"""The evaluation notebook runs top to bottom (tiny model, a small SQuAD slice)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest
from conftest import ROOT, SHARED
from nbclient import NotebookClient

SQUAD = SHARED / "data" / "squad" / "squad-v1.1-dev-tune.json"


@pytest.fixture
def small_squad(tmp_path: Path) -> Path:
    if not SQUAD.exists():
        pytest.skip("../shared/data/squad is not beside the checkout")
    data = json.loads(SQUAD.read_text())
    article = data["data"][0]
    article["paragraphs"] = article["paragraphs"][:4]
    path = tmp_path / "squad-small.json"
    path.write_text(json.dumps({"version": "1.1", "data": [article]}))
    return path


def test_evaluation_notebook_runs(tmp_path: Path, small_squad: Path, monkeypatch) -> None:
    monkeypatch.setenv("RAG_EVAL_MODEL", "smollm2-135m")
    monkeypatch.setenv("RAG_EVAL_N", "2")
    monkeypatch.setenv("RAG_EVAL_SQUAD", str(small_squad))
    monkeypatch.setenv("RAG_EVAL_WORKDIR", str(tmp_path / "work"))
    monkeypatch.setenv("RAG_MAX_NEW_TOKENS", "24")
    notebook = nbformat.read(ROOT / "notebooks" / "evaluate.ipynb", as_version=4)
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute(env=dict(os.environ))
    outputs = "".join(
        o.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for o in cell.get("outputs", [])
    )
    assert "recall@5" in outputs
    assert "answer_in_text" in outputs and "citation_precision" in outputs
