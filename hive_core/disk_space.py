"""Free disk space, checked before writing: a full disk refuses writes, it does not crash.

Why a check *before* the write: Kuzu does not report a full disk, it aborts the process
natively (``munmap_chunk(): invalid pointer``), so a hive whose disk filled lost every agent
at once with no line naming the disk. A shard therefore refuses a write while its disk has
less than a reserve free (``AMPLIHACK_DISK_RESERVE_BYTES``, default 64 MB: room for the
engine's write-ahead log and checkpoint), serves reads as before, and takes writes again as
soon as space is back. The project's own file writes (:mod:`hive_core.atomic`) also turn an
``OSError(ENOSPC)`` into the same :class:`~hive_core.errors.DiskFull`.

The error's text is what a user reads, in the agent's log and on the CLI's one line::

    disk full at /data/shards/agent_1: 3 MB free; free space and re-run
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from pathlib import Path

from hive_core.errors import DiskFull

log = logging.getLogger("hive_core.disk")

MB = 1024 * 1024
DISK_FULL = "disk full at "  # how every such message starts (found again in relayed errors)


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer can still use on ``path``'s file system."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def disk_full(path: Path, free: int | None = None) -> DiskFull:
    """The error for ``path`` (free space measured now unless given)."""
    if free is None:
        try:
            free = free_bytes(path)
        except OSError:
            free = 0
    return DiskFull(f"{DISK_FULL}{path}: {free // MB} MB free; free space and re-run",
                    str(path), free)


def is_enospc(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


class DiskGuard:
    """Refuses writes under ``path`` while its disk has less than ``reserve`` bytes free.

    :meth:`check` costs one ``statvfs`` (~1 us). The change to full, and back, is logged
    once each (one ERROR line naming the path and the free space), not on every refused
    write.
    """

    def __init__(self, path: Path, reserve: int) -> None:
        if reserve < 0:
            raise ValueError(f"disk reserve must be >= 0 bytes, not {reserve}")
        self.path = path
        self.reserve = reserve
        self.full = False
        self.refused = 0  # writes refused so far
        self._lock = threading.Lock()

    def check(self) -> None:
        """Raise :class:`DiskFull` if a write here now would cut into the reserve."""
        free = free_bytes(self.path)
        if free >= self.reserve:
            if self.full:
                self._set(False, free)
            return
        self._set(True, free)
        raise disk_full(self.path, free)

    def failed(self, exc: BaseException) -> DiskFull:
        """A write met ENOSPC anyway (another writer filled the disk): mark full, report."""
        try:
            free = free_bytes(self.path)
        except OSError:
            free = 0
        self._set(True, free)
        err = disk_full(self.path, free)
        err.__cause__ = exc
        return err

    def _set(self, full: bool, free: int) -> None:
        with self._lock:
            changed = full != self.full
            self.full = full
            if full:
                self.refused += 1
        if not changed:
            return
        if full:
            log.error("disk full at %s: %d MB free (reserve %d MB); refusing writes, still "
                      "serving reads; free space and they resume", self.path, free // MB,
                      self.reserve // MB)
        else:
            log.warning("disk space at %s is back (%d MB free); accepting writes again",
                        self.path, free // MB)
