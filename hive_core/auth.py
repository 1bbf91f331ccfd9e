"""Authenticated messages: an envelope on a broker carries an HMAC-SHA256 under the hive's key.

(A Unix-socket connection proves the key once instead and then carries plain envelopes:
hive_core.transports.conn_auth, which uses this module's :class:`KeySet` and :class:`Hmac`.)

Why: anyone who can reach an agent's socket or the hive's Redis could otherwise retract facts
on every replica, inject facts under another agent's name or dump a shard. A transport takes
a :class:`MessageAuth` policy (as redis-py takes a retry policy) and calls :meth:`sign` on the
encoded envelope before it leaves and :meth:`verify` on what arrives, BEFORE the JSON is
parsed: a frame that fails is never decoded, only counted and dropped.

Wire format (64 bytes in front of the JSON envelope)::

    magic    4 bytes  b"AHM1"  (a JSON envelope starts with "{", so an unsigned one is told apart)
    key id   4 bytes  which of the hive's keys signed it (a fingerprint; see :func:`key_id`)
    sent at  8 bytes  milliseconds since the epoch, big-endian
    nonce   16 bytes  8 random bytes per sender (policy), then its message counter
    mac     32 bytes  HMAC-SHA256(key, magic | key id | sent at | nonce | body)
    body              the envelope's JSON (hive_core.messages.encode)

A frame is refused as ``unsigned`` (no magic), ``bad_mac`` (unknown key id, e.g. another
hive's secret, or a MAC that does not match: tampered), ``stale`` (sent more than ``window``
seconds from now, either way) or ``replayed`` (its nonce was already accepted). Nonces are
remembered for the window, at most ``max_nonces`` of them: when that many arrive within one
window, the oldest are forgotten and anything sent before them is refused as stale, so the
memory stays bounded and a replay is still never accepted.

Broker transports redeliver a message after a crash or a lock expiry, minutes later and
maybe to a new process: their window is longer (hive_core.transports.registry), a delivery
whose handling did not complete is :meth:`release`\\ d so its redelivery is accepted again,
and one that was handled is refused as replayed instead of running twice. Whether a delivery
IS a redelivery is never taken from the broker (anyone who can write to it can make a copy
look like one), and what an agent handled is recorded on its disk so that refusal survives
a restart: hive_core.transports.handled_journal.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import itertools
import os
import secrets
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, runtime_checkable

from hive_core.errors import MessageRejected

MAGIC = b"AHM1"
HEADER = struct.Struct(">4s4sQ16s")  # magic, key id, sent at (ms), nonce
# The same 32 bytes packed in one call when signing: the nonce as its prefix and counter.
_SIGNING_HEADER = struct.Struct(">4s4sQ8sQ")
MAC_SIZE = 32
OVERHEAD = HEADER.size + MAC_SIZE  # bytes a signature adds to a message
KEY_BYTES = 32
WINDOW = 60.0  # seconds a message may be older (or newer: clock skew) than the receiver's now
# A broker holds a message for its redelivery after a crash or a lock expiry (Service Bus:
# up to max_delivery_count x the lock duration), so its window is longer.
BROKER_WINDOW = 900.0
MAX_NONCES = 100_000


class AuthRejected(MessageRejected):
    """A message failed authentication; ``reason`` is its counter's name."""

    reason: ClassVar[str] = ""


class Unsigned(AuthRejected):
    reason = "unsigned"


class BadMac(AuthRejected):
    reason = "bad_mac"


class Stale(AuthRejected):
    reason = "stale"


class Replayed(AuthRejected):
    reason = "replayed"


class Redelivered(Replayed):
    """A broker's redelivery of a message already handled here (e.g. its lock expired just
    before it was completed): not an attack, so not counted, but not run twice either."""

    reason = "redelivered"


REASONS = tuple(c.reason for c in (BadMac, Stale, Replayed, Unsigned))


def key_id(key: bytes) -> bytes:
    """A 4-byte fingerprint of ``key``: picks the key during a rotation, reveals nothing."""
    return hashlib.sha256(b"amplihack-hive key id\0" + key).digest()[:4]


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


class Hmac:
    """HMAC-SHA256 (RFC 2104) under one key, its inner and outer pads hashed once.

    Why not ``hmac.digest``: that looks the digest up by name in OpenSSL on every call, which
    in an agent (a worker thread woken for each request) costs 10-15 us a message; copying two
    prepared SHA-256 states costs a few. Same bytes out (tests/test_auth.py checks).
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > 64:
            key = hashlib.sha256(key).digest()
        padded = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in padded))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in padded))

    def digest(self, *parts: bytes) -> bytes:
        inner = self._inner.copy()
        for part in parts:
            inner.update(part)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def digest2(self, header: bytes, body: bytes) -> bytes:
        """``digest(header, body)`` without the argument tuple and loop: the per-message
        path runs it twice a message, mostly with cold caches (see MessageAuth.sign)."""
        inner = self._inner.copy()
        inner.update(header)
        inner.update(body)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


@dataclass(frozen=True, slots=True)
class KeySet:
    """The keys in force: ``signing`` signs, every key of ``accepted`` verifies.

    ``generation`` grows with every rotation step (agents report it, so ``rotate-secret``
    knows when all of them follow); ``source`` says where the keys came from (file, env,
    ephemeral) -- never the keys themselves.
    """

    signing: bytes
    accepted: tuple[bytes, ...]
    generation: int = 0
    source: str = "ephemeral"
    # Each key's MAC by the key's id, prepared once (a message names its key by id).
    by_id: dict[bytes, Hmac] = field(init=False, repr=False, compare=False)
    signing_id: bytes = field(init=False, repr=False, compare=False)
    signing_mac: Hmac = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for key in (self.signing, *self.accepted):
            if len(key) < 16:
                raise ValueError("a message key must be at least 16 bytes")
        if self.signing not in self.accepted:
            raise ValueError("the signing key must be one of the accepted keys")
        object.__setattr__(self, "by_id", {key_id(k): Hmac(k) for k in self.accepted})
        object.__setattr__(self, "signing_id", key_id(self.signing))
        object.__setattr__(self, "signing_mac", self.by_id[self.signing_id])

    def __repr__(self) -> str:  # keys never reach a log line or a traceback
        return f"KeySet(generation={self.generation}, source={self.source!r}, " \
               f"keys={len(self.accepted)})"

    def lookup(self, kid: bytes) -> Hmac | None:
        """The MAC of the key whose id is ``kid`` (None: no such key here)."""
        return self.by_id.get(kid)


@runtime_checkable
class KeySource(Protocol):
    """Where a policy gets its keys; asked on every message (a file source re-reads only
    when the file changed, hive_core.secret_store)."""

    def keys(self) -> KeySet: ...


class StaticKeys:
    """Keys that never change in this process (an environment variable, or ephemeral)."""

    def __init__(self, keyset: KeySet) -> None:
        self._keyset = keyset

    def keys(self) -> KeySet:
        return self._keyset


_process_key: bytes | None = None
_process_lock = threading.Lock()


def process_keys() -> StaticKeys:
    """One random key for this process: the in-process hive (no hive folder, no secret file)
    and transports built without a policy. Nothing outside this process can use it."""
    global _process_key
    with _process_lock:
        if _process_key is None:
            _process_key = new_key()
        return StaticKeys(KeySet(_process_key, (_process_key,)))


def check_age(sent_at: float, now: float, window: float) -> None:
    """Stale if a message sent at ``sent_at`` is more than ``window`` seconds from ``now``,
    either way (clock skew)."""
    if not -window <= now - sent_at <= window:
        raise Stale(f"message sent {now - sent_at:.0f}s from now (window {window:g}s)")


class ReplayGuard:
    """Nonces accepted within the window (bounded; see the module docstring).

    Nonces older than the window are forgotten at most every :data:`SWEEP_INTERVAL` seconds
    (or at once when ``max_nonces`` is reached), not on every claim: an expired nonce kept
    a second longer costs a little memory, never an acceptance (its message is refused as
    stale by the window check first), and the per-message path stays short.
    """

    SWEEP_INTERVAL: ClassVar[float] = 1.0

    def __init__(self, window: float, max_nonces: int = MAX_NONCES) -> None:
        self.window = window
        self.max_nonces = max_nonces
        self.floor = 0.0  # messages sent at or before this are refused (nonces forgotten)
        self._seen: dict[bytes, float] = {}
        self._order: deque[tuple[float, bytes]] = deque()
        self._lock = threading.Lock()
        self._next_sweep = 0.0

    def claim(self, nonce: bytes, sent_at: float, now: float) -> None:
        """Accept ``nonce`` once; raises Stale or Replayed."""
        check_age(sent_at, now, self.window)
        with self._lock:
            if now >= self._next_sweep or len(self._order) >= self.max_nonces:
                self._expire(now)
                self._next_sweep = now + min(self.SWEEP_INTERVAL, self.window / 10)
            if sent_at <= self.floor:
                raise Stale("message older than the oldest nonce still remembered")
            if nonce in self._seen:
                raise Replayed("message already accepted (same nonce)")
            self._seen[nonce] = sent_at
            self._order.append((sent_at, nonce))

    def restore(self, handled: Iterable[tuple[bytes, float]], floor: float,
                now: float) -> None:
        """Nonces accepted before this process started (a durable record of them), and a
        ``floor``: refuse anything sent at or before it (that record may be incomplete)."""
        with self._lock:
            self.floor = max(self.floor, floor)
            for nonce, sent_at in handled:
                if sent_at >= now - self.window and nonce not in self._seen:
                    self._seen[nonce] = sent_at
                    self._order.append((sent_at, nonce))

    def release(self, nonce: bytes) -> None:
        """Forget ``nonce``: its handling did not complete, a redelivery may run it."""
        with self._lock:
            self._seen.pop(nonce, None)

    def _expire(self, now: float) -> None:
        order, seen = self._order, self._seen
        while order and (order[0][0] < now - self.window or len(order) >= self.max_nonces):
            sent_at, nonce = order.popleft()
            if seen.get(nonce) == sent_at:
                del seen[nonce]
            if sent_at >= now - self.window:  # forgotten early: refuse anything this old
                self.floor = max(self.floor, sent_at)

    def __len__(self) -> int:
        return len(self._seen)


class MessageAuth:
    """The authentication policy of one transport instance: sign, verify, count refusals.

    Keys come from a :class:`KeySource` (shared); nonces and counters are this instance's
    own, so two transports of one process (a test's "crashed" and "restarted" agent) do not
    see each other's nonces, as two processes would not.
    """

    def __init__(self, keys: KeySource, *, window: float = WINDOW,
                 max_nonces: int = MAX_NONCES, clock: Callable[[], float] = time.time) -> None:
        if not window > 0:
            raise ValueError("the replay window must be > 0 seconds")
        self.source = keys
        self.window = window
        self.clock = clock
        self.guard = ReplayGuard(window, max_nonces)
        self._rejected = dict.fromkeys(REASONS, 0)
        self._lock = threading.Lock()
        # Nonces: random per policy, then a counter -- unique without a syscall per message.
        self._nonce_prefix = os.urandom(8)
        self._counter = itertools.count()

    def signature(self, body: bytes) -> bytes:
        """The OVERHEAD bytes that go in front of ``body`` (header and MAC).

        Why separate from :meth:`sign`: a stream transport writes its length prefix, these
        bytes and the body with one copy (or none), instead of copying a large body once to
        sign it and once more to frame it. Why so terse: it runs twice per round trip, mostly
        right after a thread woke up with cold caches, where every call and lookup shows."""
        keyset = self.source.keys()
        header = _SIGNING_HEADER.pack(MAGIC, keyset.signing_id, int(self.clock() * 1000),
                                      self._nonce_prefix, next(self._counter))
        return header + keyset.signing_mac.digest2(header, body)

    def sign(self, body: bytes) -> bytes:
        """``body`` with the signed header in front (OVERHEAD bytes more)."""
        return b"".join((self.signature(body), body))

    def verify(self, data: bytes, *, redelivery: bool | Callable[[], bool] = False) -> bytes:
        """The body of a signed frame, once; raises (and counts) an AuthRejected subclass.

        ``redelivery``: this process's own record says it handled this very broker entry
        before (hive_core.transports.handled_journal) -- never the broker's word, which a
        writer can forge; if it was accepted here already, :class:`Redelivered` (uncounted,
        still not run) instead of Replayed. A callable is asked only then: a broker looks
        its record up for the rare replay, not for every delivery."""
        return self.open(data, redelivery)[0]

    def verify_reply(self, data: bytes) -> bytes:
        """The body of a signed reply: its MAC and its send time checked, its nonce not
        claimed.

        Why no nonce: a reply is accepted only by the request still waiting under its
        correlation id (a random id per request), and that wait ends with the first reply,
        so a copy of a reply -- now or later -- finds no one waiting and is dropped; the
        MAC keeps its content genuine. Remembering every reply's nonce for the window would
        add nothing but work on each round trip's critical path and memory in every asker.
        """
        try:
            body, _nonce, sent_ms = self._check(data)
            check_age(sent_ms / 1000, self.clock(), self.window)
            return body
        except AuthRejected as exc:
            self._count(exc)
            raise

    def _check(self, data: bytes) -> tuple[bytes, bytes, int]:
        """The MAC of a frame (raises, uncounted; its age is the caller's to check, once:
        a request's by the replay guard's claim); its body, nonce and send time (ms)."""
        if len(data) < OVERHEAD or data[:4] != MAGIC:
            raise Unsigned("message is not signed with the hive's secret")
        _magic, kid, sent_ms, nonce = HEADER.unpack_from(data)
        mac = self.source.keys().by_id.get(kid)
        if mac is None:
            raise BadMac("message signed with an unknown key (another hive's secret, or "
                         "one rotated out)")
        body = data[OVERHEAD:]
        if not hmac.compare_digest(mac.digest2(data[:HEADER.size], body),
                                   data[HEADER.size:OVERHEAD]):
            raise BadMac("message authentication code does not match (tampered?)")
        return body, nonce, sent_ms

    def open(self, data: bytes, redelivery: bool | Callable[[], bool] = False
             ) -> tuple[bytes, bytes, int]:
        """:meth:`verify`, also returning the nonce and send time (ms) the frame carried.

        Why: a broker's record of what it handled keeps both (handled_journal.Stamp), and
        parsing the header once here instead of again there is one step fewer on a path
        that runs, mostly with cold caches, once per request. A policy that does not sign
        (a benchmark's pass-through) returns an empty nonce: nothing to record."""
        try:
            body, nonce, sent_ms = self._check(data)
            self.guard.claim(nonce, sent_ms / 1000, self.clock())
            return body, nonce, sent_ms
        except Replayed as exc:
            if redelivery if isinstance(redelivery, bool) else redelivery():
                raise Redelivered(str(exc)) from None
            self._count(exc)
            raise
        except AuthRejected as exc:
            self._count(exc)
            raise

    def _count(self, exc: AuthRejected) -> None:
        with self._lock:
            self._rejected[exc.reason] += 1

    def count(self, exc: AuthRejected) -> None:
        """Count a refusal decided outside :meth:`verify` (a Unix connection's handshake,
        hive_core.transports.conn_auth), so the status shows it with the others."""
        self._count(exc)

    def release(self, data: bytes) -> None:
        """A verified frame whose handling did not complete: accept it once more (a broker's
        redelivery of it). Frames that never verified are ignored."""
        if len(data) >= OVERHEAD and data[:4] == MAGIC:
            self.guard.release(HEADER.unpack_from(data)[3])

    def rejected(self) -> dict[str, int]:
        """Refusals so far by reason (an agent's status shows them)."""
        with self._lock:
            return dict(self._rejected)

    def describe(self) -> dict[str, object]:
        """What may be shown about the keys: generation and source, never a key."""
        keyset = self.source.keys()
        return {"generation": keyset.generation, "source": keyset.source}


def frame_nonce(data: bytes) -> tuple[bytes, float] | None:
    """The nonce and send time (s) a signed frame claims, unverified; None if unsigned."""
    if len(data) < OVERHEAD or data[:4] != MAGIC:
        return None
    _magic, _kid, sent_ms, nonce = HEADER.unpack_from(data)
    return nonce, sent_ms / 1000


def with_key(key: bytes, window: float = WINDOW) -> MessageAuth:
    """A policy over one fixed ``key`` (processes that share it by other means: tests,
    benchmarks)."""
    return MessageAuth(StaticKeys(KeySet(key, (key,), 0, "static")), window=window)


def ephemeral(window: float = WINDOW) -> MessageAuth:
    """A policy over this process's own random key (see :func:`process_keys`)."""
    return MessageAuth(process_keys(), window=window)


@runtime_checkable
class Authenticated(Protocol):
    """A transport that signs and verifies with a :class:`MessageAuth` (all of ours)."""

    auth: MessageAuth


def parse_keys(text: str, source: str) -> Sequence[bytes]:
    """Keys written as hex or base64, comma-separated (first one signs): the environment
    form, ``AMPLIHACK_HIVE_SECRET=KEY[,PREVIOUS]``. ValueError names the problem, never
    the value."""
    keys: list[bytes] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            key = bytes.fromhex(part)
        except ValueError:
            try:
                key = base64.b64decode(part, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(f"{source} is neither hex nor base64") from None
        if len(key) < 16:
            raise ValueError(f"{source} holds a key of {len(key)} bytes (at least 16, "
                             f"{KEY_BYTES} recommended)")
        keys.append(key)
    if not keys:
        raise ValueError(f"{source} is empty")
    return keys
