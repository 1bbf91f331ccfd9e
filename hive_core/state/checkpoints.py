"""Where a broker consumer resumes: the last sequence number it handled, per partition.

An Event Hubs consumer that restarts (or whose partition moves to another agent) reads its
checkpoint and continues after it. Two consumers may briefly own one partition during a
rebalance; the slower one must not drag the checkpoint back, or the next owner would handle
a stretch of events twice. So a save never moves a checkpoint backwards: it is a
read-compare-write with ``if_match``, retried when another saver got in between.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Protocol, runtime_checkable

from hive_core.errors import ConfigError, TransportError
from hive_core.state.blobs import Blob, Blobs, PreconditionFailed, escape_segment
from hive_core.transports.retry import Backoff, RetryState

SAVE_DEADLINE = 10.0


@runtime_checkable
class CheckpointStore(Protocol):
    def load(self, hub: str, group: str, partition: str) -> int | None:
        """The last handled sequence number, or None if the partition has none yet."""
        ...

    def save(self, hub: str, group: str, partition: str, sequence: int) -> None:
        """Record ``sequence`` as handled (-1: before the partition's first event); a lower
        one than stored is ignored."""
        ...


def _check_sequence(sequence: int) -> int:
    if isinstance(sequence, bool) or not isinstance(sequence, int) or sequence < -1:
        raise ValueError(f"a checkpoint is a sequence number >= -1 (-1: before the first "
                         f"event), not {sequence!r}")
    return sequence


def _key(hub: str, group: str, partition: str) -> tuple[str, str, str]:
    for part in (hub, group, partition):
        escape_segment(part)  # ValueError for an empty or non-string part
    return hub, group, partition


class MemoryCheckpoints:
    """Checkpoints in a dict: tests and single-process consumers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str, str], int] = {}

    def load(self, hub: str, group: str, partition: str) -> int | None:
        with self._lock:
            return self._seen.get(_key(hub, group, partition))

    def save(self, hub: str, group: str, partition: str, sequence: int) -> None:
        key, sequence = _key(hub, group, partition), _check_sequence(sequence)
        with self._lock:
            self._seen[key] = max(sequence, self._seen.get(key, -1))


class BlobCheckpoints:
    """One blob per partition, ``checkpoints/HUB/GROUP/PARTITION`` (each part escaped), on a
    :class:`~hive_core.state.blobs.Blobs` the caller owns."""

    def __init__(self, blobs: Blobs, prefix: str = "checkpoints/",
                 deadline: float = SAVE_DEADLINE) -> None:
        self.blobs = blobs
        self.prefix = prefix
        self.deadline = deadline

    def _name(self, hub: str, group: str, partition: str) -> str:
        return self.prefix + "/".join(escape_segment(p) for p in (hub, group, partition))

    def _sequence(self, blob: Blob, name: str) -> int:
        try:
            value = json.loads(blob.data)["sequence"]
            return _check_sequence(value)
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"checkpoint {name!r} is unreadable: {exc}") from exc

    def load(self, hub: str, group: str, partition: str) -> int | None:
        name = self._name(hub, group, partition)
        blob = self.blobs.read(name)
        return None if blob is None else self._sequence(blob, name)

    def save(self, hub: str, group: str, partition: str, sequence: int) -> None:
        """Raises TransportError if other savers kept winning for ``deadline`` seconds."""
        name = self._name(hub, group, partition)
        data = json.dumps({"sequence": _check_sequence(sequence),
                           "saved_at": time.time()}).encode()
        end = time.monotonic() + self.deadline
        retry = RetryState(Backoff(base=0.005, cap=0.1))
        while True:
            blob = self.blobs.read(name)
            if blob is not None and self._sequence(blob, name) >= sequence:
                return  # already there or beyond: never move back
            try:
                if blob is None:
                    self.blobs.write(name, data, if_none_match=True)
                else:
                    self.blobs.write(name, data, if_match=blob.etag)
                return
            except PreconditionFailed:
                if not retry.failed(deadline=end):
                    raise TransportError(
                        f"checkpoint {name!r} kept changing; not saved within "
                        f"{self.deadline:g}s") from None
