"""LocalEventBus: the in-process transport, where messages really travel as messages.

Each request is delivered on a worker thread and the caller waits with its deadline, so a
handler that hangs costs its caller the deadline, exactly like a dead peer on a network. The
payload is plain data; with ``strict=True`` every request and reply is also encoded to JSON
bytes and decoded again, proving that nothing crosses the bus that could not cross a socket
(the conformance tests run this way; benchmarks use the default to measure the engine, not
``json``). Strict mode also signs and verifies each message (hive_core.auth), as the
networked transports do, with the policy given or this process's own key.

The default bus neither encodes nor signs: sender and receiver share one address space, so
nothing sits between them that could forge or alter a message, and a signature would only
prove that the process trusts itself. That is also why a graph calls the shards this bus
would deliver to unchanged directly, without the thread hand-off
(``DistributedHiveGraph._delivered_here``, keyed on :attr:`LocalEventBus.version`). Every
process boundary is still authenticated: a Unix-socket connection by its handshake
(hive_core.transports.conn_auth), every message on Redis and the brokers by its HMAC.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
from collections.abc import Sequence

from hive_core.auth import MessageAuth, ephemeral
from hive_core.config import MAX_MESSAGE_BYTES
from hive_core.errors import ConnectionLost, DeadlineExceeded, TransportError
from hive_core.messages import Envelope
from hive_core.transports.base import Handler, Reply, check_request, safe_handle, seal, unseal


class LocalEventBus:
    """In-process ShardTransport shared by every shard of one DistributedHiveGraph."""

    def __init__(
        self, *, strict: bool = False, max_workers: int = 8,
        max_message_bytes: int = MAX_MESSAGE_BYTES, auth: MessageAuth | None = None,
    ) -> None:
        self.strict = strict
        self.auth = auth if auth is not None else ephemeral()
        self.max_message_bytes = max_message_bytes
        self._handlers: dict[str, Handler] = {}
        self._lock = threading.Lock()
        self._pool = cf.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="hive-bus")
        self._closed = False
        self.delivered = 0
        # Bumped by every bind and unbind: a graph caches which of its shards this bus would
        # hand to their own server unchanged, and recomputes that when this moves.
        self.version = 0

    def bind(self, agent_id: str, handler: Handler) -> None:
        with self._lock:
            self._handlers[agent_id] = handler
            self.version += 1

    def handler(self, agent_id: str) -> Handler | None:
        """The handler bound for ``agent_id`` (a graph compares it to skip the hand-off)."""
        return self._handlers.get(agent_id)

    def unbind(self, agent_id: str) -> None:
        with self._lock:
            self._handlers.pop(agent_id, None)
            self.version += 1

    def _wire(self, envelope: Envelope) -> Envelope:
        if not self.strict:
            return envelope
        limit = self.max_message_bytes
        return unseal(self.auth, seal(self.auth, envelope, limit), limit)

    def _deliver(self, envelope: Envelope) -> Envelope | None:
        handler = self._handlers.get(envelope.target)
        if handler is None:
            raise ConnectionLost(f"no agent {envelope.target!r} on this bus")
        reply = safe_handle(handler, self._wire(envelope))
        return None if reply is None else self._wire(reply)

    def request(self, envelopes: Sequence[Envelope], timeout: float) -> list[Reply]:
        check_request(self._closed, timeout)
        futures = [self._pool.submit(self._deliver, env) for env in envelopes]
        cf.wait(futures, timeout=timeout)
        out: list[Reply] = []
        for env, fut in zip(envelopes, futures, strict=True):
            if not fut.done():
                fut.cancel()
                out.append(DeadlineExceeded(f"{env.target} did not answer within {timeout:g}s"))
                continue
            exc = fut.exception()
            if isinstance(exc, TransportError):
                out.append(exc)
            elif exc is not None:
                out.append(TransportError(f"{env.target}: {type(exc).__name__}: {exc}"))
            else:
                reply = fut.result()
                if reply is None:
                    out.append(TransportError(f"{env.target} sent no reply to {env.type}"))
                else:
                    out.append(reply)
            self.delivered += 1
        return out

    def close(self) -> None:
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
