"""Exclusive ownership of a shard directory: one opener per path, per machine.

The system this follows opened the same database directory twice from one process and let a
second process hang on (or crash inside) the engine's own lock. Here a shard directory is
claimed before the engine sees it, in two layers:

* a process-wide registry, so one path is opened at most once per process (a second open
  raises :class:`~hive_core.errors.ShardInUse` instead of building a second ``Database``);
* an ``flock`` on ``shard.lock`` inside the directory, holding the owner's PID, so a second
  process fails at once with an error that names the path and the holder. The kernel drops
  the lock when the holder dies, so a crashed agent never leaves a stale claim behind.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

from hive_core.disk_space import disk_full, is_enospc
from hive_core.errors import ShardInUse

LOCK_FILE = "shard.lock"
_PID_READ_DEADLINE = 0.5  # the holder writes its PID right after locking; wait this long for it

_registry: set[str] = set()
_registry_lock = threading.Lock()


def _holder_pid(fd: int) -> str:
    deadline = time.monotonic() + _PID_READ_DEADLINE
    while True:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
        if text or time.monotonic() >= deadline:
            return text or "unknown"
        time.sleep(0.01)


class ShardLock:
    """The claim on one shard directory; ``release`` gives it up (idempotent)."""

    def __init__(self, key: str, fd: int) -> None:
        self.key = key
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, directory: Path) -> ShardLock:
        key = str(directory.resolve())
        with _registry_lock:
            if key in _registry:
                raise ShardInUse(
                    f"shard {directory} is already open in this process (pid {os.getpid()})"
                )
            try:
                fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                             0o600)
            except OSError as exc:
                if is_enospc(exc):
                    raise disk_full(directory) from exc
                raise
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder_pid(fd)
                os.close(fd)
                raise ShardInUse(f"shard {directory} is in use by process {holder}") from None
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
            except OSError as exc:
                os.close(fd)  # the kernel drops the flock with it
                if is_enospc(exc):  # one line naming the disk, not "[Errno 28]"
                    raise disk_full(directory) from exc
                raise
            _registry.add(key)
        return cls(key, fd)

    def release(self) -> None:
        with _registry_lock:
            if self._fd is None:
                return
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
            _registry.discard(self.key)
