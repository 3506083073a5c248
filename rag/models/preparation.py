"""Making a model loadable: chunks joined and verified, converted once to a bf16 folder.

Nothing here reaches a model hub. Preparing a preset means: find each chunk in the installed
packages, join them in order into one GGUF file while checking every chunk's size and SHA-256
against the values pinned in :mod:`rag.models.catalog`, convert the GGUF once into a bf16
safetensors folder that transformers loads in seconds (reading the GGUF itself dequantizes the
whole file on every load, which is far slower), and delete the joined GGUF. Runtimes that read
GGUF themselves (llama.cpp) get the joined file from :func:`gguf_file` instead.

A prepared model lives in ``home / "models" / name``. That folder only ever appears complete: it is
built under a temporary name next to it and renamed into place once ``prepared.json`` is written,
so a crash or Ctrl-C never leaves something that looks prepared. Before every use it is checked
(:mod:`rag.models.integrity`); a damaged one is deleted and prepared again here.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag import system
from rag.errors import ModelError
from rag.feedback import timed_status
from rag.models.catalog import END_OF_TURN_TOKENS, PRESETS, Chunk, Preset, pip_command
from rag.models.integrity import (
    FORMAT_VERSION,
    PREPARED_FILE,
    file_stamp,
    intact,
    is_prepared,
    log_rebuilt,
    model_dir,
    record_files,
)
from rag.quiet import quiet_transformers
from rag.settings import DEFAULT_MODEL, default

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["gguf_file", "gguf_prepared", "list_presets", "prepare", "resolve", "stop_token_ids"]

log = logging.getLogger(__name__)


def list_presets(home: Path) -> list[dict[str, Any]]:
    """Every preset with its description, GGUF size in bytes, and whether it is prepared: as
    the verified GGUF that llama.cpp reads (``gguf``) and as the bf16 folder (``prepared``)."""
    return [
        {
            "name": preset.name,
            "description": preset.description,
            "size": preset.size,
            "gguf": gguf_prepared(preset.name, home),
            "prepared": is_prepared(preset.name, home),
            "path": str(model_dir(preset.name, home)),
            "default": preset.name == DEFAULT_MODEL,
        }
        for preset in PRESETS.values()
    ]


# --------------------------------------------------------------------------------------------
# Preparing


def prepare(name_or_path: str, home: Path, progress: bool = default("progress")) -> Path:
    """Make a preset (or a ``.gguf`` file) loadable, once; return its converted folder.

    Already prepared: returns at once (after the checks of :func:`rag.models.integrity.intact`;
    a damaged folder is deleted and prepared again). Otherwise the chunks are joined and
    verified, then converted. Raises ModelError when a chunk package is missing or a chunk is
    damaged, naming the packages and the pip command that fixes it.
    """
    preset = PRESETS.get(name_or_path)
    if preset is None:
        return resolve(name_or_path, home, progress=progress)
    home = Path(home).expanduser()
    target = model_dir(preset.name, home)
    state = intact(target, progress)
    if state == "intact":
        return target
    started = time.perf_counter()

    paths = preset.chunk_paths()
    _check_sizes(preset, paths)
    with _disk_space_hint(home, preset.name, preset.size), _workdir(home, preset.name) as work:
        gguf = work / "gguf" / preset.filename
        if len(paths) == 1:
            # A single-chunk model is already the whole file: verify it in place, no copy.
            digests = system.hash_files(
                paths, None, preset.size, f"Verifying {preset.name}", progress
            )
            gguf = paths[0]
        else:
            gguf.parent.mkdir(parents=True)
            digests = system.hash_files(
                paths, gguf, preset.size, f"Assembling {preset.name}", progress
            )
        _check_hashes(preset, digests)
        verified = {
            "preset": preset.name,
            "filename": preset.filename,
            "size": preset.size,
            "sha256": preset.sha256,
            "chunks": [
                {"package": c.package, "version": c.version, "size": c.size, "sha256": c.sha256}
                for c in preset.chunks
            ],
        }
        _convert_into_place(gguf, work, target, verified, preset.name, progress)
    if state == "discarded":
        log_rebuilt(target, started)
    return target


def _check_sizes(preset: Preset, paths: list[Path]) -> None:
    """Fail before reading a gigabyte when a chunk already has the wrong size."""
    bad = [c for c, p in zip(preset.chunks, paths, strict=True) if p.stat().st_size != c.size]
    if bad:
        raise _damaged(preset, bad, "has the wrong size")


def _check_hashes(preset: Preset, digests: list[str]) -> None:
    bad = [c for c, d in zip(preset.chunks, digests, strict=True) if d != c.sha256]
    if bad:
        raise _damaged(preset, bad, "does not match its published SHA-256")


def joined_gguf(preset: Preset, home: Path) -> Path:
    """Where a multi-chunk preset's joined GGUF lives (a single chunk is used in place)."""
    return Path(home).expanduser() / "gguf" / preset.filename


def gguf_prepared(name: str, home: Path) -> bool:
    """Whether a preset's GGUF is ready to load without joining (no hashing: a cheap look)."""
    preset = PRESETS[name]
    if len(preset.chunks) == 1:
        found = preset.chunks[0].locate()
        return found is not None and found.stat().st_size == preset.size
    target = joined_gguf(preset, home)
    try:
        seen = json.loads(target.with_name(f"{target.name}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(seen, dict)
        and seen.get("sha256") == preset.sha256
        and target.is_file()
        and target.stat().st_size == preset.size
    )


def gguf_file(name_or_path: str, home: Path, progress: bool = default("progress")) -> Path:
    """The verified GGUF file of a preset (or a given ``.gguf`` path), for runtimes that read GGUF.

    llama.cpp reads the quantized file itself, so it needs the joined GGUF that :func:`prepare`
    deletes after converting. A single-chunk preset is its own file: verified in place, nothing
    copied. A multi-chunk preset is joined once into ``home/gguf/<filename>`` while each chunk's
    SHA-256 is checked, then the whole file's hash is checked against the publisher's; a sidecar
    ``<filename>.json`` records its size, hash and time stamps, so later starts only stat it and
    hash it again when it was written since (as prepared folders are checked, see
    :func:`rag.models.integrity.rehash`). A ``.gguf`` path is the user's own file and is
    returned as it is.
    """
    preset = PRESETS.get(name_or_path)
    if preset is None:
        path = Path(name_or_path).expanduser()
        if path.is_file() and path.suffix.lower() == ".gguf":
            return path
        presets = ", ".join(PRESETS)
        raise ModelError(
            f"No GGUF file for {name_or_path!r}: give a preset ({presets}) or a .gguf file "
            f"(a transformers model folder cannot be read by llama.cpp)."
        )
    paths = preset.chunk_paths()
    _check_sizes(preset, paths)
    if len(paths) == 1:
        _check_hashes(
            preset,
            system.hash_files(paths, None, preset.size, f"Verifying {preset.name}", progress),
        )
        return paths[0]
    target = joined_gguf(preset, home)
    folder = target.parent
    record = folder / f"{preset.filename}.json"
    if target.is_file():
        try:
            seen = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            seen = {}
        if (
            isinstance(seen, dict)
            and seen.get("sha256") == preset.sha256
            and target.stat().st_size == preset.size
            and (
                seen.get("stamp") == file_stamp(target)
                or system.file_sha256(target, f"Checking {preset.filename}", progress)
                == preset.sha256
            )
        ):
            if seen.get("stamp") != file_stamp(target):
                _write_json(record, {**seen, "stamp": file_stamp(target)})
            return target
        log.warning("The joined GGUF %s is damaged or unverified; joining it again.", target)
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{preset.filename}.{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with _disk_space_hint(home, preset.name, preset.size):
            digests = system.hash_files(
                paths, partial, preset.size, f"Assembling {preset.name}", progress
            )
            _check_hashes(preset, digests)
            whole = system.file_sha256(partial, f"Verifying {preset.filename}", progress)
            if whole != preset.sha256:  # chunks that match but join wrong: a bug, not a bad install
                raise ModelError(f"The joined {preset.filename} does not match its SHA-256.")
            os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    _write_json(record, {"sha256": preset.sha256, "size": preset.size, "stamp": file_stamp(target)})
    return target


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write a small JSON file atomically (a reader never sees half of it)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}")
    temporary.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def _damaged(preset: Preset, bad: list[Chunk], what: str) -> ModelError:
    names = ", ".join(f"{c.package} ({c.relpath})" for c in bad)
    return ModelError(
        f"Model {preset.name!r}: {'chunk' if len(bad) == 1 else 'chunks'} {names} {what} "
        f"(damaged or incomplete install). Reinstall with:\n  {pip_command(bad, force=True)}"
    )


def _convert_into_place(
    gguf: Path, work: Path, target: Path, verified: dict[str, Any], label: str, progress: bool
) -> None:
    """Convert ``gguf`` into ``work/out``, record what was verified and what was written (size,
    SHA-256 and time stamps of every file), rename it to ``target``."""
    out = work / "out"
    started = time.perf_counter()
    with timed_status(f"Converting {label} to bf16 safetensors (once)", progress):
        _convert(gguf, out)
    import torch
    import transformers

    info = {
        "format_version": FORMAT_VERSION,
        **verified,
        "dtype": "bfloat16",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "convert_seconds": round(time.perf_counter() - started, 1),
        "prepared_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        # Read back from the disk (still in the page cache) rather than hashed while
        # transformers wrote them.
        "files": record_files(out, f"Recording checksums of {label}", progress),
    }
    (out / PREPARED_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    if target.exists():
        if is_prepared(target.name, target.parent.parent):
            return  # another process finished first; ours is discarded with the work folder
        # Left by an older format or by hand: not prepared, so nothing of value is lost.
        shutil.rmtree(target)
    try:
        os.replace(out, target)
    except OSError:
        # A concurrent prepare won the rename between our check and ours.
        if not is_prepared(target.name, target.parent.parent):
            raise


def _convert(gguf: Path, out: Path) -> None:
    """Dequantize a GGUF file into a bf16 safetensors folder with its tokenizer.

    ``GgufConfig(dequantize=True)`` is what makes the loaded model saveable: loaded the plain way
    it keeps a GGUF quantizer attached and ``save_pretrained`` refuses it.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    with quiet_transformers():
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent),
            gguf_file=gguf.name,
            quantization_config=GgufConfig(gguf_file=str(gguf), dequantize=True),
            dtype=torch.bfloat16,
            local_files_only=True,
        )
        tokenizer = AutoTokenizer.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, local_files_only=True
        )
        # The GGUF names one EOS; chat models also end a turn on other tokens. Saving them in the
        # generation config makes a plain `model.generate` on this folder stop where it should.
        model.generation_config.eos_token_id = stop_token_ids(tokenizer, model.generation_config)
        model.save_pretrained(str(out))
        tokenizer.save_pretrained(str(out))


def stop_token_ids(tokenizer: PreTrainedTokenizerBase, generation_config: Any = None) -> list[int]:
    """Token ids that end a reply: the EOS ids the model declares plus known end-of-turn tokens.

    For Qwen that is ``<|im_end|>`` and ``<|endoftext|>``.
    """
    ids: list[int] = []
    declared = getattr(generation_config, "eos_token_id", None)
    if isinstance(declared, int):
        ids.append(declared)
    elif declared:
        ids.extend(int(i) for i in declared)
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    vocab = tokenizer.get_vocab()
    ids.extend(vocab[token] for token in END_OF_TURN_TOKENS if token in vocab)
    return list(dict.fromkeys(ids))


@contextlib.contextmanager
def _workdir(home: Path, name: str) -> Iterator[Path]:
    """A scratch folder on the same disk as the models (so the final rename is atomic).

    It is removed on the way out, success or failure; folders left by a killed process are swept
    at the next prepare, once their process is gone.
    """
    models = home / "models"
    models.mkdir(parents=True, exist_ok=True)
    _sweep_stale(models)
    work = models / f".tmp-{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def _disk_space_hint(home: Path, label: str, gguf_size: int) -> Iterator[None]:
    """Turn a full disk into a ModelError that says how much room preparing takes."""
    try:
        yield
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        # Joined GGUF + bf16 safetensors, which are about 3x a 4-5 bit GGUF.
        need = _gb(4.5 * gguf_size)
        raise ModelError(
            f"Not enough disk space under {home} to prepare {label}: it needs about {need} GB "
            f"free while preparing (about {_gb(3.5 * gguf_size)} GB stay afterwards)."
        ) from error


def _sweep_stale(models: Path) -> None:
    for folder in models.glob(".tmp-*"):
        try:
            pid = int(folder.name.rsplit("-", 2)[-2])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --------------------------------------------------------------------------------------------
# Resolving a name or path to a folder


def resolve(name_or_path: str, home: Path, progress: bool = default("progress")) -> Path:
    """The converted folder to load for a preset name, a model folder, or a ``.gguf`` file.

    A preset is prepared if needed. A folder with a ``config.json`` is used as it is. A ``.gguf``
    file is verified by hash and converted once into ``home/models/gguf-<sha256[:12]>``, so the same
    file under another path reuses the conversion and a changed file is converted anew.
    """
    if name_or_path in PRESETS:
        return prepare(name_or_path, home, progress=progress)
    home = Path(home).expanduser()
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file():
            return path
        raise ModelError(
            f"{path} is a folder but not a transformers model (it has no config.json)."
        )
    if path.is_file() and path.suffix.lower() == ".gguf":
        digest = system.file_sha256(path, f"Hashing {path.name}", progress)
        name = f"gguf-{digest[:12]}"
        target = model_dir(name, home)
        state = intact(target, progress)
        if state == "intact":
            return target
        started = time.perf_counter()
        verified = {
            "source": str(path.resolve()),
            "filename": path.name,
            "size": path.stat().st_size,
            "sha256": digest,
        }
        with _disk_space_hint(home, path.name, path.stat().st_size), _workdir(home, name) as work:
            _convert_into_place(path, work, target, verified, path.name, progress)
        if state == "discarded":
            log_rebuilt(target, started)
        return target
    presets = ", ".join(PRESETS)
    raise ModelError(
        f"Unknown model {name_or_path!r}: give a preset ({presets}), a model folder with "
        f"config.json, or a .gguf file."
    )


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f}"
