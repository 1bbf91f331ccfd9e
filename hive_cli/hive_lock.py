"""One lifecycle command per hive at a time: create, start, stop, restart, delete, add-agent
and remove-agent hold the hive's lock while they change its processes or its config.

Without it, two overlapping ``start`` runs each saw an agent as stopped, each spawned one,
and the loser's PID record overwrote the winner's: agents ran that no command knew about.
With the lock the second command waits (saying so once, on stderr), then finds the hive as
the first one left it: ``start`` after ``start`` reports "already running".

The lock is an ``flock`` on ``$AMPLIHACK_HOME/locks/NAME.lock``: outside the hive's folder,
so ``delete`` can remove that folder while holding it, and released by the kernel when the
holder dies, so a killed command never leaves a stale lock. The file holds the holder's PID
and command, for the line that says who we are waiting for. Every wait has a deadline
(``AMPLIHACK_LOCK_TIMEOUT``, default 300 s); the keeper only ever tries without waiting.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from hive_cli.errors import CliFailure
from hive_core.hive_config import amplihack_home, validate_name

DEFAULT_WAIT_S = 300.0
POLL_S = 0.05


class HiveBusy(CliFailure):
    """Another command held the hive's lock for longer than we were willing to wait."""


def lock_path(hive: str) -> Path:
    return amplihack_home() / "locks" / f"{validate_name('hive', hive)}.lock"


def wait_limit() -> float:
    raw = os.environ.get("AMPLIHACK_LOCK_TIMEOUT")
    if not raw:
        return DEFAULT_WAIT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise CliFailure(f"AMPLIHACK_LOCK_TIMEOUT={raw!r} is not a number of seconds >= 0; "
                         "unset it or set e.g. 60")
    return value


def holder(hive: str) -> str:
    """Who holds (or last held) the lock, as its file says: "pid 123 (start)"."""
    with contextlib.suppress(OSError):
        text = lock_path(hive).read_text().strip()
        if text:
            pid, _, action = text.partition(" ")
            return f"pid {pid} ({action})" if action else f"pid {pid}"
    return "another command"


def _open(hive: str) -> int:
    path = lock_path(hive)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


def _claim(fd: int, action: str) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {action}\n".encode(), 0)


def flock_within(fd: int, limit: float, busy: Callable[[], HiveBusy],
                 waiting: Callable[[], None] | None = None) -> None:
    """Take the exclusive flock on ``fd``, trying every ``POLL_S`` for up to ``limit``
    seconds, then raise ``busy()`` (built then, so it names the holder of that moment);
    ``waiting`` is called once, at the first try that found the lock held."""
    deadline = time.monotonic() + limit
    told = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise busy() from None
            if not told and waiting is not None:
                waiting()
                told = True
            time.sleep(POLL_S)


@contextlib.contextmanager
def hold(hive: str, action: str, wait: float | None = None,
         on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold ``hive``'s lifecycle lock for the ``with`` body, waiting up to ``wait`` seconds
    (default :func:`wait_limit`); ``on_wait`` hears once who we wait for."""
    limit = wait_limit() if wait is None else wait
    fd = _open(hive)
    try:
        flock_within(
            fd, limit,
            lambda: HiveBusy(f"hive {hive!r} is busy: {holder(hive)} has held its lock for "
                             f"more than {limit:g}s; wait for it to finish (or set "
                             "AMPLIHACK_LOCK_TIMEOUT)"),
            None if on_wait is None else
            lambda: on_wait(f"waiting for {holder(hive)} to finish with hive {hive}"))
        _claim(fd, action)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def attempt(hive: str, action: str) -> Iterator[bool]:
    """Hold the lock if it is free right now (yields True), else yield False at once: the
    keeper skips a round rather than race a command that is starting or stopping agents."""
    fd = _open(hive)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        _claim(fd, action)
        try:
            yield True
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
