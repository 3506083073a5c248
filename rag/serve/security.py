"""Who may do what over HTTP, and which files an ingest over HTTP may read.

Writes (ingest, delete) need ``Authorization: Bearer <RAG_API_TOKEN>``; with no token
configured they are disabled, never open. Reads accept the token and need it with the
setting ``token_for_reads``. Paths given to an ingest must lie inside the ingest root
once every link is followed, so a client cannot have the server read ``/etc`` or
``~/.ssh`` into an index and then search it.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path, PurePosixPath, PureWindowsPath

from fastapi import HTTPException
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import SecretStr

from rag.errors import PathOutsideRoot, RagError

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


class Access:
    """The token rules of one server."""

    def __init__(self, token: SecretStr | None, token_for_reads: bool) -> None:
        self._token = token.get_secret_value() if token is not None else None
        if token_for_reads and not self._token:
            raise RagError(
                "token_for_reads is set but no api_token is: set RAG_API_TOKEN, or the "
                "read endpoints could never be used."
            )
        self.token_for_reads = token_for_reads

    @property
    def writes_enabled(self) -> bool:
        return bool(self._token)

    def _matches(self, credentials: HTTPAuthorizationCredentials) -> bool:
        assert self._token is not None
        # Compared in constant time: the time a wrong guess takes says nothing of the token.
        return secrets.compare_digest(credentials.credentials.encode(), self._token.encode())

    def check_read(self, credentials: HTTPAuthorizationCredentials | None) -> None:
        """A read: a token given must be right; none given is refused with token_for_reads."""
        if credentials is None:
            if self.token_for_reads:
                raise HTTPException(401, "This server needs its API token.", _CHALLENGE)
            return
        if not self._token or not self._matches(credentials):
            raise HTTPException(401, "The API token is wrong.", _CHALLENGE)

    def check_write(self, credentials: HTTPAuthorizationCredentials | None) -> None:
        """A write: refused (403) when no token is configured, else the token must be right."""
        if not self._token:
            raise HTTPException(
                403,
                "Writes are disabled: this server has no API token. Start it with "
                "RAG_API_TOKEN set to allow ingest and delete with that token.",
            )
        if credentials is None:
            raise HTTPException(401, "Writes need the API token.", _CHALLENGE)
        if not self._matches(credentials):
            raise HTTPException(401, "The API token is wrong.", _CHALLENGE)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def inside_root(given: str, root: Path) -> Path:
    """The file or folder ``given`` names (relative to ``root``), resolved with links followed.

    :class:`PathOutsideRoot` if it, or any link in a folder it names, leads out of ``root``:
    ``..`` that climbs out, an absolute path elsewhere, a link to elsewhere.
    """
    top = root.resolve()
    if "\x00" in given:
        raise PathOutsideRoot(f"{given!r} is not a path.")
    try:
        named = Path(given).expanduser()
    except RuntimeError:  # "~someone" for a user this machine does not have
        raise PathOutsideRoot(f"{given!r} names the home of an unknown user.") from None
    target = (top / named).resolve()
    if not target.is_relative_to(top):
        raise PathOutsideRoot(
            f"{given} lies outside the ingest root {top} (links followed): only files "
            "under it may be ingested over HTTP (setting ingest_root)."
        )
    if target.is_dir():
        for folder, folders, files in os.walk(target):
            for name in [*folders, *files]:
                entry = Path(folder) / name
                if entry.is_symlink() and not entry.resolve().is_relative_to(top):
                    shown = entry.relative_to(top)
                    raise PathOutsideRoot(
                        f"{given} holds {shown}, a link that leads outside the ingest root "
                        f"{top}: only files under it may be ingested over HTTP."
                    )
    return target


def upload_name(filename: str | None) -> str:
    """The last part of an uploaded file's name: never a path, from any system's client."""
    name = PureWindowsPath(PurePosixPath(filename or "").name).name.strip()
    if not name or name in (".", "..") or name.startswith(".") or "\x00" in name:
        raise RagError(f"{filename!r} is not a file name an upload can be saved under.")
    return name
