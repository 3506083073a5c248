"""Search speed at 100k and 1M paragraphs, and the dense index's recall against exact search.

Embedding a million texts is out of reach here (tens of texts a second on 2 cores), so
the large collections grow from real ones: the SQuAD tune articles and the BBC
corpus (about 12k passages, embedded once by an ordinary ingest into ``base/``)
plus near-duplicates of them. A near-duplicate's text is a real passage with its
sentences shuffled and a few words dropped or swapped, so BM25 sees realistic
postings; its vector is the real one moved by noise (half random, half along the
difference of two real vectors, so partly within the space real texts occupy) to
a cosine of 0.85-0.99 with it: the spread measured when such perturbed texts are
really embedded (5th-95th percentile 0.86-0.999, median 0.96). Copies of one
passage sit close together, which flatters an approximate index, so its recall
is also measured on the real vectors alone (``ann_recall10_real``). The copies are
written straight into a ``Store`` and indexed by ``rag.index.build_derived``, as
an ingest would; every folder is kept in the work folder and reused by a rerun.
The real articles have no publication date; each copy gets one, drawn uniformly
from ``DATES``, so that filters by date have something to choose among.

Latency is ``RAG.search`` on real SQuAD questions, one at a time, the query
embedding included; the embedding alone is timed on the same questions,
interleaved, so what the index costs on top is visible on a busy machine.
Filtered searches at 1M (interleaved too): a section, one article and its copies,
a year, and one article and its copies under a pattern never used before (a
source glob's matches are remembered for a few patterns; this is the first time).

    .venv/bin/python -m benchmarks --only search           # 100k and 1M
    .venv/bin/python -m benchmarks --only search --quick   # 20k only
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import BBC, SQUAD, BenchContext, median, percentile
from rag import index as index_mod
from rag.evaluate import load_squad
from rag.filtering import FORMAT as ARTICLES_FORMAT
from rag.lexical import FORMAT as LEXICAL_FORMAT
from rag.lexical import LexicalIndex
from rag.store import Store
from rag.stores import published
from rag.stores.base import document_hash, text_hash
from rag.types import Document, Paragraph

KEYS = {
    "search_embedder": "embedder of the collections and the queries (name and fingerprint)",
    "search_p50_ms_20k": "RAG.search, one query with its embedding, 20k passages (--quick), median",
    "search_p50_ms_100k": "RAG.search, one query with its embedding, 100k passages, median ms",
    "search_p95_ms_100k": "the same, 95th percentile ms",
    "search_p50_ms_1m": "RAG.search, one query with its embedding, 1M passages, median ms",
    "search_p95_ms_1m": "the same, 95th percentile ms",
    "search_embed_p50_ms": "embedding one question alone (same questions, interleaved), median ms",
    "search_filtered_p50_ms_1m": "RAG.search filtered to BBC business (22% of passages), 1M",
    "search_filtered_p95_ms_1m": "the same, 95th percentile ms",
    "search_narrow_p50_ms_1m": "RAG.search filtered to one article and its copies, 1M, median",
    "search_narrow_p95_ms_1m": "the same, 95th percentile ms",
    "search_narrow_new_p50_ms_1m": "the same, each time another article (a glob not yet seen)",
    "search_dated_p50_ms_1m": "RAG.search filtered to one year (since/until, 4% of passages), 1M",
    "ann_recall10_real": "IVF recall@10 (forced, default parameters) on the 12k real vectors alone",
    "ann_recall10_100k": "dense index recall@10 against exact inner-product search, 100k",
    "ann_recall10_1m": "dense index recall@10 against exact inner-product search, 1M",
    "ann_recall100_1m": "the same at 100 (the candidates fusion takes), 1M",
    "vector_index_1m": "vector index chosen automatically for 1M passages",
    "index_build_s_1m": "seconds to build FAISS and BM25 over 1M passages from the store",
    "index_build_dense_s_1m": "of which the FAISS index",
    "index_build_bm25_s_1m": "of which BM25 (tokenising included)",
    "index_build_rss_gb_1m": "peak resident memory of the process building the 1M indexes, GB",
    "search_rss_gb_1m": "resident memory a fresh process gains by opening the 1M indexes, GB",
    "search_open_s_1m": "its first search, which opens them (files in the page cache), seconds",
}

SIZES = {"20k": 20_000, "100k": 100_000, "1m": 1_000_000}
# Bumped when the synthetic collection changes, so cached stores are written again.
SYNTH_VERSION = 2
# The copies' texts and vectors are drawn from this seed (version 1 drew them from the
# version number, so they stayed the same when version 2 added dates).
SEED = 1
# Publication dates of the copies: a day drawn uniformly between these, from its own seed.
DATES = ("2000-01-01", "2024-12-31")
DATED_FILTER = {"since": "2020-01-01", "until": "2020-12-31"}
NOISE_COS = (0.85, 0.99)
DROP_WORD, SWAP_WORD = 0.08, 0.04
RECALL_QUERIES = 1000
SENTENCE = re.compile(r"(?<=[.!?])\s+")


def run(ctx: BenchContext) -> dict[str, float | int | str | None]:
    root = ctx.folder("search")
    base, embedder = _base_index(root, ctx)
    questions = _questions()
    recall_queries = _question_vectors(base, embedder, questions[:RECALL_QUERIES])
    timed = questions[RECALL_QUERIES : RECALL_QUERIES + (40 if ctx.quick else 200)]
    figures: dict[str, float | int | str | None] = {
        "search_embedder": embedder,
        "ann_recall10_real": round(_real_recall(base, recall_queries, ctx), 4),
    }
    embed_ms: list[float] = []
    for label in ("20k",) if ctx.quick else ("100k", "1m"):
        figures |= _measure(root / f"n{label}", label, base, recall_queries, timed, embed_ms, ctx)
    figures["search_embed_p50_ms"] = round(median(embed_ms), 2)
    return figures


def _measure(
    folder: Path,
    label: str,
    base: Path,
    recall_queries: np.ndarray,
    questions: list[str],
    embed_ms: list[float],
    ctx: BenchContext,
) -> dict[str, float | int | str | None]:
    """The figures of one collection size (``label``); adds to ``embed_ms``."""
    _build(folder, base, SIZES[label], ctx)
    built = json.loads((folder / "build.json").read_text())
    ctx.log(f"{label}: {built['kind']}; built in {built['seconds']:.0f} s")
    figures: dict[str, float | int | str | None] = {}
    if label != "20k":
        recall10, recall100 = _recall(folder, recall_queries, ctx)
        figures[f"ann_recall10_{label}"] = round(recall10, 4)
        if label == "1m":
            figures["ann_recall100_1m"] = round(recall100, 4)
    timing = _latency(folder / "index", questions, filtered=label == "1m")
    embed_ms += timing.embed_ms
    figures[f"search_p50_ms_{label}"] = round(median(timing.search_ms), 2)
    if label != "20k":
        figures[f"search_p95_ms_{label}"] = round(percentile(timing.search_ms, 95), 2)
    ctx.log(
        f"{label}: search p50 {median(timing.search_ms):.1f} ms (embedding alone "
        f"{median(timing.embed_ms):.1f} ms), p95 {percentile(timing.search_ms, 95):.1f} ms"
    )
    if label == "1m":
        figures |= {
            "search_filtered_p50_ms_1m": round(median(timing.filtered_ms), 2),
            "search_filtered_p95_ms_1m": round(percentile(timing.filtered_ms, 95), 2),
            "search_narrow_p50_ms_1m": round(median(timing.narrow_ms), 2),
            "search_narrow_p95_ms_1m": round(percentile(timing.narrow_ms, 95), 2),
            "search_narrow_new_p50_ms_1m": round(median(timing.narrow_new_ms), 2),
            "search_dated_p50_ms_1m": round(median(timing.dated_ms), 2),
            **_open_cost(folder / "index", questions[0]),
            "vector_index_1m": built["kind"],
            "index_build_s_1m": round(built["seconds"], 1),
            "index_build_dense_s_1m": round(built["dense_s"], 1),
            "index_build_bm25_s_1m": round(built["bm25_s"], 1),
            "index_build_rss_gb_1m": round(built["rss_gb"], 2),
        }
    return figures


# --- the real collection ---------------------------------------------------------------
def _base_index(root: Path, ctx: BenchContext) -> tuple[Path, str]:
    """SQuAD tune and BBC ingested for real with the configured embedder; its fingerprint.

    Embedded once; a rerun finds nothing to do. When the configured embedder is
    not the one that built it, it is re-embedded, and so are the synthetic
    collections made from it (their stamps name the fingerprint).
    """
    from rag import RAG
    from rag.errors import EmbedderMismatch

    folder = root / "base"
    squad = load_squad(SQUAD, folder)
    with RAG(folder / "index", progress=False) as rag:
        try:
            info = rag.embedder.info
        except EmbedderMismatch:
            ctx.log("base: the configured embedder is another one; re-embedding …")
            rag.rebuild(reembed=True)
            info = rag.embedder.info
        report = rag.ingest([*squad.corpus, BBC])
        ctx.log(f"base: {report.paragraphs} paragraphs changed, ingest {report.seconds:.0f} s")
    embedder = f"{info.name} ({info.fingerprint})"
    return folder / "index", embedder


def _questions() -> list[str]:
    """Every SQuAD tune question, in a fixed shuffled order."""
    data = json.loads(SQUAD.read_text())["data"]
    questions = [q["question"] for a in data for p in a["paragraphs"] for q in p["qas"]]
    random.Random(0).shuffle(questions)
    return questions


def _question_vectors(base: Path, embedder: str, questions: list[str]) -> np.ndarray:
    """The questions embedded by the base index's embedder (cached per embedder)."""
    from rag import RAG

    tag = hashlib.sha256(embedder.encode()).hexdigest()[:12]
    path = base.parent / f"questions-{len(questions)}-{tag}.npy"
    if not path.exists():
        with RAG(base, progress=False) as rag:
            np.save(path, rag.embedder.embed(questions, batch_size=64))
    return np.load(path)


# --- the synthetic collections -----------------------------------------------------------
def _index_plan() -> dict[str, object]:
    """What shapes a built index; a cached one built another way is built again."""
    return {
        "exact_max": index_mod.EXACT_MAX_VECTORS,
        "lists_per_sqrt": index_mod.IVF_LISTS_PER_SQRT,
        "train_per_list": index_mod.IVF_TRAIN_PER_LIST,
        "train_iterations": index_mod.IVF_TRAIN_ITERATIONS,
        "lexical_format": LEXICAL_FORMAT,
        "articles_format": ARTICLES_FORMAT,
    }


def _build(folder: Path, base: Path, size: int, ctx: BenchContext) -> None:
    """Write the synthetic store and build its indexes, each in a child process, if not cached.

    Children keep this process's memory small and give the build its own peak RSS.
    """
    base_store = Store(base / "rag.sqlite")
    fingerprint = base_store.get_meta("embedder_fingerprint")
    base_store.close()
    stamp = {"size": size, "version": SYNTH_VERSION, "base": str(base), "embedder": fingerprint}
    store_file = folder / "store.json"
    if not store_file.exists() or json.loads(store_file.read_text()) != stamp:
        ctx.log(f"writing {size:,} synthetic passages into {folder} …")
        _child("store", folder, base, size)
        store_file.write_text(json.dumps(stamp))
        (folder / "build.json").unlink(missing_ok=True)
    build_file = folder / "build.json"
    if not build_file.exists() or json.loads(build_file.read_text()).get("plan") != _index_plan():
        ctx.log(f"building the indexes of {folder} …")
        _child("index", folder)


def _child(step: str, *args: object, capture: bool = False) -> str:
    """Run one step of this module in a fresh Python process; its output if ``capture``."""
    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "benchmarks.search", step, *map(str, args)]
    output = subprocess.PIPE if capture else None
    return subprocess.run(command, check=True, cwd=root, stdout=output, text=True).stdout or ""


def perturb(text: str, rng: np.random.Generator) -> str:
    """The passage with its sentences shuffled, some words dropped and some swapped."""
    sentences = SENTENCE.split(text)
    rng.shuffle(sentences)
    words = " ".join(sentences).split()
    if len(words) > 3:
        draws = rng.random(len(words))
        words = [w for w, d in zip(words, draws, strict=True) if d >= DROP_WORD]
        for i in np.flatnonzero(rng.random(len(words) - 1) < SWAP_WORD):
            words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


def near(vectors: np.ndarray, pool: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors at a cosine drawn from ``NOISE_COS`` to each of ``vectors``."""
    n, dimension = vectors.shape
    random_part = rng.standard_normal((n, dimension)).astype(np.float32)
    real_part = pool[rng.integers(0, len(pool), n)] - pool[rng.integers(0, len(pool), n)]
    direction = _unit(random_part) + _unit(real_part)
    direction -= (direction * vectors).sum(axis=1, keepdims=True) * vectors
    direction = _unit(direction)
    cos = rng.uniform(*NOISE_COS, size=(n, 1)).astype(np.float32)
    return _unit(cos * vectors + np.sqrt(1 - cos * cos) * direction)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)


@dataclass
class Base:
    """The real collection: articles, their paragraphs with passage texts, and vectors."""

    articles: list[tuple[int, dict[str, Any]]]  # id, Document fields
    paragraphs: dict[int, list[tuple]]
    vectors: dict[str, np.ndarray]  # by passage text hash
    meta: dict[str, str | None]  # which embedder made the vectors


def _read_base(base: Path) -> Base:
    store = Store(base / "rag.sqlite")
    db = store.db
    fields = ("source", "path", "title", "author", "publisher", "published", "url", "format")
    articles = [
        (row[0], dict(zip(fields, row[1:], strict=True)))
        for row in db.execute(f"SELECT id, {', '.join(fields)} FROM articles ORDER BY id")
    ]
    parts: dict[int, list[str]] = {}
    for paragraph_id, text in db.execute(
        "SELECT paragraph_id, text FROM passages ORDER BY paragraph_id, part"
    ):
        parts.setdefault(paragraph_id, []).append(text)
    paragraphs: dict[int, list[tuple]] = {}
    for paragraph_id, article_id, number, text, start, end in db.execute(
        "SELECT id, article_id, number, text, start, end FROM paragraphs "
        "ORDER BY article_id, number"
    ):
        if parts.get(paragraph_id):
            paragraphs.setdefault(article_id, []).append(
                (number, text, start, end, parts[paragraph_id])
            )
    vectors = {
        h: np.frombuffer(blob, dtype=np.float32)
        for h, blob in db.execute("SELECT text_hash, vector FROM embeddings")
    }
    meta = {
        k: store.get_meta(k)
        for k in ("embedder_name", "embedder_dimension", "embedder_fingerprint")
    }
    store.close()
    return Base(articles, paragraphs, vectors, meta)


def write_store(folder: Path, base_index: Path, size: int) -> None:
    """The real articles once, then perturbed copies of them until ``size`` passages."""
    base = _read_base(base_index)
    pool = np.vstack(list(base.vectors.values()))
    index_folder = folder / "index"
    shutil.rmtree(index_folder, ignore_errors=True)
    store = Store(index_folder / "rag.sqlite")
    rng = np.random.default_rng(SEED)
    # Dates from a generator of their own, so the texts and vectors are those of version 1.
    first, last = (np.datetime64(d, "D") for d in DATES)
    span = int((last - first) / np.timedelta64(1, "D")) + 1
    days = np.random.default_rng(SEED + 1)
    used: set[str] = set()
    written = 0
    copy = 0
    started = time.perf_counter()
    while written < size:
        hashes: list[str] = []
        originals: list[np.ndarray] = []
        with store.transaction():
            for article_id, fields in base.articles:
                doc_paragraphs, pieces = [], []
                for number, text, start, end, parts in base.paragraphs.get(article_id, []):
                    if written >= size:
                        break
                    new_parts = list(parts)
                    if copy:
                        new_parts = [_unique(perturb(p, rng), used, copy) for p in parts]
                        text = " ".join(new_parts)
                    for old, new in zip(parts, new_parts, strict=True):
                        used.add(text_hash(new))
                        hashes.append(text_hash(new))
                        originals.append(base.vectors[text_hash(old)])
                    written += len(parts)
                    doc_paragraphs.append(Paragraph(number, text, start, end))
                    pieces.append(new_parts)
                if not doc_paragraphs:
                    continue
                doc = Document(**fields, paragraphs=doc_paragraphs)
                if copy:
                    doc.source = f"{doc.source}~{copy}"
                    doc.published = str(first + np.timedelta64(int(days.integers(span)), "D"))
                store.write_article(doc, document_hash(doc), pieces)
            block = np.vstack(originals)
            if copy:
                block = near(block, pool, rng)
            store.put_embeddings(hashes, block)
        copy += 1
        print(f"  copy {copy}: {written:,} passages, {time.perf_counter() - started:.0f} s")
    with store.transaction():
        for key, value in base.meta.items():
            if value is not None:
                store.set_meta(key, value)
        store.bump_generation()
    store.close()


def _unique(text: str, used: set[str], copy: int) -> str:
    """A perturbed text no passage has yet (a shared text would share its vector)."""
    if text_hash(text) in used:
        text = f"{text} ({copy})"
    return text


def build_indexes(folder: Path) -> None:
    """``build_derived`` over the store, timing its FAISS and BM25 parts."""
    import resource

    timings = {"dense_s": 0.0, "bm25_s": 0.0}

    def timed(name: str, build: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            result = build(*args, **kwargs)
            timings[name] += time.perf_counter() - started
            return result

        return wrapper

    index_mod.VectorIndex.build = timed("dense_s", index_mod.VectorIndex.build)
    LexicalIndex.build = timed("bm25_s", LexicalIndex.build)
    store = Store(folder / "index" / "rag.sqlite")
    dimension = int(store.get_meta("embedder_dimension") or 384)
    started = time.perf_counter()
    derived = published.build_derived(folder / "index", store, dimension)
    seconds = time.perf_counter() - started
    result = {
        "seconds": seconds,
        **timings,
        "rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
        "kind": derived.vectors.kind,
        "passages": len(derived.vectors),
        "plan": _index_plan(),
    }
    store.close()
    (folder / "build.json").write_text(json.dumps(result, indent=1))
    print(f"  built in {seconds:.0f} s: {result}")


# --- measurements ------------------------------------------------------------------------
def _recall(folder: Path, queries: np.ndarray, ctx: BenchContext) -> tuple[float, float]:
    """Recall@10 and @100 of the published dense index against exact search on its vectors."""
    import faiss

    store = Store(folder / "index" / "rag.sqlite")
    derived = published.load_published(folder / "index", store)
    store.close()
    assert derived is not None
    vectors = derived.vectors
    truth_file = folder / f"exact-{derived.generation}-{len(queries)}.npy"
    if truth_file.exists():
        truth = np.load(truth_file)
    else:
        ids = np.sort(vectors.ids())
        exact = faiss.IndexFlatIP(vectors.dimension)
        exact.add(vectors.vectors(ids))
        _, rows = exact.search(queries, 100)
        truth = ids[rows]
        np.save(truth_file, truth)
    hits10 = hits100 = 0
    for query, expected in zip(queries, truth, strict=True):
        found, _ = vectors.search(query, 100)
        hits10 += len(np.intersect1d(found[:10], expected[:10]))
        hits100 += len(np.intersect1d(found, expected))
    ctx.log(f"{vectors.kind}: recall@10 {hits10 / len(queries) / 10:.4f}")
    return hits10 / len(queries) / 10, hits100 / len(queries) / 100


def _real_recall(base: Path, queries: np.ndarray, ctx: BenchContext) -> float:
    """Recall@10 of an IVF index with the default rules over the real vectors alone.

    Near-duplicates cluster, which flatters an IVF index; real passages spread
    their neighbours over more lists, so this is the figure to watch.
    """
    store = Store(base / "rag.sqlite")
    ids, vectors = store.passage_vectors(queries.shape[1])
    store.close()
    exact = index_mod.VectorIndex.build(ids, vectors)
    ivf = index_mod.VectorIndex.build(ids, vectors, exact_max=0)
    hits = 0
    for query in queries:
        expected, _ = exact.search(query, 10)
        found, _ = ivf.search(query, 10)
        hits += len(np.intersect1d(found, expected))
    ctx.log(f"real vectors only, {ivf.kind}: recall@10 {hits / len(queries) / 10:.4f}")
    return hits / len(queries) / 10


def _open_cost(index: Path, question: str) -> dict[str, float]:
    """Seconds and resident memory of a fresh process's first search (which opens the
    indexes). A fresh process, because this one has just held and freed other indexes,
    whose memory the allocator keeps and hands out again."""
    measured = json.loads(_child("open", index, question, capture=True).splitlines()[-1])
    return {k: round(v, 2) for k, v in measured.items()}


def open_indexes(index: Path, question: str) -> dict[str, float]:
    from rag import RAG

    with RAG(index, progress=False) as rag:
        rag.embedder.embed(["warm up"])
        before = _rss_gb()
        started = time.perf_counter()
        rag.search(question)
        return {
            "search_open_s_1m": time.perf_counter() - started,
            "search_rss_gb_1m": _rss_gb() - before,
        }


def _rss_gb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1e6
    return float("nan")


@dataclass
class Timing:
    """What ``_latency`` measured: milliseconds per call, unless named otherwise."""

    search_ms: list[float]
    embed_ms: list[float]
    filtered_ms: list[float]
    narrow_ms: list[float]
    narrow_new_ms: list[float]
    dated_ms: list[float]


def _latency(index: Path, questions: list[str], filtered: bool) -> Timing:
    """RAG.search and the question embedding alone, interleaved, one question at a time;
    with ``filtered``, searches filtered to BBC business, to one article (and copies), to
    another article each time, and to one year."""
    from rag import RAG

    with RAG(index, progress=False) as rag:
        rag.embedder.embed(["warm up"])
        timing = Timing([], [], [], [], [], [])
        for q in questions[:5]:
            rag.search(q)
        for q in questions:
            started = time.perf_counter()
            rag.embedder.embed([q])
            timing.embed_ms.append((time.perf_counter() - started) * 1e3)
            started = time.perf_counter()
            rag.search(q)
            timing.search_ms.append((time.perf_counter() - started) * 1e3)
        for n, q in enumerate(questions[:50] if filtered else [], start=2):
            for filters, timed in (
                ({"source": "business/*"}, timing.filtered_ms),
                ({"source": "business/001.txt*"}, timing.narrow_ms),
                ({"source": f"business/{n:03d}.txt*"}, timing.narrow_new_ms),
                (DATED_FILTER, timing.dated_ms),
            ):
                started = time.perf_counter()
                rag.search(q, **filters)
                timed.append((time.perf_counter() - started) * 1e3)
    return timing


if __name__ == "__main__":  # the steps run in child processes (see _child)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    step, *args = sys.argv[1:]
    if step == "store":
        write_store(Path(args[0]), Path(args[1]), int(args[2]))
    elif step == "index":
        build_indexes(Path(args[0]))
    else:
        print(json.dumps(open_indexes(Path(args[0]), args[1])))
