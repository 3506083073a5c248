"""``rag check`` of the folder index: is it whole and consistent, and ``--repair`` when not.

The database is the source of truth; the FAISS and BM25 indexes are derived
from it. The checks say whether they agree: every passage of every paragraph
has exactly one vector in FAISS and one document in BM25 and nothing else is
there, the vectors are the stored embeddings, the embedder is the one that
built the index, and SQLite finds its own file sound. Repair brings the
derived side back in line with the database (it never edits articles). A Milvus
collection has checks of its own (``rag.stores.milvus``) in the same report form.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rag.embed import Embedder, EmbedderInfo
from rag.ingest import embed_texts, split_for
from rag.lexical import BM25Params
from rag.settings import default
from rag.store import Store
from rag.stores.base import Check, CheckReport, text_hash
from rag.stores.published import Derived, build_derived, load_published, published_generation

# Vectors compared with the stored embeddings; a sample catches a damaged or
# foreign file without reading a million vectors back.
SAMPLE_VECTORS = 256


def _nonzero(*counted: tuple[int, str]) -> list[str]:
    """The descriptions whose count is not zero: the problems found, in order."""
    return [text for count, text in counted if count]


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else plural or word + 's'}"


def check_database(store: Store) -> Check:
    problems = store.integrity_problems()
    if problems:
        shown = "; ".join(problems[:3]) + (" …" if len(problems) > 3 else "")
        return Check("database", False, f"SQLite integrity check failed: {shown}")
    return Check("database", True, "SQLite integrity and foreign-key checks pass")


def check_passages(store: Store) -> Check:
    bare = len(store.paragraphs_without_passages())
    unembedded = len(store.passages_without_embedding())
    unused = store.count_unused_embeddings()
    problems = _nonzero(
        (bare, f"{_plural(bare, 'paragraph')} without passages"),
        (unembedded, f"{_plural(unembedded, 'passage text')} without an embedding"),
        (unused, f"{_plural(unused, 'embedding')} no passage uses"),
    )
    stats = store.stats()
    if problems:
        return Check("passages", False, "; ".join(problems))
    return Check(
        "passages",
        True,
        f"{_plural(stats.paragraphs, 'paragraph')} in {_plural(stats.articles, 'article')}, "
        f"{_plural(stats.passages, 'passage')}, each with an embedding",
    )


def check_embedder(store: Store, configured: EmbedderInfo | None) -> Check:
    recorded = store.get_meta("embedder_fingerprint")
    if recorded is None:
        if store.stats().passages:
            return Check("embedder", False, "the index does not record which embedder built it")
        return Check("embedder", True, "no embedder recorded yet (empty index)")
    name = store.get_meta("embedder_name")
    dimension = store.get_meta("embedder_dimension")
    if configured is None:
        return Check("embedder", True, f"built with {name} ({dimension} dimensions, {recorded})")
    if configured.fingerprint != recorded or str(configured.dimension) != dimension:
        return Check(
            "embedder",
            False,
            f"built with {name} ({dimension} dimensions, weights {recorded}) but the configured "
            f"embedder is {configured.name} ({configured.dimension} dimensions, weights "
            f"{configured.fingerprint}): use --embedder {name!r}, or rag rebuild --reembed",
        )
    return Check("embedder", True, f"{name} ({dimension} dimensions, weights {recorded})")


def check_published(store: Store, derived: Derived | None) -> Check:
    generation = store.generation
    if derived is None:
        if store.stats().passages == 0:
            return Check("search indexes", True, "none yet (empty index)")
        return Check("search indexes", False, "missing or unreadable")
    if derived.generation != generation:
        return Check(
            "search indexes",
            False,
            f"built for database generation {derived.generation}, the database is at "
            f"{generation} (an interrupted ingest?)",
        )
    return Check("search indexes", True, f"match database generation {generation}")


def _compare_ids(name: str, found: np.ndarray, expected: np.ndarray, what: str) -> Check:
    unique = np.unique(found)
    duplicates = len(found) - len(unique)
    missing = np.setdiff1d(expected, unique).size
    extra = np.setdiff1d(unique, expected).size
    problems = _nonzero(
        (missing, f"{_plural(missing, 'passage')} missing"),
        (extra, f"{_plural(extra, 'entry', 'entries')} for no stored passage"),
        (duplicates, f"{_plural(duplicates, 'passage')} twice"),
    )
    if problems:
        return Check(name, False, "; ".join(problems))
    return Check(name, True, f"one {what} for each of the {_plural(len(expected), 'passage')}")


def check_vectors(store: Store, derived: Derived | None) -> Check:
    if derived is None:
        return Check("vectors", store.stats().passages == 0, "no FAISS index")
    ids = store.passage_ids()
    index = derived.vectors
    found = index.ids()
    result = _compare_ids("vectors", found, ids, "FAISS vector")
    if not result.ok:
        return result
    dimension = int(store.get_meta("embedder_dimension") or index.dimension)
    if index.dimension != dimension:
        return Check("vectors", False, f"FAISS has {index.dimension} dimensions, not {dimension}")
    try:
        sample, stored = store.sample_vectors(SAMPLE_VECTORS, dimension)
    except ValueError:
        return Check("vectors", False, "a stored embedding has the wrong size")
    published = {int(i) for i in found}
    sample_in = [i for i, pid in enumerate(sample) if int(pid) in published]
    if sample_in:
        indexed = index.vectors(sample[sample_in])
        if not np.allclose(indexed, stored[sample_in], atol=1e-5):
            return Check("vectors", False, "FAISS vectors differ from the stored embeddings")
    return Check("vectors", True, result.detail + f" (a sample of {len(sample_in)} matches)")


def check_lexical(store: Store, derived: Derived | None) -> Check:
    if derived is None:
        return Check("bm25", store.stats().passages == 0, "no BM25 index")
    return _compare_ids("bm25", derived.lexical.ids, store.passage_ids(), "BM25 document")


# The checks that a database ahead of its published search indexes fails.
_DERIVED_CHECKS = frozenset({"search indexes", "vectors", "bm25"})


def interrupted_publish(store: Store, report: CheckReport) -> bool:
    """Whether the only failures are search indexes older than the database, as an ingest
    killed after a commit leaves them, with everything they are built from in place."""
    failed = {c.name for c in report.checks if not c.ok}
    published = published_generation(store)
    return (
        bool(failed)
        and failed <= _DERIVED_CHECKS
        and (published is None or published < store.generation)
    )


def run_checks(
    store: Store, folder: Path, bm25: BM25Params, configured: EmbedderInfo | None
) -> list[Check]:
    """Every check, in the order a reader would want them (database first)."""
    database = check_database(store)
    if not database.ok:
        return [database]  # nothing else can be trusted; and repair cannot help
    derived = load_published(folder, store, bm25)
    return [
        database,
        check_passages(store),
        check_embedder(store, configured),
        check_published(store, derived),
        check_vectors(store, derived),
        check_lexical(store, derived),
    ]


def repair(
    store: Store,
    folder: Path,
    embedder: Embedder,
    bm25: BM25Params,
    *,
    batch_size: int = default("batch_size"),
    max_passage_tokens: int = default("max_passage_tokens"),
) -> tuple[list[str], Derived]:
    """Make the derived side match the database again; returns what was done.

    Paragraphs without passages are split and embedded, passages without an
    embedding are embedded, unused embeddings dropped, and the FAISS and BM25
    indexes rebuilt from the database. The caller holds the write lock and has
    checked that ``embedder`` is the one that built the index.
    """
    done: list[str] = []
    bare = store.paragraphs_without_passages()
    split = split_for(embedder, [text for _, text in bare], max_passage_tokens)
    pieces = {pid: parts for (pid, _), parts in zip(bare, split, strict=True)}
    missing = store.passages_without_embedding()
    for parts in pieces.values():
        for part in parts:
            missing.setdefault(text_hash(part), part)
    hashes = list(missing)
    vectors = embed_texts(embedder, [missing[h] for h in hashes], batch_size)
    with store.transaction():
        for paragraph_id, parts in pieces.items():
            store.add_passages(paragraph_id, parts)
        store.put_embeddings(hashes, vectors)
        unused = store.drop_unused_embeddings()
        if pieces or hashes or unused:
            store.bump_generation()
    if pieces:
        done.append(f"split and embedded {_plural(len(pieces), 'paragraph')} without passages")
    if hashes:
        done.append(f"embedded {_plural(len(hashes), 'passage text')}")
    if unused:
        done.append(f"dropped {_plural(unused, 'unused embedding')}")
    derived = build_derived(folder, store, embedder.info.dimension, bm25)
    done.append(f"rebuilt the FAISS and BM25 indexes (database generation {derived.generation})")
    return done, derived
