"""The embedder's two backends: fp32 torch and the int8 ONNX export made once under RAG_HOME.

The real model throughout. One export is made per test session in a temporary home (about
15-40 s on 2 cores); the damage tests work on copies of it, and one of them exports again.
"""

from __future__ import annotations

import json
import logging
import shutil
import typing
from pathlib import Path

import numpy as np
import pytest

from rag import RAG, EmbedderMismatch
from rag.embed import BACKENDS, Embedder, EmbedderError, onnx_export, resolve_embedder_path
from rag.embed.onnx_export import ONNX_FILE, PREPARED_FILE, inspect_onnx, onnx_dir
from rag.settings import DEFAULT_EMBEDDER, Settings

TEXTS = [
    "How much did Microsoft invest in OpenAI?",
    "Microsoft said on Monday it would invest billions of dollars in OpenAI, the maker of "
    "ChatGPT, extending a partnership that began in 2019 with a $1 billion investment.",
    "The central bank raised interest rates by a quarter of a percentage point, its third "
    "increase this year, citing persistent inflation in services.",
    "Le gouvernement a annoncé une réforme des retraites.",
    "word " * 400,  # past the 256 word pieces the model reads: cut, as fp32 cuts it
]


@pytest.fixture(scope="session")
def onnx_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A RAG_HOME holding one int8 export of the default embedder, made once per session."""
    home = tmp_path_factory.mktemp("rag-home-embed")
    Embedder(backend="onnx-int8", home=home, progress=False)
    return home


@pytest.fixture(scope="session")
def onnx(onnx_home: Path) -> Embedder:
    return Embedder(backend="onnx-int8", home=onnx_home, progress=False)


@pytest.fixture(scope="session")
def fp32() -> Embedder:
    return Embedder(backend="torch")


def _export_folder(home: Path) -> Path:
    return onnx_dir(DEFAULT_EMBEDDER, Path(resolve_embedder_path(DEFAULT_EMBEDDER)), home)


def test_settings_offer_the_backends_the_embedder_has() -> None:
    annotation = Settings.model_fields["embed_backend"].annotation
    assert set(typing.get_args(annotation)) == set(BACKENDS)
    assert Settings().embed_backend == "onnx-int8"


def test_backends_agree(onnx: Embedder, fp32: Embedder) -> None:
    a, b = onnx.embed(TEXTS), fp32.embed(TEXTS)
    assert a.shape == b.shape == (len(TEXTS), 384) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-4)
    cosine = np.sum(a * b, axis=1)
    assert cosine.min() > 0.99, cosine
    # Nearest neighbours agree: the question's best passage is the same for both.
    assert np.argmax(a[1:] @ a[0]) == np.argmax(b[1:] @ b[0]) == 0


def test_backends_count_tokens_alike(onnx: Embedder, fp32: Embedder) -> None:
    assert onnx.max_tokens == fp32.max_tokens == 256
    for text in TEXTS:
        assert onnx.count_tokens(text) == fp32.count_tokens(text)


def test_a_text_gets_the_same_vector_alone_or_with_others(onnx: Embedder) -> None:
    together = onnx.embed(TEXTS, batch_size=32)
    alone = np.vstack([onnx.embed([t]) for t in TEXTS])
    np.testing.assert_array_equal(together, alone)
    assert onnx.embed([]).shape == (0, 384)
    # Nothing to read but the special tokens: still a unit vector (0.98 from fp32's).
    np.testing.assert_allclose(np.linalg.norm(onnx.embed([""])), 1.0, atol=1e-4)


def test_fingerprint_names_the_backend_and_differs(onnx: Embedder, fp32: Embedder) -> None:
    assert onnx.info.backend == "onnx-int8" and fp32.info.backend == "torch"
    assert onnx.info.fingerprint.startswith("onnx-int8:")
    assert onnx.info.fingerprint != fp32.info.fingerprint
    assert onnx.info.name == fp32.info.name == DEFAULT_EMBEDDER
    # The fp32 fingerprint is the one indexes recorded before there were backends.
    assert len(fp32.info.fingerprint) == 16 and int(fp32.info.fingerprint, 16) >= 0


def test_export_happens_once_and_is_reused(
    onnx_home: Path, onnx: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _export_folder(onnx_home)
    manifest = json.loads((folder / PREPARED_FILE).read_text())
    assert manifest["int8_matmuls"] == 36  # every weight matrix of the 6 layers is int8
    written = (folder / ONNX_FILE).stat().st_mtime_ns

    def no_export(*args: object) -> None:
        raise AssertionError("exported again although a whole export exists")

    monkeypatch.setattr(onnx_export, "export_onnx", no_export)
    again = Embedder(backend="onnx-int8", home=onnx_home, progress=False)
    assert again.info == onnx.info
    assert (folder / ONNX_FILE).stat().st_mtime_ns == written
    assert sorted(p.name for p in folder.parent.iterdir() if not p.name.startswith(".")) == [
        folder.name
    ]


def _copy_home(onnx_home: Path, tmp_path: Path) -> tuple[Path, Path]:
    home = tmp_path / "home"
    shutil.copytree(onnx_home, home)
    return home, _export_folder(home)


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda f: (f / ONNX_FILE).unlink(), "model.onnx is missing"),
        (lambda f: _truncate(f / ONNX_FILE), "bytes instead of"),
        (lambda f: _flip_byte(f / ONNX_FILE), "SHA-256"),
        (lambda f: (f / PREPARED_FILE).write_text("{not json"), "unreadable"),
        (lambda f: _set_recipe(f, 0), "recipe 0"),
    ],
    ids=["missing", "cut-off", "altered", "manifest", "old-recipe"],
)
def test_damage_is_found(onnx_home: Path, tmp_path: Path, damage: typing.Any, problem: str) -> None:
    _, folder = _copy_home(onnx_home, tmp_path)
    assert inspect_onnx(folder)[1] is None
    damage(folder)
    manifest, found = inspect_onnx(folder)
    assert manifest is None and found is not None and problem in found


def test_damaged_export_is_made_again_with_a_warning(
    onnx_home: Path, onnx: Embedder, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home, folder = _copy_home(onnx_home, tmp_path)
    _flip_byte(folder / ONNX_FILE)
    with caplog.at_level(logging.WARNING, logger="rag.embed"):
        rebuilt = Embedder(backend="onnx-int8", home=home, progress=False)
    assert "cannot be used" in caplog.text and "SHA-256" in caplog.text
    assert str(folder) in caplog.text
    assert inspect_onnx(folder)[1] is None
    # The same tools make the same bytes: the index fingerprint survives a re-export.
    assert rebuilt.info == onnx.info
    np.testing.assert_array_equal(rebuilt.embed(TEXTS[:2]), onnx.embed(TEXTS[:2]))
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".tmp-")]


def test_an_export_that_fails_its_check_is_refused_clearly(
    onnx_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    made = _export_folder(onnx_home)

    def broken_export(source: Path, folder: Path) -> None:
        shutil.copytree(made, folder)
        _flip_byte(folder / ONNX_FILE)

    monkeypatch.setattr(onnx_export, "export_onnx", broken_export)
    with pytest.raises(EmbedderError) as error:
        Embedder(backend="onnx-int8", home=home, progress=False)
    message = str(error.value)
    assert "failed its check" in message and "RAG_EMBED_BACKEND=torch" in message


def test_unknown_backend_and_missing_model_are_refused(tmp_path: Path) -> None:
    with pytest.raises(EmbedderError, match="Unknown embedder backend"):
        Embedder(backend="tensorrt", home=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(EmbedderError, match="no model folder"):
        Embedder(str(tmp_path / "nothing-here"), backend="onnx-int8", home=tmp_path)


def test_index_built_by_one_backend_refuses_the_other(
    tmp_path: Path, sample_article: Path, onnx_home: Path
) -> None:
    folder = tmp_path / "index"
    RAG(folder, progress=False, embed_backend="torch").ingest(sample_article)
    other = RAG(folder, progress=False, embed_backend="onnx-int8", home=onnx_home)
    with pytest.raises(EmbedderMismatch) as error:
        other.search("How much did Microsoft invest in OpenAI?")
    message = str(error.value)
    assert "onnx-int8:" in message and "rag rebuild --reembed" in message
    # Same model name, other backend: the message names the backend to switch back to.
    assert "--embed-backend torch" in message and "RAG_EMBED_BACKEND=torch" in message
    assert "--embed-backend onnx-int8" in message
    other.rebuild(reembed=True)
    assert other.info().embedder_fingerprint.startswith("onnx-int8:")
    assert other.search("How much did Microsoft invest in OpenAI?", k=1)[0].paragraph == 10


def _truncate(path: Path) -> None:
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size // 2)


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _set_recipe(folder: Path, recipe: int) -> None:
    manifest = json.loads((folder / PREPARED_FILE).read_text())
    manifest["recipe"] = recipe
    (folder / PREPARED_FILE).write_text(json.dumps(manifest))
