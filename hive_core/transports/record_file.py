"""An append-only file of fixed-size records, written through a shared memory map.

Why: an agent on a broker records every request it handled before acknowledging it
(hive_core.transports.handled_journal). Written with one ``write()`` each, that record was
the largest part of what authentication adds to a Redis round trip after the MACs
(``python -m bench.auth_cost``: ~2 of its ~9%). A store into a shared mapping is a memory
copy, no system call, and has the same durability: the page belongs to the kernel's page
cache the moment it is written, so it survives the process (a crash, kill -9), though not
the machine -- exactly what the journal promised with unsynced writes.

A record is complete when its first byte (its kind, never zero) is set, and that byte is
stored last: a process killed mid-record leaves the rest of a record whose kind is still
zero, which a reader takes as the end. The file is grown (doubled) when full and cut back
to what was written on :meth:`RecordFile.close`; unwritten space reads as zeros.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

INITIAL_RECORDS = 4096


class RecordFile:
    """Appends ``size``-byte records to ``path`` (created 0600, or continued after what it
    holds; see :func:`written`)."""

    def __init__(self, path: Path, size: int, start: int = 0) -> None:
        self.size = size
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self._pos = start
        self._map: mmap.mmap | None = None
        self._grow(max(INITIAL_RECORDS * size, 2 * start))

    def _grow(self, length: int) -> None:
        """Room for more records, its disk blocks allocated now: a store into a mapped page
        that has no block on a full disk kills the process (SIGBUS), where allocating here
        raises OSError (ENOSPC), which the caller reports like any failed write."""
        length += -length % mmap.PAGESIZE
        os.posix_fallocate(self._fd, 0, length)
        if self._map is None:
            self._map = mmap.mmap(self._fd, length)
        else:
            self._map.resize(length)

    def append(self, record: bytes) -> None:
        """Store ``record`` (``size`` bytes, first byte non-zero), its first byte last."""
        mapped = self._map
        assert mapped is not None, "the record file is closed"
        pos = self._pos
        if pos + self.size > len(mapped):
            self._grow(2 * len(mapped))
            mapped = self._map
            assert mapped is not None
        mapped[pos + 1:pos + self.size] = record[1:]
        mapped[pos] = record[0]
        self._pos = pos + self.size

    def close(self, sync: bool = True) -> None:
        """Unmap, cut the file back to its records and (``sync``) flush it to disk."""
        if self._map is None:
            return
        self._map.close()
        self._map = None
        os.ftruncate(self._fd, self._pos)
        if sync:
            os.fsync(self._fd)
        os.close(self._fd)


def written(data: bytes, size: int) -> tuple[int, bool]:
    """How many bytes of ``data`` hold complete records (up to the first whose kind byte is
    zero: the end), and whether the file is damaged: anything but zeros after the one
    record that may have been cut short there (a process killed while storing it; its
    request was never acknowledged, so it is not missed)."""
    whole = len(data) - len(data) % size
    end = next((o for o in range(0, whole, size) if data[o] == 0), whole)
    # After the last complete record: zeros, but for the body of one cut short there (its
    # kind byte still zero); a partial record whose kind is set was not written here.
    after = data[end + size:] if end < whole else data[whole:]
    return end, bool(after.strip(b"\0"))
