"""Read article files into :class:`~rag.types.Document` objects.

One parser per format, each in its own module, chosen by file extension and,
for ``.txt``, by content (scraped articles with ``Author:``/``Body:`` headers
versus plain headline-and-paragraphs text)::

    skipped, failed = [], []             # FileFailure lists: what the walk left out
    for path in iter_files(["corpus/"], skipped=skipped, failed=failed):
        try:
            documents, failures = read_file(path)
        except UnsupportedFile as why:   # skip it, tell the user str(why)
            ...
        except ValueError as why:        # the file could not be read at all
            ...

A messy folder must never stop an ingest: every file that is not read gets a
reason a user can act on (``empty file``, ``binary content (a PNG image) in a
'.txt' file``, ``symbolic link loop``, ``cannot read folder: Permission denied``).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from rag.errors import UnreadableFile, UnsupportedFile
from rag.parsers import html, jsonl, markdown, scraped, text
from rag.parsers.common import decode_bytes, path_text
from rag.types import Document, FileFailure

__all__ = [
    "NOT_A_REGULAR_FILE",
    "UnreadableFile",
    "UnsupportedFile",
    "check_supported",
    "iter_files",
    "os_error_reason",
    "read_file",
    "supported_suffixes",
]


_SUFFIXES: frozenset[str] = (
    scraped.SUFFIXES | text.SUFFIXES | markdown.SUFFIXES | html.SUFFIXES | jsonl.SUFFIXES
)
# The first block tells text from an image, archive or other binary under a text name.
_SNIFF_BYTES = 8192
# Signatures of the binaries most often found renamed to .txt, so the reason names them.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive, or a .docx/.epub"),
    (b"\x1f\x8b", "gzip-compressed data"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"\x7fELF", "a program"),
)
# Control bytes that text never holds (tab, line breaks, form feed, ESC and the DOS
# end-of-file mark are allowed). They are a tenth of random bytes, so compressed or
# encrypted data without a NUL byte in its first block is caught as well.
_CONTROL_BYTES = bytes([*range(0, 9), *range(14, 26), *range(28, 32), 127])
_MAX_CONTROL_SHARE = 0.05
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
# Reading a pipe blocks until someone writes to it, and a device may never end.
NOT_A_REGULAR_FILE = "not a regular file (a pipe, socket or device)"


def supported_suffixes() -> set[str]:
    """File extensions (lower case, with the dot) that :func:`read_file` can read."""
    return set(_SUFFIXES)


def check_supported(path: Path) -> None:
    """Raise :class:`UnsupportedFile` if no parser reads files named like ``path``.

    Decided by the name alone, so a caller can skip a 4 GB video without reading it.
    """
    if path.suffix.lower() not in _SUFFIXES:
        kind = f"'{path_text(path.suffix)}'" if path.suffix else "(no extension)"
        raise UnsupportedFile(f"unsupported file type {kind}")


def os_error_reason(path: Path, error: OSError) -> str:
    """A short reason for ``error`` met on ``path``, naming link trouble plainly.

    A broken or looping symbolic link fails like a missing file ("No such file or
    directory", "Too many levels of symbolic links"); saying which one tells the
    user what to fix.
    """
    if error.errno == errno.ELOOP:
        return "symbolic link loop"
    if error.errno == errno.ENOENT:
        if path.is_symlink():
            return "broken symbolic link (its target does not exist)"
        return "no such file or folder"
    return error.strerror or str(error)


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def iter_files(
    paths: Iterable[str | Path],
    *,
    skipped: list[FileFailure] | None = None,
    failed: list[FileFailure] | None = None,
) -> Iterator[Path]:
    """Yield the files to read: files as given, folders recursively.

    Folder contents come in sorted order (so ingest order, and thus any output, is
    reproducible), with hidden files and folders (names starting with ``.``)
    skipped. A file reached twice (given twice, or also inside a given folder) is
    yielded once. If any given path cannot be found (missing, or a broken or
    looping link), the :class:`OSError` of ``stat`` (:class:`FileNotFoundError` for
    a missing one) is raised before any file is yielded, so a typo does not leave an
    ingest half done.

    Inside folders, links to files are followed but links to folders are not, so a
    link cycle cannot make the walk endless (give a linked folder itself to read
    it). What a walk leaves out is appended, when the lists are given, to
    ``skipped`` (by design: links to folders; pipes, sockets and devices, which
    would block a read) or ``failed`` (folders that cannot be listed, broken or
    looping links), each with its reason. Hidden files are left out silently.
    """
    given_paths = [Path(p) for p in paths]
    for path in given_paths:
        os.stat(path)
    seen: set[Path] = set()
    for path in given_paths:
        found = _walk(path, skipped, failed) if path.is_dir() else [path]
        for file in found:
            key = file.resolve()
            if key not in seen:
                seen.add(key)
                yield file


def _walk(
    folder: Path, skipped: list[FileFailure] | None, failed: list[FileFailure] | None
) -> list[Path]:
    """The non-hidden files under ``folder``, sorted by their path components."""
    files: list[Path] = []
    left_out: list[tuple[Path, str, bool]] = []  # (path, reason, failed rather than skipped)

    def unlistable(error: OSError) -> None:
        reason = f"cannot read folder: {error.strerror or error}"
        left_out.append((Path(error.filename or folder), reason, True))

    # os.walk does not follow links to folders (followlinks=False), so cycles end here.
    for root, dirs, names in os.walk(folder, onerror=unlistable):
        base = Path(root)
        kept = []
        for name in dirs:
            if _is_hidden(name):
                continue  # pruning in place keeps os.walk out of .git, .venv and the like
            if (base / name).is_symlink():
                reason = "link to a folder: not followed (give the folder itself to read it)"
                left_out.append((base / name, reason, False))
                continue
            kept.append(name)
        dirs[:] = kept
        for name in names:
            if _is_hidden(name):
                continue
            path = base / name
            try:
                mode = path.stat().st_mode  # follows a link to its file
            except OSError as error:  # broken or looping link, or the file just vanished
                left_out.append((path, os_error_reason(path, error), True))
                continue
            if stat.S_ISREG(mode):
                files.append(path)
            else:
                left_out.append((path, NOT_A_REGULAR_FILE, False))
    for path, reason, is_failure in sorted(left_out, key=lambda item: item[0].parts):
        target = failed if is_failure else skipped
        if target is not None:
            target.append(FileFailure(path_text(path), reason))
    return sorted(files, key=lambda f: f.parts)


def _binary_kind(data: bytes) -> str | None:
    """What binary ``data`` looks like ("a PNG image", or "" when unknown); None for text."""
    head = data[:_SNIFF_BYTES]
    for signature, kind in _SIGNATURES:
        if head.startswith(signature):
            return kind
    if head.startswith(_UTF16_BOMS):
        return None  # UTF-16 text is full of NUL bytes
    if b"\x00" in head:
        return ""
    controls = len(head) - len(head.translate(None, _CONTROL_BYTES))
    return "" if controls > _MAX_CONTROL_SHARE * len(head) else None


def read_file(path: Path, data: bytes | None = None) -> tuple[list[Document], list[FileFailure]]:
    """Read one file into documents, plus per-article failures (JSONL lines only).

    ``data`` is the file's content when the caller has read it already (to hash
    it), so that a file is read once. Raises :class:`UnsupportedFile` for a kind no
    parser reads and :class:`ValueError` (:class:`UnreadableFile` for I/O errors)
    with a clear reason when the file as a whole can't be read: ``empty file``,
    ``binary content (a PNG image) in a '.txt' file``, or the parser's own reason.
    """
    path = Path(path)
    check_supported(path)
    if data is None:
        try:
            data = path.read_bytes()
        except OSError as error:
            raise UnreadableFile(f"cannot read file: {os_error_reason(path, error)}") from error
    if not data or data.isspace():  # isspace, not strip: no copy of a large file
        raise ValueError("empty file")
    kind = _binary_kind(data)
    if kind is not None:
        what = f"binary content ({kind})" if kind else "binary content"
        raise ValueError(f"{what} in a '{path_text(path.suffix)}' file, not text")

    suffix = path.suffix.lower()
    if suffix in jsonl.SUFFIXES:
        return jsonl.parse(path, decode_bytes(data))
    if suffix in html.SUFFIXES:
        return [html.parse(path, html.decode(data))], []
    content = decode_bytes(data)
    if suffix in markdown.SUFFIXES:
        return [markdown.parse(path, content)], []
    if scraped.detect(content):
        return [scraped.parse(path, content)], []
    return [text.parse(path, content)], []
