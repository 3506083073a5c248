"""Running the int8 ONNX export of the embedder with ONNX Runtime.

The export (made once by :mod:`rag.embed.onnx_export`) holds the whole model, pooling and
normalisation included, so a run returns unit vectors; its tokenizer is run by the tokenizers
library directly. Neither torch nor transformers is imported here, so a start that finds the
export made loads quickly and embeds a query at once.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.embed.onnx_export import ONNX_FILE, TOKENIZER_FILE, prepare_onnx
from rag.errors import EmbedderError
from rag.system import cores

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["OnnxModel"]


class OnnxModel:
    """The quantized export, its tokenizer, and one single-threaded worker per core.

    Texts run side by side, one per worker, rather than one at a time on all cores: on a few
    cores shared with other work, ONNX Runtime's threads waiting for each other inside one
    run cost more than they gain, spinning or not (see BENCHMARKS.md, ``embed``).
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
        a text's vector would depend on its neighbours. Alone, a passage gets the vector it
        gets at any other time, as a query does; and with no padding to compute it is faster
        than in batches.
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
    # One thread per run; parallelism comes from running texts side by side (see OnnxModel).
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: its warnings are about its own internals
    # Its fused SkipLayerNormalization kernel is slow on CPU, many times slower than the
    # LayerNormalization it replaces and a large share of the whole model's time: left unfused,
    # a paragraph is embedded faster.
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
