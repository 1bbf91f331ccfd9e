"""What one agent has handled from its broker inbox: replay memory that survives a restart,
and the only reliable way to tell a genuine redelivery from a copy.

Why: the nonces of :class:`hive_core.auth.ReplayGuard` live in memory, so a signed request
captured from the broker and written back after the agent restarted was accepted again
(within BROKER_WINDOW, 15 minutes). And the marks a broker puts on a redelivery can be set by
anyone who can write to the broker: a Redis writer puts a copy in the stream and moves it to
the consumer group's pending list (XREADGROUP as any consumer, or XCLAIM with RETRYCOUNT and
IDLE), and the agent's XAUTOCLAIM then hands it out as a redelivery. So this decision
uses only what no broker writer can forge: this process's own record, on the agent's
disk next to its shard.

* Every request is recorded (nonce, send time, the broker's key of the delivery) when it was
  handled, BEFORE it is acknowledged: once the broker stops redelivering it, only a copy
  can bring it back, and a copy finds its nonce here and is refused as ``replayed``, in
  this incarnation or the next.
* A redelivery is the same broker entry handed out again: a Redis stream entry id, an Event
  Hubs sequence number, Service Bus sequence numbers, all assigned by the broker, never by a
  sender. Such an entry whose handling was recorded is acknowledged without running again,
  and is not counted as an attack (its acknowledgement was lost, or raced with a reclaim). A
  new entry carrying an old nonce is a replay. Where this process saw its acknowledgement
  take effect before it fetched the entry again (Redis XACK), the entry can only have been
  put back by hand: counted too.
* A delivery that was abandoned (its reply could not be sent) is un-recorded, so the broker's
  redelivery of it runs.

Records are stored through a shared memory map (hive_core.transports.record_file: no system
call per request) and are not fsynced, so they survive the process (a crash, kill -9), not
the machine. After the machine went down while the agent ran
(the boot time changed and the last incarnation did not close), or when the files are damaged,
the newest records may be missing: everything sent before this start is refused as stale
(logged), so a request pending at the power loss is lost rather than perhaps run twice.

Files, in ``DIR`` (the hive's ``data/replay``): ``AGENT.seen`` (fixed-size records),
``AGENT.seen.old`` (the previous window's) and ``AGENT.session`` (boot time, open or closed).
They are rotated every window, so together they hold at most two windows of records.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from hive_core.auth import MAX_NONCES, ReplayGuard, frame_nonce
from hive_core.errors import TransportError
from hive_core.transports.record_file import RecordFile, written

if TYPE_CHECKING:
    from hive_core.hive_config import HiveConfig

log = logging.getLogger("hive_core.transports.handled_journal")

RECORD = struct.Struct(">c16sQ8s")  # kind, nonce, sent at (ms), digest of the broker's key
HANDLED, RELEASED = b"H", b"R"
BOOT_TOLERANCE = 2.0  # seconds two readings of one boot's start time may differ


def journal_dir(config: HiveConfig) -> Path:
    """Where the agents of ``config``'s hive keep their records (next to their shards)."""
    return config.data_dir / "replay"


def key_digest(key: Hashable) -> bytes:
    """8 bytes naming a broker's delivery key (bytes, str, ints or tuples of them).

    Bytes (a Redis entry id) are hashed as they are, other keys by their repr: one broker
    uses one kind of key, so the two never meet, and a bytes key skips a repr and an encode
    on every delivery. A digest that collided could only make a replay count as a
    redelivery (acknowledged uncounted, still never run): what runs is decided by the nonce.
    """
    return hashlib.blake2b(key if isinstance(key, bytes) else repr(key).encode(),
                           digest_size=8).digest()


@dataclass(slots=True)
class Stamp:
    """What the record keeps of one delivery, worked out once per delivery (:func:`stamp`)."""

    digest: bytes  # of the broker's key
    nonce: bytes
    sent_at: float
    confirmed_at: float | None = None  # monotonic time the broker confirmed the ack


def stamp(key: Hashable, body: bytes) -> Stamp | None:
    """The stamp of the delivery ``key`` of ``body``; None if ``body`` is not signed."""
    header = frame_nonce(body)
    return None if header is None else Stamp(key_digest(key), *header)


class HandledJournal:
    """One agent's record of handled deliveries (see the module docstring).

    ``directory`` None keeps it in memory only (a transport built without a data folder: tests,
    benchmarks); the agent runtime always gets one (hive_core.transports.registry).
    """

    def __init__(self, directory: Path | None, agent: str, window: float, *,
                 clock: Callable[[], float] = time.time, boot_time: float | None = None,
                 max_entries: int = MAX_NONCES) -> None:
        self.directory = directory
        self.agent = agent
        self.window = window
        self.clock = clock
        self.max_entries = max_entries
        self.floor = 0.0  # refuse what was sent at or before this (records may be lost)
        self._entries: OrderedDict[bytes, Stamp] = OrderedDict()
        self._lock = threading.Lock()
        self._out: RecordFile | None = None
        self._closed = False
        self._started = clock()
        self._boot = 0.0
        if directory is not None:
            self._boot = psutil.boot_time() if boot_time is None else boot_time
            self._load(directory)

    # -- files ----------------------------------------------------------------------------------
    def _file(self, suffix: str) -> Path:
        assert self.directory is not None
        return self.directory / f"{self.agent}.{suffix}"

    def _load(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        now = self.clock()
        damaged = False
        for part in ("seen.old", "seen"):
            damaged |= self._read(self._file(part), now - self.window)
        session = self._read_session()
        machine_down = session.get("open") is True and \
            abs(float(session.get("boot", 0.0)) - self._boot) > BOOT_TOLERANCE
        if damaged or machine_down:
            self.floor = now
            log.warning("%s: its record of handled requests may miss the last entries (%s); "
                        "requests sent before this start are refused as stale", self.agent,
                        "damaged file" if damaged else "the machine went down")
        records = b"".join(RECORD.pack(HANDLED, h.nonce, int(h.sent_at * 1000), digest)
                           for digest, h in self._entries.items())
        _replace(self._file("seen"), records)  # compacted: only what is still in the window
        self._file("seen.old").unlink(missing_ok=True)
        self._out = RecordFile(self._file("seen"), RECORD.size, start=len(records))
        self._write_session(open_=True)

    def _read(self, part: Path, oldest: float) -> bool:
        """Apply ``part``'s records; True if it is damaged (the rest of it is skipped)."""
        try:
            data = part.read_bytes()
        except FileNotFoundError:
            return False
        end, damaged = written(data, RECORD.size)
        for offset in range(0, end, RECORD.size):
            kind, nonce, sent_ms, digest = RECORD.unpack_from(data, offset)
            if kind == RELEASED:
                self._entries.pop(digest, None)
            elif kind == HANDLED:
                if sent_ms / 1000 >= oldest:
                    self._remember(digest, Stamp(digest, nonce, sent_ms / 1000))
            else:
                return True
        return damaged

    def _read_session(self) -> dict[str, object]:
        try:
            data = json.loads(self._file("session").read_text())
        except FileNotFoundError:
            return {}  # the first start here
        except (OSError, ValueError):
            data = None
        return data if isinstance(data, dict) else {"open": True}  # unreadable: the worst

    def _write_session(self, *, open_: bool) -> None:
        _replace(self._file("session"), json.dumps({"boot": self._boot, "open": open_}).encode())

    def _roll(self, now: float) -> None:
        """Every window (the caller holds the lock): forget entries sent before the window
        (their messages are refused as stale anyway) and start a new file, the current one
        becoming ``.old``."""
        entries, oldest = self._entries, now - self.window
        while entries and next(iter(entries.values())).sent_at < oldest:
            entries.popitem(last=False)
        if self._out is not None:
            self._out.close(sync=False)  # survives the process, as every record does
            os.replace(self._file("seen"), self._file("seen.old"))
            self._out = RecordFile(self._file("seen"), RECORD.size)
        self._started = now

    # -- the per-delivery path ------------------------------------------------------------------
    def seed(self, guard: ReplayGuard) -> None:
        """Give ``guard`` the nonces handled before this start, and the floor."""
        now = self.clock()
        with self._lock:
            handled = [(h.nonce, h.sent_at) for h in self._entries.values()]
        guard.restore(handled, self.floor, now)

    def is_redelivery(self, delivery: Stamp | None, fetched_at: float) -> bool:
        """``delivery`` is the very broker entry whose handling is recorded here, and that
        entry's acknowledgement was not seen to take effect before it was fetched again."""
        if delivery is None:
            return False
        with self._lock:
            entry = self._entries.get(delivery.digest)
        return entry is not None and entry.nonce == delivery.nonce and (
            entry.confirmed_at is None or entry.confirmed_at > fetched_at)

    def handled(self, delivery: Stamp | None) -> None:
        """Record that ``delivery`` was handled (before its ack). Raises TransportError once
        closed (the delivery stays with the broker). None: not signed (a benchmark's
        pass-through policy), nothing to record."""
        if delivery is None:
            return
        with self._lock:
            if self._closed:
                raise TransportError("the record of handled requests is closed")
            now = self.clock()
            if now - self._started > self.window:
                self._roll(now)
            if self._out is not None:
                self._out.append(RECORD.pack(HANDLED, delivery.nonce,
                                             int(delivery.sent_at * 1000), delivery.digest))
            self._remember(delivery.digest, delivery)

    @staticmethod
    def confirmed(delivery: Stamp | None) -> None:
        """The broker confirmed the acknowledgement of the recorded ``delivery``: it will not
        hand it out again by itself."""
        if delivery is not None:
            delivery.confirmed_at = time.monotonic()

    def released(self, delivery: Stamp | None) -> None:
        """``delivery`` was abandoned: its redelivery runs again."""
        if delivery is None:
            return
        with self._lock:
            if self._entries.pop(delivery.digest, None) is not None and self._out is not None:
                self._out.append(RECORD.pack(RELEASED, delivery.nonce,
                                             int(delivery.sent_at * 1000), delivery.digest))

    def _remember(self, digest: bytes, entry: Stamp) -> None:
        entries = self._entries
        again = digest in entries  # a new key goes to the end by itself
        entries[digest] = entry
        if again:
            entries.move_to_end(digest)
        while len(entries) > self.max_entries:  # a forgotten one is refused, never run
            entries.popitem(last=False)

    def close(self) -> None:
        """Flush the records to disk and mark the session closed (a clean shutdown)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._out is not None:
                self._out.close()
                self._out = None
                self._write_session(open_=False)

    def __len__(self) -> int:
        return len(self._entries)


def _replace(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all (a temporary file renamed over it), owner-only."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb", opener=lambda name, flags: os.open(name, flags, 0o600)) as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
