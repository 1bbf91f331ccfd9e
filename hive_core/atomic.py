"""Files that are never half-written and never readable by another user.

Configs, PID records, ring views, state blobs and rendered deployment parameters are all
written the same way: a temp file in the same folder (mode 0600 from the start), flushed to
disk, then renamed over the target -- a reader sees the old file or the new one, never a
mix, and a crash mid-write leaves no debris but a temp file that is cleaned up on error.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hive_core.disk_space import disk_full, is_enospc


def write_private(path: Path, data: bytes | str, *, fsync: bool = True) -> None:
    """Replace ``path`` atomically with ``data``, mode 0600 (``fsync``: durable on return).

    A full disk raises :class:`~hive_core.errors.DiskFull` naming the folder and its free
    space (the old file is left as it was)."""
    raw = data.encode() if isinstance(data, str) else data
    try:
        _replace(path, raw, fsync)
    except OSError as exc:
        if is_enospc(exc):
            raise disk_full(path.parent) from exc
        raise


def _replace(path: Path, raw: bytes, fsync: bool) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:40]}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
