"""The SQLite database that is the source of truth of the folder index (``rag.stores.folder``).

It holds the articles with their metadata and content hash, their paragraphs
(text, number, character offsets), the passages each paragraph is embedded as,
and the embeddings themselves, keyed by the hash of the passage text so that a
text seen twice (the BBC corpus repeats whole articles) is embedded once. The
FAISS and BM25 files beside it are derived from it and can always be rebuilt.

Every change happens inside a transaction, so a crash leaves the database as
it was before the change or after it, never in between.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from rag.errors import IndexFormatError
from rag.stores.base import Stats, StoredFile, text_hash
from rag.types import Article, Document, Paragraph, Passage

SCHEMA_VERSION = 1
# A writer holds SQLite's lock only while it commits a group (well under a second);
# readers and a waiting writer retry for this long before reporting "locked".
BUSY_TIMEOUT_S = 60.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    hash TEXT NOT NULL,
    size INTEGER NOT NULL,
    format TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS articles (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL UNIQUE,
    path TEXT NOT NULL,
    title TEXT NOT NULL,
    author TEXT,
    publisher TEXT,
    published TEXT,
    url TEXT,
    format TEXT NOT NULL,
    content_hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS articles_path ON articles(path);
CREATE TABLE IF NOT EXISTS paragraphs (
    id INTEGER PRIMARY KEY,
    article_id INTEGER NOT NULL REFERENCES articles(id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    text TEXT NOT NULL,
    start INTEGER NOT NULL,
    end INTEGER NOT NULL,
    UNIQUE (article_id, number)
);
CREATE TABLE IF NOT EXISTS passages (
    id INTEGER PRIMARY KEY,
    paragraph_id INTEGER NOT NULL REFERENCES paragraphs(id) ON DELETE CASCADE,
    part INTEGER NOT NULL,
    text TEXT NOT NULL,
    text_hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS passages_paragraph ON passages(paragraph_id);
CREATE INDEX IF NOT EXISTS passages_hash ON passages(text_hash);
CREATE TABLE IF NOT EXISTS embeddings (text_hash TEXT PRIMARY KEY, vector BLOB NOT NULL);
"""


def _article_conditions(
    source: str | None, since: str | None, until: str | None
) -> tuple[str, list[str]]:
    """The SQL condition on an article (alias ``a``) that the search filters state."""
    clauses, params = [], []
    if source:
        clauses.append("(a.source GLOB ? OR a.source GLOB ?)")
        params += [source, "*/" + source]
    if since:
        clauses.append("a.published IS NOT NULL AND substr(a.published, 1, 10) >= ?")
        params.append(since[:10])
    if until:
        clauses.append("a.published IS NOT NULL AND substr(a.published, 1, 10) <= ?")
        params.append(until[:10])
    return " AND ".join(clauses) or "1", params


class Store:
    """One SQLite file; all reads and writes of the index's source of truth go through here."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S
        )
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            version = self._schema_version()
        except sqlite3.DatabaseError as error:
            self.db.close()
            raise IndexFormatError(
                f"{path} is not a readable rag index database ({error}). Move it away and "
                "ingest again into a new index folder."
            ) from error
        if version is None:
            # Only a new (or never completed) database is written on open: readers of a
            # busy index must not need the write lock just to look. executescript commits
            # on its own; every statement is IF NOT EXISTS, so a crash half-way through
            # is completed by the next open.
            self.db.executescript(SCHEMA)
            with self.transaction():
                if self.get_meta("schema_version") is None:
                    self.set_meta("schema_version", str(SCHEMA_VERSION))
                    self.set_meta("generation", "0")
        elif version > SCHEMA_VERSION:
            self.db.close()
            raise IndexFormatError(
                f"The index in {path.parent} has format version {version}, written by a newer "
                f"version of rag; this one reads format {SCHEMA_VERSION}. Upgrade rag-news "
                "(pip install -U rag-news), or ingest into a new index folder."
            )

    def _schema_version(self) -> int | None:
        has_meta = self.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
        ).fetchone()
        if not has_meta:
            return None
        value = self.get_meta("schema_version")
        return int(value) if value is not None else None

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All statements inside commit together or not at all."""
        if self.db.in_transaction:  # nested: the outer transaction decides
            yield self.db
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # --- meta --------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute(
            "INSERT INTO meta(key, value) VALUES(?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, value),
        )

    @property
    def generation(self) -> int:
        """Bumped by every change to the passages; derived indexes record the one they match."""
        return int(self.get_meta("generation") or 0)

    def bump_generation(self) -> None:
        self.set_meta("generation", str(self.generation + 1))

    # --- files and articles -------------------------------------------------
    def get_file(self, path: str) -> StoredFile | None:
        row = self.db.execute(
            "SELECT path, hash, size, format FROM files WHERE path=?", (path,)
        ).fetchone()
        return StoredFile(*row) if row else None

    def put_file(self, stored: StoredFile) -> None:
        self.db.execute(
            "INSERT INTO files(path, hash, size, format) VALUES(?, ?, ?, ?) "
            "ON CONFLICT(path) DO UPDATE SET hash=excluded.hash, size=excluded.size, "
            "format=excluded.format",
            (stored.path, stored.hash, stored.size, stored.format),
        )

    def file_hashes(self) -> dict[str, str]:
        """path -> hash of every file recorded."""
        return dict(self.db.execute("SELECT path, hash FROM files").fetchall())

    def article_hashes(self, path: str) -> dict[str, str]:
        """source -> content hash of the articles read from one file."""
        rows = self.db.execute("SELECT source, content_hash FROM articles WHERE path=?", (path,))
        return dict(rows.fetchall())

    def count_articles(self, path: str) -> int:
        row = self.db.execute("SELECT COUNT(*) FROM articles WHERE path=?", (path,)).fetchone()
        return int(row[0])

    def write_article(self, doc: Document, content_hash: str, pieces: list[list[str]]) -> None:
        """Insert or replace an article; ``pieces[i]`` are the passages of paragraph ``i``."""
        self.delete_article(doc.source)
        cur = self.db.execute(
            "INSERT INTO articles(source, path, title, author, publisher, published, url, "
            "format, content_hash) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                doc.source,
                doc.path,
                doc.title,
                doc.author,
                doc.publisher,
                doc.published,
                doc.url,
                doc.format,
                content_hash,
            ),
        )
        article_id = cur.lastrowid
        for paragraph, parts in zip(doc.paragraphs, pieces, strict=True):
            cur = self.db.execute(
                "INSERT INTO paragraphs(article_id, number, text, start, end) "
                "VALUES(?, ?, ?, ?, ?)",
                (article_id, paragraph.number, paragraph.text, paragraph.start, paragraph.end),
            )
            assert cur.lastrowid is not None  # an INSERT just made the row
            self._insert_passages(cur.lastrowid, parts)

    def delete_article(self, source: str) -> bool:
        cur = self.db.execute("DELETE FROM articles WHERE source=?", (source,))
        return cur.rowcount > 0

    def delete_path(self, path: str) -> int:
        """Remove a file's record and all articles read from it; returns the article count."""
        cur = self.db.execute("DELETE FROM articles WHERE path=?", (path,))
        self.db.execute("DELETE FROM files WHERE path=?", (path,))
        return cur.rowcount

    def sources_matching(self, pattern: str) -> list[tuple[str, str]]:
        """(source, path) of articles whose source or file path is, or matches the glob."""
        rows = self.db.execute(
            "SELECT source, path FROM articles WHERE source=? OR path=? "
            "OR source GLOB ? OR path GLOB ? ORDER BY source",
            (pattern, pattern, pattern, pattern),
        )
        return rows.fetchall()

    def drop_unused_embeddings(self) -> int:
        cur = self.db.execute(
            "DELETE FROM embeddings WHERE text_hash NOT IN (SELECT text_hash FROM passages)"
        )
        return cur.rowcount

    # --- embeddings -----------------------------------------------------------
    def missing_embeddings(self, hashes: Iterable[str]) -> set[str]:
        wanted = set(hashes)
        found: set[str] = set()
        ordered = list(wanted)
        for i in range(0, len(ordered), 500):
            chunk = ordered[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                f"SELECT text_hash FROM embeddings WHERE text_hash IN ({marks})", chunk
            )
            found.update(r[0] for r in rows)
        return wanted - found

    def put_embeddings(self, hashes: list[str], vectors: np.ndarray) -> None:
        self.db.executemany(
            "INSERT OR REPLACE INTO embeddings(text_hash, vector) VALUES(?, ?)",
            [(h, v.astype(np.float32).tobytes()) for h, v in zip(hashes, vectors, strict=True)],
        )

    def passage_vectors(self, dimension: int) -> tuple[np.ndarray, np.ndarray]:
        """(passage ids, vectors) of every passage, for building the vector index."""
        rows = self.db.execute(
            "SELECT p.id, e.vector FROM passages p JOIN embeddings e USING (text_hash) "
            "ORDER BY p.id"
        ).fetchall()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vectors = np.zeros((len(rows), dimension), dtype=np.float32)
        for i, (_, blob) in enumerate(rows):
            vectors[i] = np.frombuffer(blob, dtype=np.float32)
        return ids, vectors

    def passage_texts(self) -> tuple[np.ndarray, list[str]]:
        """(passage ids, "title. text") of every passage, for the BM25 index.

        The article's title is indexed with each of its passages: questions often
        name the topic that only the headline states (it raised recall on SQuAD, with and
        without the BBC corpus as distractors).
        """
        rows = self.db.execute(
            "SELECT p.id, a.title, p.text FROM passages p "
            "JOIN paragraphs g ON g.id = p.paragraph_id JOIN articles a ON a.id = g.article_id "
            "ORDER BY p.id"
        ).fetchall()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        return ids, [f"{title}. {text}" for _, title, text in rows]

    def paragraph_texts(self) -> list[tuple[int, str]]:
        return self.db.execute("SELECT id, text FROM paragraphs ORDER BY id").fetchall()

    def replace_all_passages(self, passages: dict[int, list[str]]) -> None:
        """Swap every paragraph's passages (and drop all embeddings) when re-embedding."""
        self.db.execute("DELETE FROM passages")
        self.db.execute("DELETE FROM embeddings")
        for paragraph_id, parts in passages.items():
            self._insert_passages(paragraph_id, parts)

    def _insert_passages(self, paragraph_id: int, parts: list[str]) -> None:
        self.db.executemany(
            "INSERT INTO passages(paragraph_id, part, text, text_hash) VALUES(?, ?, ?, ?)",
            [(paragraph_id, i, part, text_hash(part)) for i, part in enumerate(parts)],
        )

    # --- retrieval support ----------------------------------------------------
    def filtered_passage_ids(
        self,
        source: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> np.ndarray:
        """Ids of passages whose article matches the filters.

        ``source`` is a glob matched against the article's source path; a pattern
        that does not start with ``/`` or ``*`` may match any tail of the path, so
        ``business/*.txt`` finds ``/data/bbc-news/business/001.txt``. ``since`` and
        ``until`` are ISO dates (inclusive) compared with the publication date;
        articles without one are left out when a date filter is given.

        Search reads the filters from memory (``rag.filtering``) while the derived
        indexes match the store, and asks this only when the store has moved on.
        """
        where, params = _article_conditions(source, since, until)
        # CROSS JOIN fixes the order: filter the articles first, then walk down to their
        # passages by index. Left to itself SQLite scanned every passage and looked up its
        # article: over ten times slower at 1M passages.
        rows = self.db.execute(
            "SELECT p.id FROM articles a CROSS JOIN paragraphs g ON g.article_id = a.id "
            f"CROSS JOIN passages p ON p.paragraph_id = g.id WHERE {where}",
            params,
        ).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def filtered_article_ids(
        self,
        source: str | None = None,
        since: str | None = None,
        until: str | None = None,
        among: np.ndarray | None = None,
    ) -> np.ndarray:
        """Ids of the articles that match the filters (as in ``filtered_passage_ids``),
        of all articles or only of the ids ``among``."""
        where, params = _article_conditions(source, since, until)
        if among is None:
            rows = self.db.execute(f"SELECT a.id FROM articles a WHERE {where}", params)
            found = [r[0] for r in rows]
        else:
            found = []
            for i in range(0, len(among), 500):
                chunk = [int(x) for x in among[i : i + 500]]
                marks = ",".join("?" * len(chunk))
                found += [
                    r[0]
                    for r in self.db.execute(
                        f"SELECT a.id FROM articles a WHERE a.id IN ({marks}) AND {where}",
                        [*chunk, *params],
                    )
                ]
        return np.array(found, dtype=np.int64)

    def passage_articles(self) -> tuple[np.ndarray, np.ndarray]:
        """(passage ids, their article ids) of every passage, by passage id."""
        rows = self.db.execute(
            "SELECT p.id, g.article_id FROM passages p "
            "JOIN paragraphs g ON g.id = p.paragraph_id ORDER BY p.id"
        ).fetchall()
        pairs = np.array(rows, dtype=np.int64).reshape(-1, 2)
        return pairs[:, 0].copy(), pairs[:, 1].copy()

    def article_fields(self) -> tuple[np.ndarray, list[str], list[str | None]]:
        """(ids, sources, publication dates) of every article, by id."""
        rows = self.db.execute("SELECT id, source, published FROM articles ORDER BY id").fetchall()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        return ids, [r[1] for r in rows], [r[2] for r in rows]

    def passage_paragraphs(self, passage_ids: list[int]) -> dict[int, int]:
        """passage id -> paragraph id."""
        result: dict[int, int] = {}
        for i in range(0, len(passage_ids), 500):
            chunk = passage_ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                f"SELECT id, paragraph_id FROM passages WHERE id IN ({marks})", chunk
            )
            result.update(rows.fetchall())
        return result

    def paragraphs(self, paragraph_ids: list[int]) -> dict[int, Passage]:
        """paragraph id -> a Passage carrying the paragraph's text and its article's metadata."""
        result: dict[int, Passage] = {}
        for i in range(0, len(paragraph_ids), 500):
            chunk = paragraph_ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                "SELECT g.id, g.text, a.title, a.source, g.number, a.published, a.author, "
                "a.publisher, a.url, a.id FROM paragraphs g JOIN articles a ON a.id = g.article_id "
                f"WHERE g.id IN ({marks})",
                chunk,
            )
            for row in rows:
                result[row[0]] = Passage(
                    text=row[1],
                    title=row[2],
                    source=row[3],
                    paragraph=row[4],
                    published=row[5],
                    author=row[6],
                    publisher=row[7],
                    url=row[8],
                    paragraph_id=row[0],
                    article_id=row[9],
                )
        return result

    def article(self, article_id: int) -> Article | None:
        """The article with that row id and its paragraphs in order; None if there is none."""
        row = self.db.execute(
            "SELECT id, source, path, title, author, publisher, published, url, format "
            "FROM articles WHERE id=?",
            (article_id,),
        ).fetchone()
        if row is None:
            return None
        paragraphs = self.db.execute(
            "SELECT number, text, start, end FROM paragraphs WHERE article_id=? ORDER BY number",
            (article_id,),
        ).fetchall()
        return Article(
            id=row[0],
            source=row[1],
            path=row[2],
            title=row[3],
            paragraphs=[Paragraph(*p) for p in paragraphs],
            author=row[4],
            publisher=row[5],
            published=row[6],
            url=row[7],
            format=row[8],
        )

    # --- consistency (rag check) ------------------------------------------------
    def integrity_problems(self) -> list[str]:
        """SQLite's own integrity and foreign-key checks; empty when the file is sound."""
        try:
            rows = [r[0] for r in self.db.execute("PRAGMA integrity_check").fetchall()]
            problems = [r for r in rows if r != "ok"]
            for table, rowid, parent, _ in self.db.execute("PRAGMA foreign_key_check"):
                problems.append(f"{table} row {rowid} points at a missing {parent} row")
        except sqlite3.DatabaseError as error:  # too damaged to even walk
            return [str(error)]
        return problems

    def passage_ids(self) -> np.ndarray:
        rows = self.db.execute("SELECT id FROM passages ORDER BY id").fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def paragraphs_without_passages(self) -> list[tuple[int, str]]:
        """(id, text) of paragraphs that have no passage, so no vector: invisible to search."""
        return self.db.execute(
            "SELECT g.id, g.text FROM paragraphs g WHERE NOT EXISTS "
            "(SELECT 1 FROM passages p WHERE p.paragraph_id = g.id) ORDER BY g.id"
        ).fetchall()

    def passages_without_embedding(self) -> dict[str, str]:
        """text hash -> text of passages whose embedding is missing."""
        rows = self.db.execute(
            "SELECT p.text_hash, p.text FROM passages p WHERE NOT EXISTS "
            "(SELECT 1 FROM embeddings e WHERE e.text_hash = p.text_hash)"
        )
        return dict(rows.fetchall())

    def count_unused_embeddings(self) -> int:
        row = self.db.execute(
            "SELECT COUNT(*) FROM embeddings "
            "WHERE text_hash NOT IN (SELECT text_hash FROM passages)"
        ).fetchone()
        return int(row[0])

    def add_passages(self, paragraph_id: int, parts: list[str]) -> None:
        """Give a paragraph that has none its passages (repair)."""
        self._insert_passages(paragraph_id, parts)

    def sample_vectors(self, n: int, dimension: int) -> tuple[np.ndarray, np.ndarray]:
        """(passage ids, stored vectors) of up to ``n`` passages picked at random."""
        rows = self.db.execute(
            "SELECT p.id, e.vector FROM passages p JOIN embeddings e USING (text_hash) "
            "ORDER BY random() LIMIT ?",
            (n,),
        ).fetchall()
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        vectors = np.zeros((len(rows), dimension), dtype=np.float32)
        for i, (_, blob) in enumerate(rows):
            vectors[i] = np.frombuffer(blob, dtype=np.float32)
        return ids, vectors

    def has_passages(self) -> bool:
        """Whether anything is searchable: one row looked up, where stats() counts them all
        (on every search)."""
        (found,) = self.db.execute("SELECT EXISTS (SELECT 1 FROM passages)").fetchone()
        return bool(found == 1)

    def stats(self) -> Stats:
        def count(table: str) -> int:
            return int(self.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

        return Stats(
            articles=count("articles"),
            paragraphs=count("paragraphs"),
            passages=count("passages"),
            embeddings=count("embeddings"),
            files=count("files"),
        )
