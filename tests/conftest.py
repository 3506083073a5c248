"""Shared fixtures: real files from ../shared, the real embedder, fresh index folders."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from rag.models import Preset

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SAMPLE_NAME = "000_a385e70649e5e390.txt"
QUESTION = "How much did Microsoft invest in OpenAI?"


@pytest.fixture(scope="session")
def sample_article() -> Path:
    """The sample CNN article (from ../shared, or the copy shipped under examples/)."""
    shared = SHARED / "articles" / SAMPLE_NAME
    return shared if shared.exists() else ROOT / "examples" / SAMPLE_NAME


@pytest.fixture(scope="session")
def bbc_dir() -> Path:
    path = SHARED / "data" / "bbc-news"
    if not path.exists():
        pytest.skip("../shared/data/bbc-news is not beside the checkout")
    return path


@pytest.fixture
def articles(tmp_path: Path, sample_article: Path, bbc_dir: Path) -> Path:
    """A small folder of real articles: the sample plus three BBC business stories."""
    folder = tmp_path / "articles"
    (folder / "business").mkdir(parents=True)
    shutil.copy(sample_article, folder / SAMPLE_NAME)
    for name in ("001.txt", "002.txt", "003.txt"):
        shutil.copy(bbc_dir / "business" / name, folder / "business" / name)
    return folder


@pytest.fixture
def small_squad(tmp_path: Path) -> Path:
    """Three real SQuAD articles, five paragraphs each, as a SQuAD v1.1 file."""
    squad = SHARED / "data" / "squad" / "squad-v1.1-dev-tune.json"
    if not squad.exists():
        pytest.skip("../shared/data/squad is not beside the checkout")
    data = json.loads(squad.read_text())
    data["data"] = data["data"][:3]
    for article in data["data"]:
        article["paragraphs"] = article["paragraphs"][:5]
    path = tmp_path / "squad-small.json"
    path.write_text(json.dumps(data))
    return path


def fake_preset(folder: Path, sizes: tuple[int, ...], monkeypatch: pytest.MonkeyPatch) -> Preset:
    """A preset ``fake`` of random chunk files of ``sizes`` in ``folder``, in PRESETS for the test.

    Its packages are fake-part1, fake-part2, ..., so messages that name the package to
    reinstall can be checked.
    """
    from rag import models
    from rag.models import Chunk, Preset

    folder.mkdir(parents=True, exist_ok=True)
    whole = hashlib.sha256()
    chunks = []
    for n, size in enumerate(sizes, start=1):
        data = os.urandom(size)
        whole.update(data)
        path = folder / f"part{n:02d}.bin"
        path.write_bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        chunks.append(Chunk(f"fake-part{n}", "1.0", f"fake_part{n}", path.name, size, sha, path))
    preset = Preset(
        name="fake",
        description="small random chunks",
        filename="fake.gguf",
        size=sum(sizes),
        sha256=whole.hexdigest(),
        chunks=tuple(chunks),
    )
    monkeypatch.setitem(models.PRESETS, "fake", preset)
    return preset
