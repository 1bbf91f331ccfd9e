"""Bodies that fit a broker's per-message limit: compressed, then split into parts.

Event Hubs refuses an event (and a batch) over 1 MB, Service Bus a message over 256 KB
(standard) or 1 MB (premium); a hand-off page or a store batch of 2,000 facts can be larger
in JSON. A body is zlib-compressed (JSON facts shrink several-fold, cheaply at level 1) and,
if still too large, split into numbered parts that travel as separate messages of one
partition or queue; :class:`Reassembler` puts them back together on the other side, even
when a redelivery repeats parts or the parts of several bodies interleave.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field

from hive_core.errors import MessageRejected

DEFAULT_PART_BYTES = 900 * 1024  # under the 1 MB limit with room for properties
STALE_AFTER = 300.0  # seconds an incomplete body is kept waiting for its other parts


def split(body: bytes, part_bytes: int = DEFAULT_PART_BYTES) -> list[bytes]:
    """The compressed ``body`` in parts of at most ``part_bytes``."""
    packed = zlib.compress(body, 1)
    return [packed[i:i + part_bytes] for i in range(0, len(packed), part_bytes)] or [b""]


def join(parts: list[bytes], max_bytes: int) -> bytes:
    """The original body of ``parts``; MessageRejected if it would exceed ``max_bytes``."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(b"".join(parts), max_bytes + 1)
    except zlib.error as exc:
        raise MessageRejected(f"a message body is corrupt: {exc}") from exc
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise MessageRejected(f"a message body exceeds the {max_bytes}-byte limit")
    return out


@dataclass(slots=True)
class _Pending:
    parts: dict[int, bytes] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)


class Reassembler:
    """Collects parts by message id; :meth:`add` returns the body once all parts are in."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._pending: dict[str, _Pending] = {}

    def add(self, msg_id: str, index: int, count: int, data: bytes) -> bytes | None:
        if count <= 1:
            return join([data], self.max_bytes)
        if not 0 <= index < count or count * DEFAULT_PART_BYTES > 4 * self.max_bytes + \
                DEFAULT_PART_BYTES:
            raise MessageRejected(f"message {msg_id}: bad part {index} of {count}")
        pending = self._pending.setdefault(msg_id, _Pending())
        pending.parts[index] = data  # a redelivered part just overwrites itself
        if len(pending.parts) < count:
            self._expire()
            return None
        del self._pending[msg_id]
        return join([pending.parts[i] for i in range(count)], self.max_bytes)

    def _expire(self) -> None:
        now = time.monotonic()
        for msg_id in [m for m, p in self._pending.items() if now - p.started > STALE_AFTER]:
            del self._pending[msg_id]

    def __len__(self) -> int:
        return len(self._pending)
