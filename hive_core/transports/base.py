"""The ShardTransport seam: how one agent's request reaches another agent's shard.

Like an httpx transport, it is tiny: agents ``bind`` a handler under their id, and callers
``request`` a batch of envelopes at once (scatter/gather) with one deadline. Every transport,
in-process, Unix sockets, Redis Streams, cloud brokers, implements just these primitives and
passes the same conformance suite (``tests/test_transport_conformance.py``).

Contract:

* ``request`` never waits past ``timeout``; it returns one item per envelope, in order: the
  reply envelope, or a :class:`~hive_core.errors.TransportError` (``DeadlineExceeded`` for a
  peer that did not answer in time, ``ConnectionLost`` for an unknown or unreachable peer).
* A handler returns the reply envelope (or ``None`` for one-way messages); an exception
  inside a handler comes back to the caller as an ``ERROR`` reply, never silently dropped.
* A handler may be called concurrently from several threads.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from hive_core.auth import OVERHEAD, MessageAuth
from hive_core.errors import (
    ConnectionLost,
    MessageRejected,
    PeerFailed,
    StaleEpoch,
    TransportError,
)
from hive_core.messages import Envelope, MessageType, decode, encode

RETRYABLE = "retryable"  # ERROR code: the receiver's peers failed; sending again may work

Handler = Callable[[Envelope], Envelope | None]
Reply = Envelope | TransportError


@runtime_checkable
class ShardTransport(Protocol):
    def bind(self, agent_id: str, handler: Handler) -> None:
        """Deliver messages addressed to ``agent_id`` to ``handler``."""
        ...

    def unbind(self, agent_id: str) -> None: ...

    def request(self, envelopes: Sequence[Envelope], timeout: float) -> list[Reply]:
        """Send all ``envelopes`` concurrently; gather replies until ``timeout`` seconds."""
        ...

    def close(self) -> None: ...


def seal(auth: MessageAuth | None, env: Envelope, max_bytes: int) -> bytes:
    """The signed bytes of ``env``: at most ``max_bytes`` on the wire, signature included.
    ``auth`` None: the plain envelope, for a connection that was authenticated once
    (hive_core.transports.conn_auth)."""
    if auth is None:
        return encode(env, max_bytes)
    return auth.sign(encode(env, max_bytes - OVERHEAD))


def unseal(auth: MessageAuth | None, data: bytes, max_bytes: int, *,
           reply: bool = False) -> Envelope:
    """The envelope of signed ``data``, verified before any of it is parsed (raises
    MessageRejected, an hive_core.auth.AuthRejected when authentication fails); ``auth``
    None: plain ``data`` from an authenticated connection, as :func:`seal`. A ``reply``'s
    nonce is not claimed: its request's correlation id stops a copy (MessageAuth.verify_reply)."""
    if len(data) > max_bytes:
        raise MessageRejected(f"message of {len(data)} bytes exceeds the {max_bytes}-byte limit")
    if auth is None:
        return decode(data, max_bytes)
    return decode(auth.verify_reply(data) if reply else auth.verify(data), max_bytes)


def reply_bytes(
    handler: Handler, env: Envelope, agent_id: str, max_bytes: int,
    auth: MessageAuth | None, misrouted: str | None = None,
) -> bytes:
    """The signed reply of a networked agent to one verified, decoded request (plain with
    ``auth`` None, as :func:`seal`).

    ``misrouted`` (a reason) refuses a message that reached the wrong agent or hive. A
    handler's exception, a missing reply and a reply too large to send each become an ERROR
    reply, so the caller always hears back instead of waiting out its deadline.
    """
    reply = env.error(misrouted) if misrouted is not None else safe_handle(handler, env)
    if reply is None:
        reply = env.error(f"{agent_id} sent no reply to {env.type}")
    try:
        return seal(auth, reply, max_bytes)
    except MessageRejected as exc:
        return seal(auth, env.error(f"reply rejected: {exc}"), max_bytes)


def check_request(closed: bool, timeout: float) -> float:
    """The checks every ``request`` starts with; returns the absolute (monotonic) deadline.

    A timeout of 0 or less is refused: in the system this follows it meant "wait forever".
    """
    if closed:
        raise ConnectionLost("the transport is closed")
    if timeout <= 0:
        raise ValueError("timeout must be > 0 (a wait without a deadline is not allowed)")
    return time.monotonic() + timeout


def safe_handle(handler: Handler, envelope: Envelope) -> Envelope | None:
    """Run a handler, turning its exception into an ERROR reply to the sender."""
    try:
        return handler(envelope)
    except Exception as exc:  # reported to the caller, not swallowed
        # A transport failure behind the receiver (its peers were slow or down) is worth a
        # retry; a refusal of the message itself is not.
        retry = isinstance(exc, TransportError) and not isinstance(exc, MessageRejected)
        detail = {"code": RETRYABLE} if retry else {}
        return envelope.error(f"{type(exc).__name__}: {exc}", **detail)


def request_payloads(
    transport: ShardTransport, envelopes: Sequence[Envelope], timeout: float
) -> dict[str, dict[str, Any] | TransportError]:
    """Send ``envelopes`` (one per target) and return, per target, the reply payload or the
    error it met: the scatter/gather every caller of ``request`` needs."""
    out: dict[str, dict[str, Any] | TransportError] = {}
    for env, reply in zip(envelopes, transport.request(envelopes, timeout), strict=True):
        try:
            out[env.target] = check_reply(reply).payload
        except TransportError as exc:
            out[env.target] = exc
    return out


def check_reply(reply: Reply) -> Envelope:
    """The reply envelope, or raise what went wrong (transport failure or remote error)."""
    if isinstance(reply, TransportError):
        raise reply
    if reply.type == MessageType.ERROR:
        text = f"{reply.sender}: {reply.payload.get('error', 'unknown error')}"
        if reply.payload.get("code") == "stale_epoch":
            raise StaleEpoch(text, int(reply.payload.get("epoch") or 0))
        if reply.payload.get("code") == RETRYABLE:
            raise PeerFailed(text)
        raise MessageRejected(text)
    return reply
