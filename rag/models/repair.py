"""Repairing a prepared model: a full check on request or after a failed load, then a rebuild.

The start-up checks of :mod:`rag.models.integrity` only hash files whose time stamps moved. Here
every file is hashed: by ``rag models verify``, and when loading a folder that passed those checks
fails anyway. A damaged folder is deleted and prepared again (a preset from its chunk packages, a
converted ``.gguf`` from its file if that is still where it was).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from rag import system
from rag.errors import ModelError
from rag.models.catalog import PRESETS
from rag.models.integrity import (
    adopt,
    discard,
    inspect_folder,
    log_rebuilt,
    model_dir,
    rehash,
    warn_damaged,
)
from rag.models.preparation import gguf_file, joined_gguf, prepare, resolve
from rag.settings import default

__all__ = ["repair_after_failure", "verify", "verify_gguf"]

log = logging.getLogger(__name__)


def verify(
    name: str, home: Path, repair: bool = True, progress: bool = default("progress")
) -> str | None:
    """Hash every file of a prepared model against ``prepared.json``; what is wrong, or None.

    ``name`` is a preset or a folder name under ``home/models`` (``gguf-<hash>``). With
    ``repair`` a damaged folder is deleted and prepared again (a preset from its chunk packages,
    a converted ``.gguf`` from its file if that is still where it was). This is the check that
    also finds bytes that changed on disk without a write, which a normal start does not hash for.
    """
    home = Path(home).expanduser()
    folder = model_dir(name, home)
    info, problem = inspect_folder(folder)
    if info is None and problem is None:
        raise ModelError(
            f"Model {name!r} is not prepared under {home}, so there is nothing to verify. "
            f"Prepare it with: rag models prepare {name}"
        )
    if problem is None and info is not None:
        if "files" in info:
            problem = rehash(folder, info, full=True, progress=progress)
        else:
            problem = adopt(folder, info, progress)
    if problem is not None and repair:
        warn_damaged(folder, problem)
        _rebuild(folder, info, progress)
    return problem


def verify_gguf(
    name: str, home: Path, repair: bool = True, progress: bool = default("progress")
) -> str | None:
    """Hash a preset's GGUF (the joined file, or its single chunk) against the publisher's
    SHA-256; what is wrong, or None. With ``repair`` a damaged joined file is joined again from
    the chunk packages (a damaged single chunk can only be reinstalled: the error says how)."""
    preset = PRESETS.get(name)
    if preset is None:
        raise ModelError(f"{name!r} is not a preset; only a preset's GGUF can be verified.")
    if len(preset.chunks) == 1:
        gguf_file(name, home, progress=progress)  # hashes the chunk, ModelError if damaged
        return None
    target = joined_gguf(preset, home)
    if not target.is_file():
        raise ModelError(
            f"Model {name!r} has no joined GGUF under {home}, so there is nothing to verify. "
            f"Prepare it with: rag models prepare {name}"
        )
    digest = system.file_sha256(target, f"Verifying {target.name}", progress)
    if digest == preset.sha256:
        return None
    problem = f"{target.name} does not match its SHA-256"
    if repair:
        log.warning("%s of %s; joining it again from the chunk packages.", problem, name)
        target.unlink()
        gguf_file(name, home, progress=progress)
    return problem


def _rebuild(folder: Path, info: dict[str, Any] | None, progress: bool) -> Path:
    """Delete a damaged prepared folder and prepare it again; the folder to load now."""
    home = folder.parent.parent
    discard(folder)
    started = time.perf_counter()
    if folder.name in PRESETS:
        rebuilt = prepare(folder.name, home, progress=progress)
        log_rebuilt(rebuilt, started)
    else:
        source = (info or {}).get("source")
        if not source or not Path(source).is_file():
            raise ModelError(
                f"The prepared model {folder.name} was damaged and has been deleted; it was "
                f"converted from {source or 'a .gguf file'}, which is no longer there. Give the "
                f".gguf file again (--model PATH) to convert it anew."
            )
        rebuilt = resolve(source, home, progress=progress)
        log_rebuilt(rebuilt, started)
    return rebuilt


def repair_after_failure(folder: Path, error: Exception, progress: bool) -> Path:
    """After a failed load: hash the folder's files; if damaged, prepare it again and return it.

    Otherwise raise a ModelError that says what failed. Only folders rag.models prepared (with
    checksums in prepared.json) are checked and rebuilt; a user's own model folder is left alone.
    """
    info, problem = inspect_folder(folder)
    if info is None or ("files" not in info and problem is None):
        raise ModelError(f"Could not load the model in {folder}: {error}") from error
    if problem is None:
        log.warning(
            "Could not load the prepared model %s (%s); checking its files.", folder.name, error
        )
        problem = rehash(folder, info, full=True, progress=progress)
    if problem is None:
        import transformers

        raise ModelError(
            f"Could not load the model in {folder}: {error}. Its files match the SHA-256 recorded "
            f"when it was converted (with transformers {info.get('transformers')}; this is "
            f"{transformers.__version__}), so they are not damaged. Delete that folder and run "
            f"again to convert it anew."
        ) from error
    warn_damaged(folder, problem)
    return _rebuild(folder, info, progress)
