"""Making the ``onnx-int8`` embedder: an ONNX export of the model with int8 weights, made once.

The model is exported with torch's ONNX exporter and its weight matrices quantized to int8 (per
output channel; activations are quantized on the fly) by ONNX Runtime's quantizer. The export is
made from the installed weights on first use and kept under ``home/embedders``, in a folder named
after the model and a hash of its files, with a ``prepared.json`` that records the recipe and
every file's size and SHA-256; it is checked on every start.

Why not sentence-transformers' ``backend="onnx"``: it loads and exports through Optimum
(``optimum-onnx``), whose releases require transformers < 4.58, while this project needs
transformers 5. The export below uses torch's ONNX exporter and ONNX Runtime's quantizer,
which are what Optimum calls underneath.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.embed.torch_backend import load_sentence_transformer
from rag.errors import EmbedderError
from rag.feedback import timed_status
from rag.settings import default
from rag.system import file_sha256

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "ONNX_FILE",
    "ONNX_RECIPE",
    "PREPARED_FILE",
    "TOKENIZER_FILE",
    "export_onnx",
    "inspect_onnx",
    "onnx_dir",
    "prepare_onnx",
    "source_hash",
]

log = logging.getLogger(__name__)

# Bump when the export changes in a way that changes the vectors (opset, fusion, quantization):
# prepared exports of another recipe are made again, and their fingerprints differ.
ONNX_RECIPE = 2
PREPARED_FILE = "prepared.json"
ONNX_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
# Files of a model folder that cannot change its vectors; leaving them out of the source hash
# keeps one export for a folder whose model card (or a dot file) was rewritten.
_NOT_WEIGHTS = {"README.md"}
# Exports that sentence-transformers keeps inside a model folder: not what we export from.
_EXPORT_FOLDERS = {"onnx", "openvino"}


def source_hash(folder: Path) -> str:
    """SHA-256 over a model folder's files (names and bytes) that can change its vectors.

    Cheap enough to run at every start for a small embedder, and it ties an export to the exact
    weights it came from: a folder changed in place gets a new export.
    """
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if (
            not path.is_file()
            or any(part.startswith(".") for part in relative.parts)
            or relative.parts[0] in _EXPORT_FOLDERS
            or relative.name in _NOT_WEIGHTS
        ):
            continue
        digest.update(relative.as_posix().encode() + b"\0")
        digest.update(file_sha256(path).encode())
    return digest.hexdigest()


def onnx_dir(name: str, source: Path, home: Path) -> Path:
    """Where the export of the model in ``source`` lives: named after it and its weights."""
    slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in Path(name).name)[:40]
    return Path(home).expanduser() / "embedders" / f"{slug}-{source_hash(source)[:16]}-onnx-int8"


def prepare_onnx(
    name: str,
    source: Path,
    home: Path,
    progress: bool = default("progress"),
    console: Console | None = None,
) -> tuple[Path, dict[str, Any]]:
    """The folder of a checked int8 ONNX export of ``source`` and its manifest; made if needed.

    A damaged export (missing or altered file, unreadable manifest, another recipe) is
    deleted and made again, with a warning that says what was wrong. Two processes that need
    it at once take turns: the second finds it made.
    """
    from filelock import FileLock

    folder = onnx_dir(name, source, home)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder.parent / f".{folder.name}.lock")):
        manifest, problem = inspect_onnx(folder)
        if manifest is not None:
            return folder, manifest
        if problem is not None:
            log.warning(
                "The int8 ONNX export of the embedder %s in %s cannot be used: %s. "
                "Deleting it and exporting it again.",
                name,
                folder,
                problem,
            )
            _discard(folder)
        label = f"Exporting the embedder {name} to int8 ONNX (once)"
        with timed_status(label, progress, console):
            export_onnx(source, folder)
    manifest, problem = inspect_onnx(folder)
    if manifest is None:
        raise EmbedderError(
            f"The int8 ONNX export of the embedder {name!r} in {folder} failed its check right "
            f"after it was made ({problem}). Delete that folder and try again, or use the fp32 "
            "backend: RAG_EMBED_BACKEND=torch (embed_backend='torch' in Python)."
        )
    return folder, manifest


def inspect_onnx(folder: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(manifest, None) for a whole export; (None, what is wrong) for a damaged one;
    (None, None) when there is none.

    Every file's size and SHA-256 are checked on every start: the export is small, so hashing
    it costs little, and a flipped byte in a weight would otherwise change vectors silently.
    """
    if not folder.exists():
        return None, None
    try:
        manifest = json.loads((folder / PREPARED_FILE).read_text(encoding="utf-8"))
        files = manifest["files"]
        recipe = manifest["recipe"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, f"its {PREPARED_FILE} is missing or unreadable ({exc})"
    if recipe != ONNX_RECIPE:
        return None, f"it was made by export recipe {recipe}, this version uses {ONNX_RECIPE}"
    for file_name in (ONNX_FILE, TOKENIZER_FILE):
        expected = files.get(file_name)
        path = folder / file_name
        if expected is None or not path.is_file():
            return None, f"{file_name} is missing"
        size = path.stat().st_size
        if size != expected["bytes"]:
            return None, f"{file_name} has {size:,} bytes instead of {expected['bytes']:,}"
        if file_sha256(path) != expected["sha256"]:
            return None, f"{file_name} does not match its recorded SHA-256"
    return manifest, None


def export_onnx(source: Path, folder: Path) -> None:
    """Export the sentence-transformers model in ``source`` to an int8 ONNX model in ``folder``.

    The graph runs the whole model: transformer, pooling and normalisation, so it returns
    unit vectors. It is built in a temporary folder beside ``folder`` and renamed into place
    once complete, so a crash never leaves something that looks prepared.
    """
    started = time.perf_counter()
    work = folder.parent / f".tmp-{folder.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    work.mkdir(parents=True)
    try:
        details = _export(source, work)
        manifest = {
            "recipe": ONNX_RECIPE,
            "backend": "onnx-int8",
            "source": str(source),
            "source_sha256": source_hash(source),
            **details,
            "files": {
                file_name: {
                    "bytes": (work / file_name).stat().st_size,
                    "sha256": file_sha256(work / file_name),
                }
                for file_name in (ONNX_FILE, TOKENIZER_FILE)
            },
            "seconds": round(time.perf_counter() - started, 1),
        }
        (work / PREPARED_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        os.replace(work, folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _export(source: Path, work: Path) -> dict[str, Any]:
    """Export, fuse and quantize into ``work``; what the runtime needs to know about the model."""
    import onnx
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import __version__ as transformers_version

    from rag.quiet import quiet_transformers

    model = load_sentence_transformer(str(source), str(source))
    tokenizer = model.tokenizer
    if not getattr(tokenizer, "is_fast", False):
        raise EmbedderError(
            f"The embedder in {source} has no fast tokenizer (tokenizer.json), which the int8 "
            "ONNX backend needs; use RAG_EMBED_BACKEND=torch (embed_backend='torch' in Python)."
        )
    # Eager attention exports plain MatMul and Softmax nodes, which ONNX Runtime runs faster
    # than the graph of PyTorch's fused attention.
    with contextlib.suppress(AttributeError, ValueError):
        model[0].auto_model.set_attn_implementation("eager")
    inputs = [n for n in tokenizer.model_input_names if n in ("input_ids", "token_type_ids")]
    inputs.append("attention_mask")

    class Whole(torch.nn.Module):
        """Tensors in, unit vectors out: the sentence-transformers pipeline as one graph."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            features = dict(zip(inputs, tensors, strict=True))
            vectors = self.model(features)["sentence_embedding"]
            return torch.nn.functional.normalize(vectors, p=2, dim=1)

    # Two texts of different lengths, so the traced graph has padding and a real mask.
    sample = tokenizer(["a short text", "a longer text, with padding in the other"], padding=True)
    args = tuple(torch.tensor(sample[n]) for n in inputs)
    plain = work / "fp32.onnx"
    axes = {n: {0: "batch", 1: "tokens"} for n in inputs} | {"embedding": {0: "batch"}}
    with torch.no_grad(), quiet_transformers(), _quiet_warnings():
        # The TorchScript exporter: the dynamo one needs onnxscript, one more dependency.
        torch.onnx.export(
            Whole().eval(),
            args,
            str(plain),
            input_names=inputs,
            output_names=["embedding"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    with _quiet_warnings():
        # Per channel: one scale per output column. Per tensor moves MiniLM's vectors too far
        # from fp32 ones.
        quantize_dynamic(
            str(plain),
            str(work / ONNX_FILE),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul", "Gemm"],
        )
    plain.unlink()
    tokenizer.backend_tokenizer.save(str(work / TOKENIZER_FILE))
    return {
        "dimension": int(model.get_embedding_dimension()),
        "max_seq_length": int(model.max_seq_length),
        "do_lower_case": bool(getattr(model[0], "do_lower_case", False)),
        "inputs": inputs,
        "int8_matmuls": _count_nodes(work / ONNX_FILE, "MatMulInteger"),
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers_version,
            "onnx": onnx.__version__,
            "onnxruntime": _version("onnxruntime"),
        },
    }


def _count_nodes(path: Path, op_type: str) -> int:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return sum(node.op_type == op_type for node in graph.node)


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


@contextlib.contextmanager
def _quiet_warnings() -> Iterator[None]:
    """The exporter and quantizer warn about things that do not apply here (tracing a fixed
    mask shape, pre-processing for static quantization); keep them off the user's screen."""
    import warnings

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def _discard(folder: Path) -> None:
    """Remove a damaged export; renamed away first, so no other process picks it up half gone."""
    aside = folder.parent / f".tmp-{folder.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        os.replace(folder, aside)
    except FileNotFoundError:
        return
    shutil.rmtree(aside, ignore_errors=True)
