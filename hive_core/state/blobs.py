"""Named byte blobs with ETag compare-and-set: the one primitive hive state is built on.

The ring view, agent liveness and broker checkpoints all need the same few operations, and
an Azure Blob container offers exactly these (kombu-style: a tiny channel of primitives,
the semantics live above it):

* ``read`` a blob with its etag (an opaque version token) and its last-modified time;
* ``write`` it, optionally only if its etag is still the one read (``if_match``) or only if
  it does not exist yet (``if_none_match``); a failed condition raises
  :class:`PreconditionFailed`, the caller re-reads and decides again;
* ``delete`` it (optionally ``if_match``), ``list`` blobs by name prefix, ``close``.

As in HTTP (RFC 9110), ``if_match`` on a missing blob fails. Etags change on every write,
even one of the same bytes, so a reader can never mistake a rewrite for "unchanged".

Implementations here: :class:`MemoryBlobs` (unit tests, one process) and :class:`DirBlobs`
(files in a folder; several processes of one machine). :mod:`hive_core.state.azure_blobs`
holds the Azure one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import quote, unquote

from hive_core.atomic import write_private
from hive_core.errors import ConfigError, HiveError

MAX_NAME = 1024  # Azure's limit on blob names, in characters


class PreconditionFailed(HiveError):
    """A conditional write or delete found the blob in another state than the caller expected.

    Deliberately *not* a :class:`~hive_core.errors.TransportError`: the request travelled and
    was answered; another writer won a race. Callers that treat TransportError as "storage
    unreachable, back off" must not mistake a lost compare-and-set for an outage, and callers
    of a CAS loop catch exactly this class to re-read and retry.
    """


@dataclass(frozen=True, slots=True)
class Blob:
    data: bytes
    etag: str
    last_modified: float  # epoch seconds, by the store's clock (the server's, for Azure)


@dataclass(frozen=True, slots=True)
class BlobInfo:
    name: str
    etag: str
    last_modified: float


@runtime_checkable
class Blobs(Protocol):
    def read(self, name: str) -> Blob | None:
        """The blob, or None if there is none of that name."""
        ...

    def write(self, name: str, data: bytes, *, if_match: str | None = None,
              if_none_match: bool = False) -> str:
        """Store ``data``; returns the new etag. PreconditionFailed if a condition fails."""
        ...

    def delete(self, name: str, *, if_match: str | None = None) -> bool:
        """Remove the blob: True if removed, False if there was none (unconditional only)."""
        ...

    def list(self, prefix: str) -> list[BlobInfo]:
        """Every blob whose name starts with ``prefix``, sorted by name."""
        ...

    def close(self) -> None: ...


def check_name(name: str) -> str:
    """``name`` if it is a valid blob name: "/"-separated non-empty segments, none "." or "..",
    no control characters, at most 1024 characters (ValueError otherwise: a caller's bug).

    The rules are the intersection of what Azure accepts and what maps safely to a file.
    """
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME:
        raise ValueError(f"invalid blob name {name!r}: 1-{MAX_NAME} characters")
    if any(ord(c) < 32 or ord(c) == 127 or c == "\\" for c in name):
        raise ValueError(f"invalid blob name {name!r}: control character or backslash")
    if any(seg in ("", ".", "..") for seg in name.split("/")):
        raise ValueError(f"invalid blob name {name!r}: empty, '.' or '..' segment")
    return name


def escape_segment(text: str) -> str:
    """``text`` as one blob-name segment: every "/", "%", "." and unsafe character escaped,
    so any string (an agent, an event hub, a consumer group) maps to one segment, reversibly
    (:func:`unescape_segment`). Empty text is refused (ValueError)."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"cannot name a blob after {text!r}: need a non-empty string")
    return quote(text, safe="").replace(".", "%2E")


def unescape_segment(segment: str) -> str:
    return unquote(segment)


def check_conditions(if_match: str | None, if_none_match: bool) -> None:
    if if_match is not None and if_none_match:
        raise ValueError("if_match and if_none_match exclude each other")


def _require(name: str, current: str | None, if_match: str | None, if_none_match: bool) -> None:
    """Raise PreconditionFailed unless the blob's current etag satisfies the condition."""
    if if_none_match and current is not None:
        raise PreconditionFailed(f"blob {name!r} exists already")
    if if_match is not None and current != if_match:
        state = "does not exist" if current is None else "was changed by another writer"
        raise PreconditionFailed(f"blob {name!r} {state}")


def _etag(data: bytes, counter: int) -> str:
    """A content hash (a human can tell equal contents) plus a write counter (every write
    differs, even of equal contents)."""
    return f'"{hashlib.sha256(data).hexdigest()[:16]}-{counter}"'


class MemoryBlobs:
    """Blobs in a dict under a lock: for tests and single-process hives."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._blobs: dict[str, Blob] = {}
        self._counter = itertools.count(1)

    def read(self, name: str) -> Blob | None:
        check_name(name)
        with self._lock:
            return self._blobs.get(name)

    def write(self, name: str, data: bytes, *, if_match: str | None = None,
              if_none_match: bool = False) -> str:
        check_name(name)
        check_conditions(if_match, if_none_match)
        data = bytes(data)
        with self._lock:
            current = self._blobs.get(name)
            _require(name, current.etag if current else None, if_match, if_none_match)
            etag = _etag(data, next(self._counter))
            self._blobs[name] = Blob(data, etag, time.time())
            return etag

    def delete(self, name: str, *, if_match: str | None = None) -> bool:
        check_name(name)
        with self._lock:
            current = self._blobs.get(name)
            _require(name, current.etag if current else None, if_match, False)
            return self._blobs.pop(name, None) is not None

    def list(self, prefix: str) -> list[BlobInfo]:
        with self._lock:
            return [BlobInfo(n, b.etag, b.last_modified)
                    for n, b in sorted(self._blobs.items()) if n.startswith(prefix)]

    def close(self) -> None:
        """Nothing held; the blobs live as long as this object."""


_MAGIC = b"hive-blob/1 "
_SUFFIX = ".blob"
_LOCK = ".lock"


class DirBlobs:
    """Blobs as files in one folder, shared by the processes of one machine.

    Each blob is one file (``<escaped name>.blob``: a header line with the etag, then the
    bytes), replaced by an atomic rename of a complete temporary file, so readers need no
    lock and never see half a blob. Writers and deleters serialise on an ``flock`` of
    ``.lock``, which makes a conditional write's check-then-replace atomic across processes;
    the lock file also keeps the folder's write counter, so an etag is never reused, not even
    after a delete and a rewrite of the same bytes. Folder 0700, files 0600: blobs name the
    hive's agents and hold its checkpoints.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.lock_path = self.folder / _LOCK

    # -- files ----------------------------------------------------------------------------------
    def _path(self, name: str) -> Path:
        file = quote(check_name(name), safe="") + _SUFFIX
        if len(file.encode()) > 255:
            raise ValueError(f"blob name {name!r} is too long for a file name once escaped")
        return self.folder / file

    def _make_folder(self) -> None:
        try:
            self.folder.mkdir(parents=True, mode=0o700)
        except FileExistsError:
            return
        os.chmod(self.folder, 0o700)  # mkdir's mode is filtered by the umask

    @contextlib.contextmanager
    def _locked(self) -> Iterator[int]:
        """The folder's write lock; yields its fd (which holds the write counter)."""
        self._make_folder()
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd
        finally:
            os.close(fd)  # drops the lock

    @staticmethod
    def _next_count(lock_fd: int) -> int:
        raw = os.pread(lock_fd, 32, 0).strip()
        count = int(raw) + 1 if raw else 1
        os.pwrite(lock_fd, f"{count:020d}".encode(), 0)
        return count

    def _open(self, path: Path, whole: bool) -> tuple[bytes, float] | None:
        """The file's bytes (or only its header line) and mtime; None if it is not there."""
        try:
            with open(path, "rb") as fh:
                mtime = os.fstat(fh.fileno()).st_mtime
                raw = fh.read() if whole else fh.readline(512)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigError(f"cannot read hive state {path}: {exc}") from exc
        return raw, mtime

    @staticmethod
    def _split(raw: bytes, path: Path) -> tuple[str, bytes]:
        head, sep, data = raw.partition(b"\n")
        if not sep or not head.startswith(_MAGIC):
            raise ConfigError(f"hive state {path} is not a state blob (no etag header); "
                              "remove it if it was put there by hand")
        return head[len(_MAGIC):].decode("ascii", "replace"), data

    def _current_etag(self, path: Path) -> str | None:
        found = self._open(path, whole=False)
        return None if found is None else self._split(found[0], path)[0]

    # -- Blobs ----------------------------------------------------------------------------------
    def read(self, name: str) -> Blob | None:
        path = self._path(name)
        found = self._open(path, whole=True)
        if found is None:
            return None
        etag, data = self._split(found[0], path)
        return Blob(data, etag, found[1])

    def write(self, name: str, data: bytes, *, if_match: str | None = None,
              if_none_match: bool = False) -> str:
        check_conditions(if_match, if_none_match)
        path = self._path(name)
        data = bytes(data)
        with self._locked() as lock_fd:
            _require(name, self._current_etag(path), if_match, if_none_match)
            etag = _etag(data, self._next_count(lock_fd))
            write_private(path, _MAGIC + etag.encode() + b"\n" + data)
            return etag

    def delete(self, name: str, *, if_match: str | None = None) -> bool:
        path = self._path(name)
        if not self.folder.exists():
            _require(name, None, if_match, False)
            return False
        with self._locked():
            current = self._current_etag(path)
            _require(name, current, if_match, False)
            if current is None:
                return False
            path.unlink()
            return True

    def list(self, prefix: str) -> list[BlobInfo]:
        try:
            entries = sorted(e.name for e in os.scandir(self.folder)
                             if e.name.endswith(_SUFFIX) and not e.name.startswith(".tmp."))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ConfigError(f"cannot list hive state in {self.folder}: {exc}") from exc
        out: list[BlobInfo] = []
        for file in entries:
            name = unquote(file[: -len(_SUFFIX)])
            if not name.startswith(prefix):
                continue
            path = self.folder / file
            found = self._open(path, whole=False)
            if found is not None:  # deleted since the scan: not listed
                out.append(BlobInfo(name, self._split(found[0], path)[0], found[1]))
        return sorted(out, key=lambda info: info.name)

    def close(self) -> None:
        """Nothing held between calls."""
