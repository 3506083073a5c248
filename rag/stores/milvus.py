"""The index in Milvus: one collection of passages, one of files and articles.

Through pymilvus' ``MilvusClient``, so the same calls reach a Milvus Lite file
(``./milvus.db``, in this process), a Milvus server (``http://host:19530``) or a managed
cluster. The ``milvus`` extra installs pymilvus and milvus-lite.

The passages collection (``milvus_collection``) has one row per passage: its text and its
paragraph's, the article's id, source, path, title, author, publisher, url and publication
(``published`` as given, ``day`` as the integer YYYYMMDD that date filters compare), the
passage text's hash, the dense vector, and the text BM25 reads with the sparse vector that
Milvus' BM25 function derives from it. Lexical search is that function's BM25. Hybrid search
with 'rrf' fusion is Milvus' ``hybrid_search`` with an ``RRFRanker``; the default 'weighted'
fusion is the folder index's own (rag.fusion), over both routes' candidates each scored by
both routes (see ENGINE_DIFFERENCES["weighted ranker"]).

Passage, paragraph and article ids are hashes of the article's source and content hash
(and the paragraph and part numbers), so writing an article twice writes the same rows:
an upsert by passage key makes a retried batch idempotent.

The files collection (``<milvus_collection>_files``) holds what incremental ingest needs,
one row each: every file's hash ("f:" keys), every article's content hash, id and passage
count ("a:" keys), and metadata such as the embedder that built the index ("m:" keys).

Writes are ordered so that a crash between them leaves nothing a re-run would not redo:
the new passages are upserted first, then the article's old ones deleted, then its article
row, then the file row. Until the file row is written, the next ingest reads the file again.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pymilvus import (
    AnnSearchRequest,
    CollectionSchema,
    DataType,
    Function,
    FunctionType,
    MilvusClient,
    MilvusException,
    RRFRanker,
)
from pymilvus.milvus_client import IndexParams

from rag.errors import IndexBusy, NoIndex, RagError
from rag.fusion import weighted
from rag.lexical import tokenize
from rag.settings import Settings
from rag.stores.base import (
    Check,
    CheckReport,
    EmbedderRecord,
    Hits,
    SearchOptions,
    Stats,
    StoredFile,
    StoreInfo,
    WriteBatch,
    best_first,
    fused_hits,
    no_hits,
)
from rag.types import Article, Filters, Paragraph, Passage

if TYPE_CHECKING:
    from rag.embed import Embedder, EmbedderInfo

log = logging.getLogger(__name__)

# Where Milvus Lite 3.x (a re-implementation in Python, what a ``.db`` URI and
# ``milvus-lite server`` run) differs from the Milvus server, and what this module does
# about each; nothing else in the code depends on which engine answers.
ENGINE_DIFFERENCES = {
    "analyzer": (
        "Lite refuses the 'english' analyzer and accepts a 'stemmer' filter but ignores it; "
        "the server has both. So the text that BM25 reads is tokenized and stemmed here, by "
        "the folder index's own tokenizer (rag.lexical), and the collection's analyzer is "
        "the plain 'standard' one: the same tokens on either engine and in either store."
    ),
    "bm25 scores": (
        "Lite returns BM25 scores negated (more negative is better), the server positive: "
        "scores are read as magnitudes, and only their order is relied on."
    ),
    "weighted ranker": (
        "Milvus' WeightedRanker blends only the scores each route returned: a candidate from "
        "one route's top list counts 0 on the other (and Lite min-max-normalises, the server "
        "maps through arctan). The folder index scores every candidate by both routes, which "
        "SQuAD recall@5 showed to be worth 0.011. So weighted fusion is done here with "
        "rag.fusion: the missing dense scores from the stored vectors, the missing BM25 "
        "scores by a search among those ids, on either engine alike."
    ),
    "description": (
        "Lite keeps no collection description: the embedder is recorded in a metadata row "
        "of the files collection, which either engine keeps."
    ),
    "load": (
        "A Lite collection opened again is released; collections are loaded on open (a "
        "server keeps them loaded, and loading again is harmless)."
    ),
    "one process": (
        "A Lite file is open in one process at a time (it holds a LOCK file); processes "
        "share one through `milvus-lite server --data-dir FILE --port N`, as they would "
        "share a server."
    ),
    "index wait": (
        "Lite does not implement AllocTimestamp, with which a client waits for an index to be "
        "built (and its in-process server logs the refusal as an error); Lite builds indexes "
        "as they are asked for. So the wait is asked of a server only."
    ),
    "expression templates": (
        "Lite does not read filter templates ({name} with filter_params): filters are "
        "written out, with their strings quoted here."
    ),
}

FILES_SUFFIX = "_files"
# Field sizes: VARCHAR holds at most 65,535 bytes; longer text is cut at a character.
TEXT_BYTES = 65_535
NAME_BYTES = 8_192
HASH_BYTES = 64
# Rows per insert or upsert call, and ids per IN list: well inside gRPC's message size.
WRITE_ROWS = 512
IN_LIST = 512
FIRST_PARTS_KEPT = 100_000
# Most rows one query returns (Milvus' own cap); past it, a query iterator reads them in
# batches.
QUERY_CAP = 16_384
QUERY_BATCH = 4_096
# Milvus needs a vector field in every collection; the files collection's is a placeholder.
PLACEHOLDER_DIM = 2
SPARSE_INDEX = "SPARSE_INVERTED_INDEX"
# Approximate indexes' build and search parameters (docs/scaling.md): HNSW's graph degree and
# build beam, searched with a beam of at least this many; IVF's lists searched per query.
HNSW_BUILD = {"M": 16, "efConstruction": 200}
HNSW_EF = 128
IVF_LISTS = 1024
IVF_PROBES = 32

_ENDPOINT = re.compile(r"^(https?|tcp|grpc|unix)://", re.IGNORECASE)
_DAY = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?", re.ASCII)
_PASSAGE_FIELDS = [
    "id",
    "article_id",
    "paragraph_id",
    "paragraph",
    "part",
    "text",
    "title",
    "source",
    "published",
    "author",
    "publisher",
    "url",
]


def is_local(uri: str) -> bool:
    """Whether ``uri`` names a Milvus Lite file rather than a server."""
    return not _ENDPOINT.match(uri)


def _id(*parts: object) -> int:
    """A positive 63-bit id from ``parts`` (the same parts, the same id, on any machine)."""
    digest = hashlib.blake2b("\x00".join(map(str, parts)).encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") & (2**63 - 1)) or 1


def article_key(source: str, content_hash: str) -> int:
    return _id("article", source, content_hash)


def day_of(published: str | None) -> int:
    """A publication date as the integer YYYYMMDD (YYYY0000 for a year alone), compared as
    the folder index compares the date's text; -1 for none."""
    match = _DAY.match(published or "")
    if not match:
        return -1
    year, month, day = match.groups()
    return int(year) * 10_000 + int(month or 0) * 100 + int(day or 0)


def _cut(text: str | None, limit: int) -> str:
    data = (text or "").encode()
    return text or "" if len(data) <= limit else data[:limit].decode(errors="ignore")


def _quoted(text: str) -> str:
    """A string literal of Milvus' filter expressions."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _in(field: str, values: Iterable[str] | Iterable[int]) -> str:
    items = [_quoted(v) if isinstance(v, str) else str(int(v)) for v in values]
    return f"{field} in [{', '.join(items)}]"


def _like(glob: str) -> str | None:
    """The LIKE pattern that matches what the glob matches; None when it has a character
    set (``[...]``), which LIKE cannot say."""
    if "[" in glob:
        return None
    out = []
    for char in glob:
        if char == "*":
            out.append("%")
        elif char == "?":
            out.append("_")
        elif char in "%_\\":
            out.append("\\" + char)
        else:
            out.append(char)
    return "".join(out)


def _glob_matches(pattern: str, text: str) -> bool:
    """SQLite's GLOB (case-sensitive; ``[^...]`` negates), which the folder index uses."""
    return fnmatch.fnmatchcase(text, pattern.replace("[^", "[!"))


def _source_globs(pattern: str) -> list[str]:
    """The globs a source filter stands for: the pattern, and any tail of the path."""
    return [pattern, "*/" + pattern]


@dataclass(frozen=True)
class _Names:
    passages: str
    files: str


class MilvusStore:
    """An index in Milvus (see the module's docstring), as an :class:`IndexStore`.

    With ``create``, the collections are made on the first write (the vectors give the
    dimension); without it, a missing index is :class:`NoIndex` and nothing is made.
    """

    kind = "milvus"

    def __init__(
        self,
        settings: Settings,
        *,
        create: bool = False,
        dimension: Callable[[], int] | None = None,
    ) -> None:
        self.uri = _uri(settings.milvus_uri)
        self.names = _Names(settings.milvus_collection, settings.milvus_collection + FILES_SUFFIX)
        self.location = f"{settings.milvus_uri} (collection {settings.milvus_collection})"
        self.settings = settings
        self._dimension_of = dimension
        self.index_type = settings.milvus_index
        if not create and not self.exists(settings):
            raise NoIndex(no_index_message(settings))
        if create and is_local(self.uri):
            # As the folder index makes its folder: --milvus-uri data/m.db in a new folder.
            Path(self.uri).parent.mkdir(parents=True, exist_ok=True)
        self.client = _connect(self.uri, settings)
        self._lite = self.client.get_server_version().startswith("milvus_lite")
        self._loaded: set[str] = set()
        # Each paragraph's first passage's primary key (a hash of what the paragraph id hashes):
        # derived, never stale.
        self._first_parts: dict[int, int] = {}

    # --- collections ------------------------------------------------------------------------
    @staticmethod
    def exists(settings: Settings) -> bool:
        """Whether the index is there: for a Lite file, without creating the file."""
        uri = _uri(settings.milvus_uri)
        if is_local(uri) and not Path(uri).exists():
            return False
        client = _connect(uri, settings)
        return bool(client.has_collection(settings.milvus_collection + FILES_SUFFIX))

    def close(self) -> None:
        self.client.close()

    def _has(self, name: str) -> bool:
        if name in self._loaded:
            return True
        if not self.client.has_collection(name):
            return False
        self.client.load_collection(name)  # see ENGINE_DIFFERENCES["load"]
        self._loaded.add(name)
        return True

    def _ensure_files(self) -> None:
        if self._has(self.names.files):
            return
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=NAME_BYTES)
        schema.add_field("kind", DataType.VARCHAR, max_length=16)
        schema.add_field("path", DataType.VARCHAR, max_length=NAME_BYTES)
        schema.add_field("name", DataType.VARCHAR, max_length=NAME_BYTES)
        schema.add_field("hash", DataType.VARCHAR, max_length=HASH_BYTES)
        schema.add_field("article_id", DataType.INT64)
        schema.add_field("count", DataType.INT64)
        schema.add_field("format", DataType.VARCHAR, max_length=64)
        schema.add_field("value", DataType.VARCHAR, max_length=TEXT_BYTES)
        schema.add_field("placeholder", DataType.FLOAT_VECTOR, dim=PLACEHOLDER_DIM)
        index = self.client.prepare_index_params()
        index.add_index("placeholder", index_type="FLAT", metric_type="L2")
        self._create(self.names.files, schema, index)

    def _ensure_passages(self, dimension: int) -> None:
        if self._has(self.names.passages):
            return
        self._ensure_files()
        bm25 = {"bm25_k1": self.settings.bm25_k1, "bm25_b": self.settings.bm25_b}
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        for name in ("article_id", "paragraph_id", "paragraph", "part", "start", "end", "day"):
            schema.add_field(name, DataType.INT64)
        schema.add_field("text", DataType.VARCHAR, max_length=TEXT_BYTES)
        schema.add_field("passage", DataType.VARCHAR, max_length=TEXT_BYTES)
        schema.add_field(
            "lexical",
            DataType.VARCHAR,
            max_length=TEXT_BYTES,
            enable_analyzer=True,
            analyzer_params={"tokenizer": "standard"},  # ENGINE_DIFFERENCES["analyzer"]
        )
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dimension)
        schema.add_field("text_hash", DataType.VARCHAR, max_length=HASH_BYTES)
        for name in ("source", "path", "title", "url"):
            schema.add_field(name, DataType.VARCHAR, max_length=NAME_BYTES)
        for name in ("author", "publisher", "published", "format"):
            schema.add_field(name, DataType.VARCHAR, max_length=1024)
        schema.add_function(
            Function(
                name="bm25",
                function_type=FunctionType.BM25,
                input_field_names=["lexical"],
                output_field_names=["sparse"],
            )
        )
        index = self.client.prepare_index_params()
        index.add_index(
            "vector", index_type=self.index_type, metric_type="IP", params=self._build_params()
        )
        index.add_index("sparse", index_type=SPARSE_INDEX, metric_type="BM25", params=bm25)
        self._create(self.names.passages, schema, index)
        self._meta_put("bm25", json.dumps(bm25))

    def _create(self, name: str, schema: CollectionSchema, index: IndexParams) -> None:
        """Create collection ``name`` with its indexes, and load it."""
        self.client.create_collection(name, schema=schema, consistency_level="Strong")
        # ENGINE_DIFFERENCES["index wait"]
        self.client.create_index(name, index, sync=not self._lite)
        self._has(name)

    def _build_params(self) -> dict[str, Any]:
        if self.index_type == "HNSW":
            return dict(HNSW_BUILD)
        if self.index_type.startswith("IVF"):
            return {"nlist": IVF_LISTS}
        return {}

    def _search_params(self, k: int) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if self.index_type == "HNSW":
            params = {"ef": max(k, HNSW_EF)}
        elif self.index_type.startswith("IVF"):
            params = {"nprobe": IVF_PROBES}
        return {"metric_type": "IP", "params": params}

    # --- rows -----------------------------------------------------------------------------
    def _query(
        self, name: str, expression: str, fields: list[str], limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Rows matching ``expression`` (all of them, unless ``limit``)."""
        if not self._has(name):
            return []
        wanted = QUERY_CAP if limit is None else limit
        rows = list(self.client.query(name, filter=expression, output_fields=fields, limit=wanted))
        if limit is None and len(rows) == QUERY_CAP:  # more than one query returns
            return list(self._iterate(name, expression, fields))
        return rows

    def _iterate(self, name: str, expression: str, fields: list[str]) -> Iterator[dict[str, Any]]:
        """Every row matching ``expression``, in batches."""
        rows = self.client.query_iterator(
            name, batch_size=QUERY_BATCH, filter=expression, output_fields=fields
        )
        try:
            while batch := rows.next():
                yield from batch
        finally:
            rows.close()

    def _count(self, name: str, expression: str = "") -> int:
        if not self._has(name):
            return 0
        rows = self.client.query(name, filter=expression, output_fields=["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    def _meta_get(self, key: str) -> str | None:
        if not self._has(self.names.files):
            return None
        rows = self.client.get(self.names.files, ids=["m:" + key], output_fields=["value"])
        return str(rows[0]["value"]) if rows else None

    def _meta_put(self, key: str, value: str) -> None:
        self._ensure_files()
        self.client.upsert(self.names.files, [self._file_row("m:" + key, "meta", value=value)])

    @staticmethod
    def _file_row(key: str, kind: str, **values: Any) -> dict[str, Any]:
        row: dict[str, Any] = {
            "key": key,
            "kind": kind,
            "path": "",
            "name": "",
            "hash": "",
            "article_id": 0,
            "count": 0,
            "format": "",
            "value": "",
            "placeholder": [0.0] * PLACEHOLDER_DIM,
        }
        row.update(values)
        row["path"], row["name"] = _cut(row["path"], NAME_BYTES), _cut(row["name"], NAME_BYTES)
        return row

    # --- writing ------------------------------------------------------------------------------
    def writing(self, what: str) -> nullcontext[None]:
        """Milvus takes concurrent writers (upserts by key); a Lite file is one process's
        (ENGINE_DIFFERENCES["one process"]), which opening it already ensured."""
        return nullcontext()

    def write(self, batch: WriteBatch) -> None:
        vectors = dict(batch.vectors)
        if batch.write:
            dimension = self._dimension(vectors)
            self._ensure_passages(dimension)
            wanted = {
                text_hash
                for item in batch.write
                for parts in item.pieces
                for text_hash in map(_hash, parts)
            }
            vectors.update(self._vectors(wanted - set(vectors)))
        self._ensure_files()
        rows: list[dict[str, Any]] = []
        articles: list[dict[str, Any]] = []
        for item in batch.write:
            doc = item.document
            article_id = article_key(doc.source, item.content_hash)
            count = 0
            for paragraph, parts in zip(doc.paragraphs, item.pieces, strict=True):
                paragraph_id = _id("paragraph", article_id, paragraph.number)
                for part, text in enumerate(parts):
                    rows.append(
                        {
                            "id": _id("passage", article_id, paragraph.number, part),
                            "article_id": article_id,
                            "paragraph_id": paragraph_id,
                            "paragraph": paragraph.number,
                            "part": part,
                            "start": paragraph.start,
                            "end": paragraph.end,
                            "day": day_of(doc.published),
                            "text": _cut(paragraph.text, TEXT_BYTES),
                            "passage": "" if text == paragraph.text else _cut(text, TEXT_BYTES),
                            "lexical": lexical_text(doc.title, text),
                            "vector": np.asarray(vectors[_hash(text)], np.float32).tolist(),
                            "text_hash": _hash(text),
                            "source": _cut(doc.source, NAME_BYTES),
                            "path": _cut(doc.path, NAME_BYTES),
                            "title": _cut(doc.title, NAME_BYTES),
                            "url": _cut(doc.url, NAME_BYTES),
                            "author": _cut(doc.author, 1024),
                            "publisher": _cut(doc.publisher, 1024),
                            "published": _cut(doc.published, 1024),
                            "format": _cut(doc.format, 1024),
                        }
                    )
                    count += 1
            articles.append(
                self._file_row(
                    "a:" + doc.source,
                    "article",
                    path=doc.path,
                    name=doc.source,
                    hash=item.content_hash,
                    article_id=article_id,
                    count=count,
                    format=doc.format,
                )
            )
        for start in range(0, len(rows), WRITE_ROWS):
            self.client.upsert(self.names.passages, rows[start : start + WRITE_ROWS])
        # The old versions' passages go once the new ones are in: one delete per slice of
        # articles, not per article (a delete by filter scans the collection). Article ids
        # hash the source, so no row of one source has another's new id.
        for start in range(0, len(articles), IN_LIST):
            chunk = articles[start : start + IN_LIST]
            self._delete_passages(
                f"{_in('source', [row['name'] for row in chunk])} and not "
                f"{_in('article_id', [row['article_id'] for row in chunk])}"
            )
        for sources in _slices(batch.delete):
            self._delete_passages(_in("source", sources))
            self.client.delete(self.names.files, ids=["a:" + s for s in sources])
        for start in range(0, len(articles), WRITE_ROWS):
            self.client.upsert(self.names.files, articles[start : start + WRITE_ROWS])
        files = [
            self._file_row(
                "f:" + f.path, "file", path=f.path, hash=f.hash, count=f.size, format=f.format
            )
            for f in batch.files
        ]
        if files:
            self.client.upsert(self.names.files, files)

    def _delete_passages(self, expression: str) -> None:
        if self._has(self.names.passages):
            self.client.delete(self.names.passages, filter=expression)

    def _dimension(self, vectors: dict[str, np.ndarray]) -> int:
        if vectors:
            return len(next(iter(vectors.values())))
        recorded = self.embedder()
        if recorded is not None and recorded.dimension:
            return recorded.dimension
        if self._dimension_of is None:
            raise ValueError("no embedder is recorded, and no dimension was given")
        return self._dimension_of()

    def _vectors(self, hashes: set[str]) -> dict[str, np.ndarray]:
        """Stored vectors of passage texts (any passage with that text has it)."""
        found: dict[str, np.ndarray] = {}
        for part in _slices(sorted(hashes)):
            expression = _in("text_hash", part)
            for row in self._query(self.names.passages, expression, ["text_hash", "vector"]):
                found.setdefault(row["text_hash"], np.asarray(row["vector"], np.float32))
        return found

    def remove(self, articles: list[tuple[str, str]]) -> None:
        sources = [source for source, _ in articles]
        for part in _slices(sources):
            self._delete_passages(_in("source", part))
            self.client.delete(self.names.files, ids=["a:" + s for s in part])
        for path in sorted({path for _, path in articles}):
            if self.count_articles(path) == 0:
                self.client.delete(self.names.files, ids=["f:" + path])

    def publish(self) -> None:
        """Writes are visible at once (strong consistency); flushing seals them to storage."""
        for name in (self.names.passages, self.names.files):
            if self._has(name):
                self.client.flush(name)

    def rebuild(
        self,
        model: Embedder | None,
        *,
        batch_size: int,
        max_passage_tokens: int,
        show_progress: bool,
    ) -> None:
        if model is not None:
            raise RagError(
                f"Re-embedding a Milvus collection in place is not supported: ingest the "
                f"articles into a new collection (--milvus-collection NAME) with the new "
                f"embedder; {self.location} stays as it is."
            )
        self.publish()  # Milvus maintains its own indexes: nothing is derived here

    # --- incremental ingest -------------------------------------------------------------------
    def get_file(self, path: str) -> StoredFile | None:
        if not self._has(self.names.files):
            return None
        rows = self.client.get(
            self.names.files, ids=["f:" + path], output_fields=["path", "hash", "count", "format"]
        )
        if not rows:
            return None
        row = rows[0]
        return StoredFile(row["path"], row["hash"], int(row["count"]), row["format"])

    def known_files(self) -> dict[str, str]:
        rows = self._query(self.names.files, 'kind == "file"', ["path", "hash"])
        return {row["path"]: row["hash"] for row in rows}

    def article_hashes(self, path: str) -> dict[str, str]:
        expression = f'kind == "article" and path == {_quoted(path)}'
        rows = self._query(self.names.files, expression, ["name", "hash"])
        return {row["name"]: row["hash"] for row in rows}

    def count_articles(self, path: str) -> int:
        return self._count(self.names.files, f'kind == "article" and path == {_quoted(path)}')

    def missing_embeddings(self, hashes: Iterable[str]) -> set[str]:
        wanted = set(hashes)
        found: set[str] = set()
        for part in _slices(sorted(wanted)):
            rows = self._query(self.names.passages, _in("text_hash", part), ["text_hash"])
            found.update(row["text_hash"] for row in rows)
        return wanted - found

    def sources_matching(self, pattern: str) -> list[tuple[str, str]]:
        """As the folder index matches: equal to, or matching the glob, source or path."""
        like = _like(pattern)
        expression = 'kind == "article"'
        if like is not None:
            expression += f" and (name like {_quoted(like)} or path like {_quoted(like)})"
        found = {
            (row["name"], row["path"])
            for row in self._query(self.names.files, expression, ["name", "path"])
            if pattern in (row["name"], row["path"])
            or _glob_matches(pattern, row["name"])
            or _glob_matches(pattern, row["path"])
        }
        return sorted(found)

    # --- search -------------------------------------------------------------------------------
    def _filter(self, filters: Filters | None) -> str:
        """The filter expression of ``filters`` ('' for none)."""
        if filters is None or not filters.active:
            return ""
        clauses = []
        if filters.source:
            clauses.append(self._source_clause(filters.source))
        if filters.since:
            clauses.append(f"day >= {day_of(filters.since.isoformat())}")
        if filters.until:
            clauses.append(f"day >= 0 and day <= {day_of(filters.until.isoformat())}")
        return " and ".join(f"({c})" for c in clauses)

    def _source_clause(self, pattern: str) -> str:
        likes = [_like(glob) for glob in _source_globs(pattern)]
        if all(like is not None for like in likes):
            return " or ".join(f"source like {_quoted(like or '')}" for like in likes)
        # A character set: the articles matching are found here, then named by id.
        rows = self._query(self.names.files, 'kind == "article"', ["name", "article_id"])
        ids = [
            int(row["article_id"])
            for row in rows
            if any(_glob_matches(glob, row["name"]) for glob in _source_globs(pattern))
        ]
        return _in("article_id", ids) if ids else "id < 0"

    def allows_any(self, filters: Filters) -> bool:
        expression = self._filter(filters)
        return bool(self._query(self.names.passages, expression or "id >= 0", ["id"], limit=1))

    def dense_search(self, vector: np.ndarray, k: int, filters: Filters | None) -> Hits:
        if k <= 0 or not self._has(self.names.passages):
            return no_hits()
        found = self.client.search(
            self.names.passages,
            data=[np.asarray(vector, np.float32).tolist()],
            anns_field="vector",
            limit=k,
            filter=self._filter(filters),
            search_params=self._search_params(k),
            output_fields=[],
        )
        return _hits(found[0], negated=False)

    def lexical_search(self, query: str, k: int, filters: Filters | None) -> Hits:
        text = query_text(query)
        if k <= 0 or not text or not self._has(self.names.passages):
            return no_hits()
        found = self.client.search(
            self.names.passages,
            data=[text],
            anns_field="sparse",
            limit=k,
            filter=self._filter(filters),
            search_params={"metric_type": "BM25"},
            output_fields=[],
        )
        return _hits(found[0], negated=self._lite)

    def hybrid_search(
        self, query: str, vector: np.ndarray, options: SearchOptions, filters: Filters | None
    ) -> Hits:
        text = query_text(query)
        n = options.candidates
        if not text:
            return self.dense_search(vector, n, filters)
        if not self._has(self.names.passages):
            return no_hits()
        if options.fusion == "weighted":  # ENGINE_DIFFERENCES["weighted ranker"]
            return self._weighted(query, vector, options, filters)
        expression = self._filter(filters) or None
        requests = [
            AnnSearchRequest(
                data=[np.asarray(vector, np.float32).tolist()],
                anns_field="vector",
                param=self._search_params(n),
                limit=n,
                expr=expression,
            ),
            AnnSearchRequest(
                data=[text],
                anns_field="sparse",
                param={"metric_type": "BM25"},
                limit=n,
                expr=expression,
            ),
        ]
        found = self.client.hybrid_search(
            self.names.passages, requests, RRFRanker(options.rrf_k), limit=n, output_fields=[]
        )
        return _hits(found[0], negated=False)

    def _weighted(
        self, query: str, vector: np.ndarray, options: SearchOptions, filters: Filters | None
    ) -> Hits:
        """The folder index's weighted fusion: each route's candidates, then every candidate
        of either route scored by both (a dense score from its stored vector, a BM25 score
        from a search among those ids), blended by rag.fusion."""
        n = options.candidates
        dense_ids, dense_scores = self.dense_search(vector, n, filters)
        lexical_ids, lexical_scores = self.lexical_search(query, n, filters)
        ids = np.unique(np.concatenate([dense_ids, lexical_ids]))
        dense = dict(zip(dense_ids.tolist(), dense_scores.tolist(), strict=True))
        lexical = dict(zip(lexical_ids.tolist(), lexical_scores.tolist(), strict=True))
        union = ids.tolist()
        dense |= self._dense_scores(vector, [i for i in union if i not in dense])
        lexical |= self._lexical_scores(query_text(query), [i for i in union if i not in lexical])
        return fused_hits(
            weighted(
                ids,
                np.array([dense.get(i, 0.0) for i in union], dtype=np.float64),
                np.array([lexical.get(i, 0.0) for i in union], dtype=np.float64),
                options.dense_weight,
            )
        )

    def _dense_scores(self, vector: np.ndarray, ids: list[int]) -> dict[int, float]:
        if not ids:
            return {}
        query = np.asarray(vector, np.float32)
        rows = self._query(self.names.passages, _in("id", ids), ["vector"])
        return {
            int(row["id"]): float(np.dot(np.asarray(row["vector"], np.float32), query))
            for row in rows
        }

    def _lexical_scores(self, text: str, ids: list[int]) -> dict[int, float]:
        """BM25 scores of ``ids`` (those that share no term with the query score 0)."""
        if not ids:
            return {}
        found = self.client.search(
            self.names.passages,
            data=[text],
            anns_field="sparse",
            limit=len(ids),
            filter=_in("id", ids),
            search_params={"metric_type": "BM25"},
            output_fields=[],
        )
        found_ids, scores = _hits(found[0], negated=self._lite)
        return dict(zip(found_ids.tolist(), scores.tolist(), strict=True))

    def passage_paragraphs(self, passage_ids: list[int]) -> dict[int, int]:
        if not passage_ids or not self._has(self.names.passages):
            return {}
        result: dict[int, int] = {}
        if len(self._first_parts) > FIRST_PARTS_KEPT:  # a long-running server's searches
            self._first_parts.clear()
        for start in range(0, len(passage_ids), IN_LIST):
            rows = self.client.get(
                self.names.passages,
                ids=passage_ids[start : start + IN_LIST],
                output_fields=["paragraph_id", "article_id", "paragraph"],
            )
            for row in rows:
                result[int(row["id"])] = paragraph_id = int(row["paragraph_id"])
                self._first_parts[paragraph_id] = _id(
                    "passage", int(row["article_id"]), int(row["paragraph"]), 0
                )
        return result

    def paragraphs(self, paragraph_ids: list[int]) -> dict[int, Passage]:
        """The paragraphs' first passages (which hold the paragraph's text): by primary key
        where :meth:`passage_paragraphs` gave their keys, which is cheap; by a filter, which
        scans the collection on Lite, for the others."""
        result: dict[int, Passage] = {}
        keys = [self._first_parts[p] for p in paragraph_ids if p in self._first_parts]
        for ids in _int_slices(keys):
            for row in self.client.get(self.names.passages, ids=ids, output_fields=_PASSAGE_FIELDS):
                result[int(row["paragraph_id"])] = _passage(row)
        rest = [p for p in paragraph_ids if p not in result]
        for ids in _int_slices(rest):
            expression = f"part == 0 and {_in('paragraph_id', ids)}"
            for row in self._query(self.names.passages, expression, _PASSAGE_FIELDS):
                result[int(row["paragraph_id"])] = _passage(row)
        return result

    # --- reading ------------------------------------------------------------------------------
    def article(self, article_id: int) -> Article | None:
        fields = [*_PASSAGE_FIELDS, "path", "format", "start", "end"]
        expression = f"part == 0 and article_id == {int(article_id)}"
        rows = sorted(
            self._query(self.names.passages, expression, fields), key=lambda r: r["paragraph"]
        )
        if not rows:
            return None
        first = rows[0]
        return Article(
            id=int(article_id),
            source=first["source"],
            path=first["path"],
            title=first["title"],
            paragraphs=[
                Paragraph(int(r["paragraph"]), r["text"], int(r["start"]), int(r["end"]))
                for r in rows
            ],
            author=first["author"] or None,
            publisher=first["publisher"] or None,
            published=first["published"] or None,
            url=first["url"] or None,
            format=first["format"],
        )

    def stats(self) -> Stats:
        passages = self._count(self.names.passages)
        return Stats(
            articles=self._count(self.names.files, 'kind == "article"'),
            paragraphs=self._count(self.names.passages, "part == 0"),
            passages=passages,
            embeddings=passages,  # each passage row holds its own vector
            files=self._count(self.names.files, 'kind == "file"'),
        )

    def has_passages(self) -> bool:
        return bool(self._query(self.names.passages, "id >= 0", ["id"], limit=1))

    def info(self) -> StoreInfo:
        size = 0
        if is_local(self.uri):
            size = sum(p.stat().st_size for p in Path(self.uri).rglob("*") if p.is_file())
        engine = "Milvus Lite" if self._lite else "Milvus"
        return StoreInfo(
            location=self.location,
            vector_index=f"{engine} {self.index_type} (inner product), collection "
            f"{self.names.passages}",
            lexical_index=f"{engine} BM25 function (standard analyzer over rag's stemmed tokens)",
            size_bytes=size,
        )

    def embedder(self) -> EmbedderRecord | None:
        value = self._meta_get("embedder")
        if value is None:
            return None
        data = json.loads(value)
        return EmbedderRecord(data["name"], int(data["dimension"]), data["fingerprint"])

    def record_embedder(self, info: EmbedderInfo) -> None:
        record = {"name": info.name, "dimension": info.dimension, "fingerprint": info.fingerprint}
        self._meta_put("embedder", json.dumps(record))

    # --- consistency --------------------------------------------------------------------------
    def check(
        self,
        configured: EmbedderInfo | None,
        embedder: Callable[[], Embedder],
        *,
        repair: bool,
        batch_size: int,
        max_passage_tokens: int,
    ) -> CheckReport:
        report = CheckReport(self.location, self._checks(configured))
        if not repair or report.ok:
            return report
        report.before_repair = report.checks
        names = {c.name: c for c in report.checks}
        if not names["embedder"].ok:
            report.repaired.append(
                "nothing: the configured embedder is not the one that built the index; use "
                "the embedder recorded, or ingest into a new collection"
            )
            return report
        report.repaired = self._repair()
        report.checks = self._checks(configured)
        return report

    def _survey(self) -> tuple[dict[int, int], dict[int, set[int]], dict[str, dict[str, Any]]]:
        """Passages per article id, paragraph ids per article id, and the article rows."""
        counts: dict[int, int] = {}
        paragraphs: dict[int, set[int]] = {}
        for row in self._query(self.names.passages, "id >= 0", ["article_id", "paragraph_id"]):
            article = int(row["article_id"])
            counts[article] = counts.get(article, 0) + 1
            paragraphs.setdefault(article, set()).add(int(row["paragraph_id"]))
        fields = ["name", "path", "article_id", "count"]
        articles = {
            row["name"]: row for row in self._query(self.names.files, 'kind == "article"', fields)
        }
        return counts, paragraphs, articles

    def _checks(self, configured: EmbedderInfo | None) -> list[Check]:
        checks = [self._check_collections(), self._check_embedder(configured)]
        counts, _, articles = self._survey()
        expected = {int(row["article_id"]): int(row["count"]) for row in articles.values()}
        short = [a for a, n in expected.items() if counts.get(a, 0) != n]
        orphans = [a for a in counts if a not in expected]
        files = {row["path"] for row in articles.values()}
        recorded = set(self.known_files())
        unrecorded = files - recorded
        problems = [
            text
            for count, text in (
                (len(short), f"{len(short):,} articles without all their passages"),
                (len(orphans), f"{len(orphans):,} articles' passages with no article record"),
                (len(unrecorded), f"{len(unrecorded):,} files with articles but no record"),
            )
            if count
        ]
        total = sum(counts.values())
        if problems:
            checks.append(Check("passages", False, "; ".join(problems)))
        else:
            checks.append(
                Check(
                    "passages",
                    True,
                    f"{total:,} passages in {len(expected):,} articles, each article with "
                    "all its passages",
                )
            )
        stats = self.stats()
        agree = stats.passages == total and stats.articles == len(articles)
        checks.append(
            Check(
                "counts",
                agree,
                f"{stats.passages:,} passages and {stats.articles:,} articles counted, "
                f"{total:,} and {len(articles):,} read"
                + ("" if agree else ": Milvus' counts differ from the rows it returns"),
            )
        )
        return checks

    def _check_collections(self) -> Check:
        if not self._has(self.names.files):
            return Check("collections", False, f"{self.names.files} is missing")
        if not self._has(self.names.passages):
            if self._count(self.names.files, 'kind == "article"'):
                return Check("collections", False, f"{self.names.passages} is missing")
            return Check("collections", True, "no passages yet (empty index)")
        dimension = _vector_dimension(self.client.describe_collection(self.names.passages))
        recorded = self.embedder()
        if recorded is not None and dimension != recorded.dimension:
            return Check(
                "collections",
                False,
                f"the vectors have {dimension} dimensions, the embedder {recorded.dimension}",
            )
        return Check(
            "collections",
            True,
            f"{self.names.passages} and {self.names.files}, {dimension}-dimensional vectors",
        )

    def _check_embedder(self, configured: EmbedderInfo | None) -> Check:
        recorded = self.embedder()
        if recorded is None:
            if self.has_passages():
                return Check("embedder", False, "the index does not record which embedder built it")
            return Check("embedder", True, "no embedder recorded yet (empty index)")
        about = f"{recorded.name} ({recorded.dimension} dimensions, weights {recorded.fingerprint})"
        if configured is None:
            return Check("embedder", True, f"built with {about}")
        if (configured.fingerprint, configured.dimension) != (
            recorded.fingerprint,
            recorded.dimension,
        ):
            return Check(
                "embedder",
                False,
                f"built with {about} but the configured embedder is {configured.name} "
                f"({configured.dimension} dimensions, weights {configured.fingerprint})",
            )
        return Check("embedder", True, about)

    def _repair(self) -> list[str]:
        """Drop passages no article owns; forget the articles missing passages (and their
        files' hashes), so that the next ingest of those files writes them again."""
        done: list[str] = []
        counts, _, articles = self._survey()
        expected = {int(row["article_id"]): row for row in articles.values()}
        orphans = [a for a in counts if a not in expected]
        for part in _int_slices(orphans):
            self._delete_passages(_in("article_id", part))
        if orphans:
            done.append(f"dropped the passages of {len(orphans):,} articles with no record")
        short = [row for a, row in expected.items() if counts.get(a, 0) != int(row["count"])]
        for row in short:
            self._delete_passages(f"article_id == {int(row['article_id'])}")
            self.client.delete(self.names.files, ids=["a:" + row["name"]])
        paths = sorted(
            {row["path"] for row in short}
            | {row["path"] for row in articles.values() if row["path"] not in self.known_files()}
        )
        for path in paths:
            stored = self.get_file(path)
            self.client.upsert(
                self.names.files,
                [
                    self._file_row(
                        "f:" + path,
                        "file",
                        path=path,
                        hash="",  # read again by the next ingest
                        count=stored.size if stored else 0,
                        format=stored.format if stored else "",
                    )
                ],
            )
        if short:
            done.append(
                f"removed {len(short):,} articles missing passages; ingest their files again "
                f"to restore them: {', '.join(paths[:3])}" + (" …" if len(paths) > 3 else "")
            )
        elif paths:
            done.append(f"recorded {len(paths):,} files to be read again by the next ingest")
        self.publish()
        return done


def no_index_message(settings: Settings) -> str:
    where = f"--store milvus --milvus-uri {settings.milvus_uri}"
    if settings.milvus_collection != "rag":
        where += f" --milvus-collection {settings.milvus_collection}"
    return (
        f"There is no index in collection {settings.milvus_collection} at "
        f"{settings.milvus_uri}, so it has no articles yet: make one with "
        f"`rag ingest PATH {where}` (or check the URI and the collection's name)."
    )


def lexical_text(title: str, passage: str) -> str:
    """What BM25 reads of a passage: its article's title and its text, as the folder index
    indexes them, tokenized and stemmed here (ENGINE_DIFFERENCES["analyzer"])."""
    return _cut(" ".join(tokenize([f"{title}. {passage}"])[0]), TEXT_BYTES)


def query_text(query: str) -> str:
    return " ".join(tokenize([query])[0])


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _hits(found: Iterable[Any], *, negated: bool) -> Hits:
    pairs = [(int(hit["id"]), float(hit["distance"])) for hit in found]
    ids = np.array([p for p, _ in pairs], dtype=np.int64)
    scores = np.array([abs(s) if negated else s for _, s in pairs], dtype=np.float32)
    return best_first(ids, scores)


def _passage(row: dict[str, Any]) -> Passage:
    return Passage(
        text=row["text"],
        title=row["title"],
        source=row["source"],
        paragraph=int(row["paragraph"]),
        published=row["published"] or None,
        author=row["author"] or None,
        publisher=row["publisher"] or None,
        url=row["url"] or None,
        paragraph_id=int(row["paragraph_id"]),
        article_id=int(row["article_id"]),
    )


def _slices(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), IN_LIST):
        yield items[start : start + IN_LIST]


def _int_slices(items: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(items), IN_LIST):
        yield items[start : start + IN_LIST]


def _vector_dimension(description: dict[str, Any]) -> int:
    for field in description.get("fields", []):
        if field.get("name") == "vector":
            return int(field.get("params", {}).get("dim", 0))
    return 0


def _uri(uri: str) -> str:
    if not is_local(uri):
        return uri
    path = Path(uri).expanduser()
    if path.suffix != ".db":
        raise RagError(
            f"{uri} is neither a Milvus server (http://host:19530) nor a Milvus Lite file "
            "(whose name ends in .db, as ./milvus.db)."
        )
    return str(path.resolve())


def _connect(uri: str, settings: Settings) -> MilvusClient:
    token = settings.milvus_token.get_secret_value() if settings.milvus_token else ""
    try:
        return MilvusClient(uri=uri, token=token)
    except MilvusException as error:
        if is_local(uri) and "lock" in str(error).lower():
            raise IndexBusy(
                f"The Milvus Lite file {uri} is open in another process ({error}); a Lite "
                "file is one process's: share it through `milvus-lite server --data-dir "
                f"{uri} --port PORT` and --milvus-uri http://127.0.0.1:PORT."
            ) from None
        raise RagError(f"Cannot reach Milvus at {uri}: {error}") from None


__all__ = ["ENGINE_DIFFERENCES", "MilvusStore"]
