"""A small real disk for full-disk tests: a 40 MB tmpfs (root can mount here)."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def small_tmpfs(prefix: str, size: str = "40m") -> Iterator[Path]:
    """A tmpfs of ``size``, unmounted afterwards (skips where mounting is not allowed)."""
    where = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                              str(where)], capture_output=True)
    if mounted.returncode != 0:
        where.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
        where.rmdir()
