"""An agent's log file, rotated by size: it must not grow without limit on a long-lived host.

The supervisor starts an agent with its stdout and stderr on ``logs/AGENT.log`` and names
that file in ``AMPLIHACK_LOG_FILE``. Everything the process writes goes through file
descriptors 1 and 2 (logging, a native library's messages, a crash's traceback), so rotation
happens there: when the file passes ``AMPLIHACK_LOG_MAX_BYTES`` (default 10 MB) after a log
record, ``AGENT.log.N`` become ``.N+1`` (the oldest beyond ``AMPLIHACK_LOG_BACKUPS``,
default 3, is dropped), the log becomes ``AGENT.log.1``, and a fresh ``AGENT.log`` (0600)
takes over both descriptors. ``logs --follow`` sees the file shrink and starts from its top.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUPS = 3


def rotate(path: Path, backups: int) -> None:
    """Shift ``path`` to ``path.1`` (and older ones up), then point fds 1 and 2 at a new
    ``path``."""
    for i in range(backups, 0, -1):
        older = path.with_name(f"{path.name}.{i}")
        if not older.exists():
            continue
        if i == backups:
            older.unlink()
        else:
            older.rename(path.with_name(f"{path.name}.{i + 1}"))
    if path.exists():
        path.rename(path.with_name(f"{path.name}.1"))
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
    finally:
        os.close(fd)


class SizeRotation(logging.Handler):
    """Checks the size of what fd 2 writes to after every record; rotates past the limit."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        super().__init__()
        self.path, self.max_bytes, self.backups = path, max_bytes, backups

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if os.fstat(2).st_size >= self.max_bytes:
                rotate(self.path, self.backups)
        except OSError:
            self.handleError(record)  # logging's own report on stderr; never silent


def install(environ: Mapping[str, str] | None = None) -> SizeRotation | None:
    """Rotate the agent's log if the supervisor named it (else the output is someone
    else's: a terminal, a container's stdout)."""
    env = os.environ if environ is None else environ
    name = env.get("AMPLIHACK_LOG_FILE")
    if not name:
        return None
    max_bytes = int(env.get("AMPLIHACK_LOG_MAX_BYTES") or DEFAULT_MAX_BYTES)
    backups = int(env.get("AMPLIHACK_LOG_BACKUPS") or DEFAULT_BACKUPS)
    if max_bytes < 1024 or backups < 1:
        raise ValueError("AMPLIHACK_LOG_MAX_BYTES must be >= 1024 and AMPLIHACK_LOG_BACKUPS "
                         ">= 1")
    handler = SizeRotation(Path(name), max_bytes, backups)
    logging.getLogger().addHandler(handler)
    return handler
