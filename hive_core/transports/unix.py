"""UnixSocketTransport: the ``local`` transport between agent processes on one machine.

No server to install: each agent listens on ``<run_dir>/<agent_id>.sock`` (mode 0600 in a
0700 folder), and a message is one length-prefixed frame of the same JSON envelope that the
in-process bus carries (:mod:`hive_core.transports.framing`). Membership comes from the hive's
config; liveness is simply whether a peer's socket answers: a missing or refused socket is a
``ConnectionLost`` for that item, at once, without waiting for the deadline.

``request`` scatters all envelopes and gathers replies in the calling thread with one
selector and ONE deadline, so a batch to five shards costs about one round trip, and a peer
that hangs costs its item (``DeadlineExceeded``), not the others. Connections are pooled per
peer and reused (checked for end-of-stream before reuse, so a restarted peer is reconnected);
a connection that saw a timeout or an error is closed, never reused, so a late reply can never
be mistaken for the answer to a later request.

A pooled connection can still be closed by the peer between that check and the request (the
listener's idle timeout, hive_core.transports.listener_limits, firing just then). Such a
request is sent again, once, on a fresh connection -- but only when the kernel says the peer
never read it: the send failed (EPIPE/ECONNRESET: closed before we wrote) or the first read
failed with ECONNRESET (Linux reports that when a Unix socket is closed with our bytes
unread), and no byte of a reply arrived. A clean end of stream after a complete send means
the peer read the request (then failed or stopped without answering), and a reply cut off
half way means it was answered: both are reported (ConnectionLost), never re-sent silently,
as the request may have run.

Authentication is per connection (:mod:`hive_core.transports.conn_auth`): a new connection
sends its HELLO, checks the listener's proof, then sends its own proof with the first request
behind it (one round trip more, once per connection); the frames after that are plain
envelopes. A frame signed per message (hive_core.auth) is still accepted in reply: it is how
a listener refuses a connection it could not authenticate (an ERROR envelope, signed so that
it cannot be forged). A pooled connection whose listener proved a key that a rotation has
since retired is closed, not reused.

The serving half lives in :mod:`hive_core.transports.unix_listener`. A client-only instance
(the CLI) never binds and never creates ``run_dir``.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hive_core.auth import MAGIC as SIGNED_MAGIC
from hive_core.auth import AuthRejected, MessageAuth, ephemeral
from hive_core.config import MAX_MESSAGE_BYTES, CoreSettings
from hive_core.errors import (
    ConfigError,
    ConnectionLost,
    DeadlineExceeded,
    MessageRejected,
    TransportError,
)
from hive_core.messages import Envelope, MessageType, encode
from hive_core.transports.base import Handler, Reply, check_request, unseal
from hive_core.transports.conn_auth import ClientHandshake, ConnectionAuth, is_handshake
from hive_core.transports.framing import FrameReader, frame
from hive_core.transports.listener_limits import ListenerLimits

if TYPE_CHECKING:
    from hive_core.hive_config import HiveConfig
from hive_core.transports.unix_listener import UnixListener, socket_path

log = logging.getLogger("hive_core.transports.unix")

POOL_PER_PEER = 4
DRAIN_TIMEOUT = 5.0
RECV_CHUNK = 256 * 1024


def _alive(sock: socket.socket) -> bool:
    """An idle pooled connection is reusable only if the peer has not closed it."""
    try:
        sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False  # end of stream, or stray bytes that would desynchronise the stream


class _Call:
    """One envelope in flight: its bytes out, its reply in, and its outcome."""

    __slots__ = ("env", "handshake", "out", "peer_kid", "pooled", "reader", "received",
                 "request", "result", "retried", "send_error", "sent", "sock")

    def __init__(self, env: Envelope, max_bytes: int) -> None:
        self.env = env
        self.request = b""  # the request's frame
        self.out = memoryview(b"")  # what is being sent: the request, or a handshake frame
        self.sent = 0
        self.sock: socket.socket | None = None
        self.pooled = False  # sock came from the idle pool (the peer may have closed it)
        self.handshake: ClientHandshake | None = None  # sock's, until the listener proved
        self.peer_kid: bytes | None = None  # the key sock's listener proved
        self.retried = False  # already sent again once on a fresh connection
        self.received = 0  # bytes of the reply read so far
        self.reader = FrameReader(max_bytes)
        self.result: Reply | None = None
        self.send_error: OSError | None = None

    def may_resend(self) -> bool:
        """Whether a failure now may be retried on a fresh connection (module docstring)."""
        return self.pooled and not self.retried and self.received == 0

    def use(self, sock: socket.socket, pooled: bool, peer_kid: bytes | None,
            handshake: ClientHandshake | None) -> None:
        """Send on ``sock``: the request at once (pooled, or no handshake needed), or the
        HELLO of ``handshake`` first."""
        self.sock, self.pooled, self.peer_kid, self.handshake = sock, pooled, peer_kid, handshake
        self.out = memoryview(self.request if handshake is None else frame(handshake.hello))
        self.sent, self.send_error = 0, None


class UnixSocketTransport:
    """ShardTransport over Unix domain sockets in one folder (see module docstring)."""

    def __init__(
        self, run_dir: Path | str, *, max_message_bytes: int = MAX_MESSAGE_BYTES,
        pool_per_peer: int = POOL_PER_PEER, drain_timeout: float = DRAIN_TIMEOUT,
        limits: ListenerLimits | None = None, auth: MessageAuth | None = None,
        conn_auth: ConnectionAuth | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        # The keys that authenticate connections (hive_core.transports.conn_auth) and count
        # refusals: the hive's policy from registry.open_transport, or this process's own key.
        self.auth = auth if auth is not None else ephemeral()
        self.conn_auth = conn_auth if conn_auth is not None else ConnectionAuth(self.auth)
        self.max_message_bytes = max_message_bytes
        self.pool_per_peer = pool_per_peer
        self.drain_timeout = drain_timeout
        self.limits = limits or ListenerLimits()
        self._listeners: dict[str, UnixListener] = {}
        # Idle pooled connections by peer, each with the key id its listener proved.
        self._idle: dict[str, list[tuple[socket.socket, bytes | None]]] = {}
        self._lock = threading.Lock()
        self._closed = False
        # Requests sent again because their pooled connection had been closed by the peer
        # before it read them (see the module docstring).
        self.resent = 0

    # -- serving ------------------------------------------------------------------------------
    def bind(self, agent_id: str, handler: Handler) -> None:
        """Listen as ``agent_id``; raises AgentError if a live process already does."""
        with self._lock:
            if self._closed:
                raise ConnectionLost("the transport is closed")
            if agent_id in self._listeners:
                raise ConfigError(f"{agent_id!r} is already bound on this transport")
            self._listeners[agent_id] = UnixListener(
                self.run_dir, agent_id, handler, max_message_bytes=self.max_message_bytes,
                drain_timeout=self.drain_timeout, limits=self.limits, auth=self.auth,
                conn_auth=self.conn_auth)

    def unbind(self, agent_id: str) -> None:
        """Stop serving ``agent_id``: requests in flight finish, then the socket file goes."""
        with self._lock:
            listener = self._listeners.pop(agent_id, None)
        if listener is not None:
            listener.close()

    def socket_path(self, agent_id: str) -> Path:
        return socket_path(self.run_dir, agent_id)

    def connections_accepted(self, agent_id: str) -> int:
        """How many connections ``agent_id``'s listener accepted (shows pooling works)."""
        with self._lock:
            listener = self._listeners.get(agent_id)
        return listener.accepted if listener is not None else 0

    def connection_stats(self, agent_id: str) -> dict[str, Any] | None:
        """``agent_id``'s listener counters (open, refused, idle_closed, ...), if bound here."""
        with self._lock:
            listener = self._listeners.get(agent_id)
        return listener.stats() if listener is not None else None

    # -- requesting ---------------------------------------------------------------------------
    def request(self, envelopes: Sequence[Envelope], timeout: float) -> list[Reply]:
        deadline = check_request(self._closed, timeout)
        calls = [_Call(env, self.max_message_bytes) for env in envelopes]
        for call in calls:
            try:
                call.request = frame(encode(call.env, self.max_message_bytes))  # as base.seal
                self._checkout(call, deadline)
            except TransportError as exc:
                call.result = exc
        self._pump([c for c in calls if c.result is None], deadline, timeout)
        return [c.result for c in calls if c.result is not None]

    def _checkout(self, call: _Call, deadline: float) -> None:
        """Give ``call`` a connection to its target: an idle pooled one whose peer is still
        there and whose key is still accepted, else a new one (its handshake first)."""
        target = call.env.target
        with self._lock:
            pool = self._idle.get(target, [])
            while pool:
                sock, kid = pool.pop()
                if _alive(sock) and self.conn_auth.accepts(kid):
                    call.use(sock, True, kid, None)
                    return
                sock.close()
        call.use(self._connect(target, deadline), False, None, self.conn_auth.client())

    def _connect(self, target: str, deadline: float) -> socket.socket:
        try:
            path = socket_path(self.run_dir, target)
        except ConfigError as exc:
            raise ConnectionLost(str(exc)) from exc
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            sock.connect(str(path))
        except FileNotFoundError as exc:
            sock.close()
            raise ConnectionLost(f"no agent {target!r} is listening (no {path})") from exc
        except ConnectionRefusedError as exc:
            sock.close()
            raise ConnectionLost(f"agent {target!r} refused the connection at {path}") from exc
        except TimeoutError as exc:
            sock.close()
            raise DeadlineExceeded(f"{target} did not accept a connection in time") from exc
        except OSError as exc:
            sock.close()
            raise ConnectionLost(f"cannot reach agent {target!r} at {path}: {exc}") from exc
        sock.setblocking(False)
        return sock

    def _checkin(self, target: str, sock: socket.socket, kid: bytes | None) -> None:
        with self._lock:
            pool = self._idle.setdefault(target, [])
            if not self._closed and len(pool) < self.pool_per_peer:
                pool.append((sock, kid))
                return
        sock.close()

    def _pump(self, calls: list[_Call], deadline: float, timeout: float) -> None:
        """Send every frame and read every reply until all are done or the deadline passes."""
        if not calls:
            return
        with selectors.DefaultSelector() as sel:
            for call in calls:
                assert call.sock is not None
                sel.register(call.sock, selectors.EVENT_WRITE, call)
            while sel.get_map():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                for key, _events in sel.select(remaining):
                    call = key.data
                    if self._step(call, sel, deadline):
                        sel.unregister(key.fileobj)
                        self._finish(call)
        for call in calls:
            if call.result is None:
                call.result = DeadlineExceeded(
                    f"{call.env.target} did not answer within {timeout:g}s")
                self._discard(call)

    def _step(self, call: _Call, sel: selectors.BaseSelector, deadline: float) -> bool:
        """Advance one call on a readiness event; True once it has an outcome."""
        sock = call.sock
        assert sock is not None
        try:
            if call.sent < len(call.out) and call.send_error is None:
                try:
                    call.sent += sock.send(call.out[call.sent:])
                except (BrokenPipeError, ConnectionResetError) as exc:
                    # The peer may have refused the frame and closed: read its ERROR reply.
                    call.send_error = exc
                if call.sent >= len(call.out) or call.send_error is not None:
                    sel.modify(sock, selectors.EVENT_READ, call)
                return False
            try:
                chunk = sock.recv(min(call.reader.wanted(), RECV_CHUNK))
            except ConnectionResetError:  # closed with our request unread (module docstring)
                if call.may_resend():
                    return self._resend(call, sel, deadline)
                raise
            if not chunk:
                if call.send_error is not None and call.may_resend():
                    return self._resend(call, sel, deadline)
                why = call.send_error or "closed the connection before replying"
                call.result = ConnectionLost(f"{call.env.target}: {why}")
                return True
            call.received += len(chunk)
            body = call.reader.feed(chunk)
            if body is None:
                return False
            if call.handshake is not None and is_handshake(body):
                return self._prove(call, call.handshake, body, sel)
            call.result = self._reply(call, body)
            return True
        except BlockingIOError:
            return False
        except MessageRejected as exc:
            call.result = exc
            return True
        except OSError as exc:
            call.result = ConnectionLost(f"{call.env.target}: {exc}")
            return True

    def _prove(self, call: _Call, handshake: ClientHandshake, challenge: bytes,
               sel: selectors.BaseSelector) -> bool:
        """The listener's CHALLENGE: check its proof, then send ours and the request behind
        it. False: in flight; True: the listener is not one of the hive's (refused)."""
        try:
            proof = handshake.answer(challenge)
        except AuthRejected as exc:
            self.auth.count(exc)
            call.result = self._refused(call.env, exc)
            return True
        assert call.sock is not None
        call.handshake, call.peer_kid = None, handshake.peer_kid
        call.out = memoryview(b"".join((frame(proof), call.request)))
        call.sent = 0
        sel.modify(call.sock, selectors.EVENT_WRITE, call)
        return False

    def _resend(self, call: _Call, sel: selectors.BaseSelector, deadline: float) -> bool:
        """Send ``call`` again on a fresh connection: its pooled one was closed by the peer
        before the peer read the request. False: in flight again; True: it failed (the
        caller then unregisters and closes the old connection)."""
        log.debug("%s closed an idle pooled connection before reading a request; sending it "
                  "again on a new connection", call.env.target)
        call.retried = True
        with self._lock:
            self.resent += 1
        try:
            fresh = self._connect(call.env.target, deadline)
        except TransportError as exc:
            call.result = exc
            return True
        assert call.sock is not None
        sel.unregister(call.sock)
        self._discard(call)
        call.use(fresh, False, None, self.conn_auth.client())
        sel.register(fresh, selectors.EVENT_WRITE, call)
        return False

    def _reply(self, call: _Call, body: bytes) -> Reply:
        """The reply envelope: plain on an authenticated connection; verified per message
        when signed (a listener's refusal) or when the connection is not authenticated."""
        request = call.env
        signed = call.handshake is not None or body[:4] == SIGNED_MAGIC
        try:
            reply = unseal(self.auth if signed else None, body, self.max_message_bytes,
                           reply=True)
        except AuthRejected as exc:  # e.g. the refusal of a listener with another key
            return self._refused(request, exc)
        if reply.correlation_id == request.msg_id:
            return reply
        if reply.type == MessageType.ERROR and not reply.correlation_id:
            return reply  # the peer refused our frame before it could read its msg_id
        return MessageRejected(
            f"{request.target} answered {reply.correlation_id!r}, expected {request.msg_id!r}")

    @staticmethod
    def _refused(request: Envelope, exc: AuthRejected) -> MessageRejected:
        return MessageRejected(f"{request.target}: reply rejected ({exc.reason}): {exc}; "
                               "do both sides have the hive's secret?")

    def _finish(self, call: _Call) -> None:
        """Pool the connection after a clean reply; close it after anything else."""
        reply = call.result
        clean = (isinstance(reply, Envelope) and reply.correlation_id == call.env.msg_id
                 and call.send_error is None and call.handshake is None)
        if clean and call.sock is not None:
            self._checkin(call.env.target, call.sock, call.peer_kid)
            call.sock = None
        else:
            self._discard(call)

    @staticmethod
    def _discard(call: _Call) -> None:
        if call.sock is not None:
            with contextlib.suppress(OSError):
                call.sock.close()
            call.sock = None

    # -- lifecycle ----------------------------------------------------------------------------
    def close(self) -> None:
        """Unbind every agent (draining requests in flight) and close pooled connections."""
        with self._lock:
            self._closed = True
            agents = list(self._listeners)
        for agent_id in agents:
            self.unbind(agent_id)
        with self._lock:
            idle, self._idle = self._idle, {}
        for pool in idle.values():
            for sock, _kid in pool:
                sock.close()


def open_transport(config: HiveConfig, auth: MessageAuth | None = None
                   ) -> UnixSocketTransport:
    """The ``local`` entry of hive_core.transports.registry: sockets in the hive's run/, the
    listener limits from the ``AMPLIHACK_LISTENER_*`` settings."""
    limits = ListenerLimits.from_settings(CoreSettings.from_env())
    return UnixSocketTransport(config.run_dir, limits=limits, auth=auth)
