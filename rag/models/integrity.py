"""Whether a prepared model folder is what was written: ``prepared.json``, sizes, stamps, hashes.

A prepared model lives in ``home / "models" / name``; ``prepared.json``, written last, records
what it was prepared from and the size, SHA-256 and time stamps of every converted file. Before a
load the sizes are compared (a missing or cut-off file), and a file whose time stamps moved since
it was last verified is hashed again (altered bytes). A damaged folder is deleted, with a warning
that says what was wrong, so that :mod:`rag.models.preparation` prepares it again.

When to hash: hashing the default model's weights on every start, even beside the load in a
thread, costs seconds that a start cannot spare. So a start only compares sizes (a stat per file)
and hashes a file only when its mtime or ctime differ from those recorded when it was last
verified: any write to it, by any program, moves its ctime, which user space cannot set back.
What that misses, bytes that rot on the disk without a write, is caught by a load that fails (a
full check follows it, :mod:`rag.models.repair`) or by ``rag models verify``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Literal

from rag import system
from rag.models.catalog import PRESETS

__all__ = [
    "FORMAT_VERSION",
    "PREPARED_FILE",
    "adopt",
    "discard",
    "file_stamp",
    "inspect_folder",
    "intact",
    "is_prepared",
    "log_rebuilt",
    "model_dir",
    "record_files",
    "rehash",
    "warn_damaged",
]

log = logging.getLogger(__name__)

PREPARED_FILE = "prepared.json"
# Bumped when the layout of a prepared folder changes, so older folders are prepared again.
# Not bumped for the per-file checksums in prepared.json: the converted files themselves did not
# change, so a folder prepared before them is checked for consistency and hashed once (see
# adopt) instead of being converted anew, which takes far longer.
FORMAT_VERSION = 1


def model_dir(name: str, home: Path) -> Path:
    """Folder of the converted model called ``name`` (a preset, or ``gguf-<hash>``)."""
    return Path(home).expanduser() / "models" / name


def is_prepared(name: str, home: Path) -> bool:
    """Whether ``name`` has a complete converted folder of the current format.

    Cheap (no hashing): ``prepared.json`` is readable and every file it lists is there with its
    recorded size. ``prepared.json`` is written last, inside the temporary folder, before the
    rename that makes the folder visible; so its presence means the conversion finished.
    """
    info, problem = inspect_folder(model_dir(name, home))
    return info is not None and problem is None


def _read_prepared(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / PREPARED_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def inspect_folder(folder: Path) -> tuple[dict[str, Any] | None, str | None]:
    """A look at a prepared folder without hashing: its ``prepared.json`` and what is wrong.

    ``(None, None)``: nothing there. ``(info, None)``: usable as far as sizes tell (a file whose
    time stamps moved still needs hashing, see :func:`rehash`; a folder from before checksums
    were recorded has no ``files``, see :func:`adopt`). Otherwise the second item says what is
    wrong, in words that finish "the prepared copy is damaged: ...".
    """
    if not folder.exists():
        return None, None
    if not (folder / PREPARED_FILE).exists():
        return None, f"it has no {PREPARED_FILE} (a folder left by hand or by another tool)"
    info = _read_prepared(folder)
    if info is None:
        return None, f"its {PREPARED_FILE} is unreadable"
    if info.get("format_version") != FORMAT_VERSION:
        return info, f"it was prepared in another layout (format {info.get('format_version')!r})"
    files = info.get("files")
    if files is None:
        return info, None
    if not _valid_records(files):
        return info, f"its {PREPARED_FILE} lists its files in a form this version cannot read"
    for rel, record in files.items():
        try:
            size = (folder / rel).stat().st_size
        except OSError:
            return info, f"{rel} is missing"
        if size != record["size"]:
            return info, f"{rel} has {size:,} bytes instead of {record['size']:,}"
    return info, None


def _valid_records(files: object) -> bool:
    if not isinstance(files, dict) or not files:
        return False
    for rel, record in files.items():
        if not isinstance(rel, str) or not isinstance(record, dict):
            return False
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            return False
        if not isinstance(record.get("size"), int) or not isinstance(record.get("sha256"), str):
            return False
    return True


def file_stamp(path: Path) -> list[int]:
    """What says a file was written since it was last verified: mtime and ctime in ns."""
    status = path.stat()
    return [status.st_mtime_ns, status.st_ctime_ns]


def record_files(folder: Path, label: str, progress: bool) -> dict[str, dict[str, Any]]:
    """Size, SHA-256 and time stamps of every file in a converted folder but prepared.json."""
    paths = sorted(
        p
        for p in folder.rglob("*")
        # prepared.json itself, and a temporary one a killed _write_prepared may have left
        if p.is_file() and not p.name.startswith((PREPARED_FILE, f".{PREPARED_FILE}."))
    )
    # Stamps are taken before hashing: a file written while it is read then looks changed at
    # the next check, and is hashed again, rather than passing with a digest of mixed bytes.
    stats = [path.stat() for path in paths]
    digests = system.hash_files(paths, None, sum(st.st_size for st in stats), label, progress)
    return {
        path.relative_to(folder).as_posix(): {
            "size": st.st_size,
            "sha256": digest,
            "stamp": [st.st_mtime_ns, st.st_ctime_ns],
        }
        for path, st, digest in zip(paths, stats, digests, strict=True)
    }


def rehash(folder: Path, info: dict[str, Any], full: bool, progress: bool) -> str | None:
    """Hash the files whose time stamps moved (every file when ``full``); what differs, or None.

    Files that still match get their new time stamps recorded, so the next start does not hash
    them again (a copy of the folder, a ``chmod`` or ``touch`` costs one check, not one each time).
    """
    files: dict[str, dict[str, Any]] = info["files"]
    todo = [rel for rel in files if full or file_stamp(folder / rel) != files[rel].get("stamp")]
    if not todo:
        return None
    paths = [folder / rel for rel in todo]
    stamps = [file_stamp(path) for path in paths]
    total = sum(files[rel]["size"] for rel in todo)
    label = f"Checking {folder.name}"
    try:
        digests = system.hash_files(paths, None, total, label, progress)
    except OSError as error:
        return f"its files cannot be read ({error})"
    bad = [rel for rel, digest in zip(todo, digests, strict=True) if digest != files[rel]["sha256"]]
    if bad:
        return (
            f"{', '.join(bad)} {'differs' if len(bad) == 1 else 'differ'} from the SHA-256 "
            f"recorded when {'it was' if len(bad) == 1 else 'they were'} converted"
        )
    for rel, stamp in zip(todo, stamps, strict=True):
        files[rel]["stamp"] = stamp
    _write_prepared(folder, info)
    return None


def adopt(folder: Path, info: dict[str, Any], progress: bool) -> str | None:
    """Give a folder prepared before checksums were recorded its ``files``; what is wrong, or None.

    There is nothing to compare its bytes with, so what can be checked without a reference is:
    every JSON file parses and every safetensors file is exactly as long as its header says. A
    folder that passes is hashed once and recorded; from then on it is checked like a new one.
    """
    problem = _structure_problem(folder)
    if problem is not None:
        return problem
    log.warning(
        "Recording the checksums of the prepared model %s (once, for a folder prepared by an "
        "earlier version).",
        folder.name,
    )
    info["files"] = record_files(folder, f"Recording checksums of {folder.name}", progress)
    _write_prepared(folder, info)
    return None


def _structure_problem(folder: Path) -> str | None:
    """What is inconsistent in a converted folder, judged from its own files alone, or None."""
    if not (folder / "config.json").is_file():
        return "config.json is missing"
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        return "it has no .safetensors weights file"
    for path in sorted(folder.glob("*.json")):
        try:
            json.loads(path.read_bytes())
        except (OSError, ValueError):
            return f"{path.name} is not valid JSON"
    for path in weights:
        problem = _safetensors_problem(path)
        if problem is not None:
            return problem
    return None


def _safetensors_problem(path: Path) -> str | None:
    """Whether a safetensors file is cut off or padded: its length must be what its header says.

    The format is an 8-byte little-endian header length, a JSON header giving each tensor's
    byte range, then the data.
    """
    size = path.stat().st_size
    try:
        with open(path, "rb") as source:
            length = int.from_bytes(source.read(8), "little")
            if length > min(size - 8, 100_000_000):
                return f"{path.name} is cut off inside its header"
            header = json.loads(source.read(length))
        end = max(
            (int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"),
            default=0,
        )
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return f"{path.name} has an unreadable header"
    if 8 + length + end != size:
        return f"{path.name} has {size:,} bytes but its header describes {8 + length + end:,}"
    return None


def _write_prepared(folder: Path, info: dict[str, Any]) -> None:
    """Rewrite prepared.json atomically; a read-only cache only costs a check at the next start."""
    temporary = folder / f".{PREPARED_FILE}.{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        temporary.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        os.replace(temporary, folder / PREPARED_FILE)
    except OSError as error:
        log.debug("could not update %s: %s", folder / PREPARED_FILE, error)
        temporary.unlink(missing_ok=True)


def intact(folder: Path, progress: bool) -> Literal["intact", "absent", "discarded"]:
    """Whether a prepared folder can be used; a damaged one is deleted, with a warning why.

    Called before every use: costs a stat per file, plus hashing of files that were written
    since they were verified, plus one full hash of a folder from before checksums existed.
    """
    info, problem = inspect_folder(folder)
    if info is None and problem is None:
        return "absent"
    if problem is None and info is not None:
        if "files" in info:
            problem = rehash(folder, info, full=False, progress=progress)
        else:
            problem = adopt(folder, info, progress)
        if problem is None:
            return "intact"
    warn_damaged(folder, str(problem))
    discard(folder)
    return "discarded"


def log_rebuilt(folder: Path, started: float) -> None:
    seconds = time.perf_counter() - started
    log.warning("Prepared %s again in %.0f s: %s", folder.name, seconds, folder)


def warn_damaged(folder: Path, problem: str) -> None:
    source = "its chunk packages" if folder.name in PRESETS else "its .gguf file"
    log.warning(
        "The prepared model %s in %s is damaged: %s. Deleting it and preparing it again from %s.",
        folder.name,
        folder,
        problem,
        source,
    )


def discard(folder: Path) -> None:
    """Remove a damaged prepared folder; renamed away first, so no other process picks it up."""
    aside = folder.parent / f".tmp-{folder.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        os.replace(folder, aside)
    except FileNotFoundError:
        return  # another process discarded it first
    shutil.rmtree(aside, ignore_errors=True)
