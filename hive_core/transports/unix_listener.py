"""The serving half of the Unix-socket transport: one listening socket per bound agent.

Why one selector loop and fixed worker pools, not a thread per connection: 20,000 idle
connections to one agent once made it spawn ~19,800 threads and stop answering for a
minute. Here one loop thread accepts connections and reads frames from all of them
(non-blocking, :class:`~hive_core.transports.framing.FrameReader`); each complete request
goes to a worker pool of fixed size, which decodes it, runs the handler and sends the reply.
Threads are bounded by the pools whatever the number of connections, and the
:class:`~hive_core.transports.listener_limits.ListenerLimits` bound the rest: a connection
cap (over it a new connection gets an ERROR frame and is closed, counted as refused), an
idle timeout (a connection that sends nothing is closed, counted), a deadline for a frame
that has started. The counters are in :meth:`UnixListener.stats` (and so in the agent's
status reply).

Order: a connection is not read while its request runs, so the requests of one connection
are served one at a time, in order (clients send one at a time anyway), and no client can
queue more than one request's work. Handlers of different connections run in parallel (the
ShardTransport contract allows it).

Why two pools: a request that fans out to other agents (LEARN, ASK, FORGET) waits for their
shard requests. Sharing one pool, agents each full of fan-out requests would wait on each
other's shard requests until their deadlines. Shard requests never wait on another agent,
so with a pool of their own they are always served; fan-out requests queue in theirs.

Authentication: each accepted connection first passes the hive's handshake
(:mod:`hive_core.transports.conn_auth`), run in the loop thread (a few microseconds: two
HMACs); until it has, a frame may be at most ``conn_auth.MAX_FRAME`` bytes, and a connection
whose handshake fails is counted, sent one signed ERROR frame and closed, nothing on it
decoded. After it, requests and replies are plain envelopes. Before each new frame the loop
checks that the key the client proved is still accepted (a rotation may have retired it);
if not, it closes the connection with the frame unread, so the client sends it again on a
new connection.

The socket file appears only once the socket is listening (it is bound under a temporary name,
chmod 0600, then hard-linked into place, which also fails atomically if another live process
holds the name). A live socket file therefore means "ready to serve".

Shutdown (:meth:`UnixListener.close`) stops accepting, closes idle connections, lets requests
already read finish and send their replies (bounded by ``drain_timeout``), then removes the
socket file, but only if it is still ours.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from hive_core.auth import AuthRejected, MessageAuth, Unsigned, ephemeral
from hive_core.errors import AgentError, ConfigError, MessageRejected
from hive_core.messages import Envelope, MessageType, encode
from hive_core.transports.base import Handler, reply_bytes, unseal
from hive_core.transports.conn_auth import MAX_FRAME as HANDSHAKE_MAX_FRAME
from hive_core.transports.conn_auth import ConnectionAuth, ListenerHandshake
from hive_core.transports.framing import FrameReader, FrameTooLarge, frame, send_frame
from hive_core.transports.listener_limits import ListenerLimits, effective_cap
from hive_core.transports.notices import Notices

_T = TypeVar("_T")
log = logging.getLogger("hive_core.transports.unix")

MAX_SOCKET_PATH = 107  # sun_path is 108 bytes including the terminating NUL (Linux)
BACKLOG = 512
RECV_CHUNK = 256 * 1024
# Requests that wait on other agents' shard requests run in a pool of their own (see above).
FANOUT_TYPES = frozenset({MessageType.LEARN, MessageType.ASK, MessageType.FORGET,
                          MessageType.HIVE_STORE, MessageType.HIVE_QUERY})


def socket_path(run_dir: Path, agent_id: str) -> Path:
    """Where ``agent_id`` listens; refuses names that would escape ``run_dir``."""
    if not agent_id or "/" in agent_id or agent_id.startswith(".") or "\0" in agent_id:
        raise ConfigError(f"invalid agent id {agent_id!r} for a socket name")
    return run_dir / f"{agent_id}.sock"


def _check_length(path: Path) -> None:
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise ConfigError(
            f"socket path {path} is longer than {MAX_SOCKET_PATH} bytes; "
            "use a shorter AMPLIHACK_HOME"
        )


def _is_live(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def _rejection(auth: MessageAuth | None, agent_id: str, message: str) -> bytes:
    """An ERROR frame for a message we could not even parse (so it has no msg_id): signed
    on a connection not (yet) authenticated, so the client can tell our refusal from a
    forged one; plain (``auth`` None) on an authenticated one."""
    env = encode(Envelope(MessageType.ERROR, hive="", sender=agent_id, target="",
                          payload={"error": message}))
    return env if auth is None else auth.sign(env)


class _Conn:
    """One accepted connection: its frame parser, its handshake, what the timeouts need."""

    __slots__ = ("busy", "handshake", "kid", "last_active", "reader", "sock", "started")

    def __init__(self, sock: socket.socket, max_bytes: int, now: float,
                 handshake: ListenerHandshake | None) -> None:
        self.sock = sock
        # Until the handshake is done (None) its frames are small (conn_auth.MAX_FRAME).
        self.handshake = handshake
        self.reader = FrameReader(max_bytes if handshake is None else HANDSHAKE_MAX_FRAME)
        self.kid: bytes | None = None  # the key the client proved (None: no handshake)
        self.last_active = now
        self.started: float | None = None  # when the frame being read began
        self.busy = False  # a request of it is queued or running (it is not being read)


class UnixListener:
    """Serves ``handler`` for ``agent_id`` on ``run_dir/<agent_id>.sock``."""

    def __init__(
        self, run_dir: Path, agent_id: str, handler: Handler, *,
        max_message_bytes: int, drain_timeout: float, limits: ListenerLimits | None = None,
        auth: MessageAuth | None = None, conn_auth: ConnectionAuth | None = None,
    ) -> None:
        self.agent_id = agent_id
        self.handler = handler
        # Keys for the handshakes (and refusals), and the counters of refused connections.
        self.auth = auth if auth is not None else ephemeral()
        self.conn_auth = conn_auth if conn_auth is not None else ConnectionAuth(self.auth)
        self.path = socket_path(run_dir, agent_id)
        self.max_message_bytes = max_message_bytes
        self.drain_timeout = drain_timeout
        self.limits = limits or ListenerLimits()
        self.max_connections = effective_cap(self.limits.max_connections)
        if self.max_connections < self.limits.max_connections:
            log.info("%s: connection cap lowered from %d to %d (open-file limit)", agent_id,
                     self.limits.max_connections, self.max_connections)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self._conns: dict[int, _Conn] = {}  # by file descriptor
        self._ready: list[_Conn] = []  # answered; the loop reads them again
        self._notices = Notices(log)  # cap reached, EMFILE, forged messages: rate-limited
        self.accepted = 0  # connections accepted so far (clients pool them, so this stays low)
        self.refused = 0  # closed at once: the cap was reached
        self.idle_closed = 0  # closed after idle_timeout without a byte
        self.peak = 0  # most connections open at once
        self._busy = 0  # requests read and not yet answered (reported if the drain times out)
        self._workers = ThreadPoolExecutor(self.limits.workers,
                                           thread_name_prefix=f"unix-{agent_id}")
        self._fanout = ThreadPoolExecutor(self.limits.fanout_workers,
                                          thread_name_prefix=f"unix-fanout-{agent_id}")
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel = selectors.DefaultSelector()
        try:
            self._sock = self._listen(run_dir)
        except BaseException:
            self._release_resources()
            raise
        self._inode = os.stat(self.path).st_ino
        self._sock.setblocking(False)
        self._sel.register(self._sock, selectors.EVENT_READ, "accept")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._loop_thread = threading.Thread(
            target=self._loop, name=f"unix-loop-{agent_id}", daemon=True)
        self._loop_thread.start()

    # -- setup --------------------------------------------------------------------------------
    def _listen(self, run_dir: Path) -> socket.socket:
        run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(run_dir, 0o700)
        _check_length(self.path)
        if self.path.exists() or self.path.is_symlink():
            if _is_live(self.path):
                raise AgentError(f"agent {self.agent_id!r} is already listening at {self.path}")
            if not self.path.is_socket():
                raise ConfigError(f"{self.path} exists and is not a socket; remove it first")
            log.warning("removing stale socket %s (no process answers on it)", self.path)
            self.path.unlink(missing_ok=True)
        tmp = run_dir / f".{uuid.uuid4().hex[:12]}.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(tmp))
            os.chmod(tmp, 0o600)
            sock.listen(BACKLOG)
            try:
                os.link(tmp, self.path)  # atomic claim: fails if someone else got there first
            except FileExistsError as exc:
                raise AgentError(
                    f"agent {self.agent_id!r} is already listening at {self.path}") from exc
        except BaseException:
            sock.close()
            raise
        finally:
            tmp.unlink(missing_ok=True)
        return sock

    def stats(self) -> dict[str, Any]:
        """Connection counters, for the agent's status reply."""
        with self._lock:
            return {"open": len(self._conns), "peak": self.peak, "accepted": self.accepted,
                    "refused": self.refused, "idle_closed": self.idle_closed,
                    "busy": self._busy, "max_connections": self.max_connections,
                    "idle_timeout": self.limits.idle_timeout}

    # -- the loop (one thread: accepts, reads, times out) -------------------------------------
    def _loop(self) -> None:
        tick = max(0.05, min(1.0, self.limits.idle_timeout / 4, self.limits.body_timeout / 4))
        next_sweep = time.monotonic() + tick
        try:
            while not self._stopping.is_set():
                for key, _events in self._sel.select(max(0.0, next_sweep - time.monotonic())):
                    if key.data == "accept":
                        self._accept()
                    elif key.data == "wake":
                        with contextlib.suppress(BlockingIOError):
                            self._wake_r.recv(4096)
                    else:
                        self._read(key.data)
                self._rearm()
                now = time.monotonic()
                if now >= next_sweep:
                    self._sweep(now)
                    next_sweep = now + tick
        except Exception:
            log.exception("%s: the listener loop failed; no longer serving", self.agent_id)
        finally:
            self._stop_loop()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._sock.accept()
            except BlockingIOError:
                return
            except OSError as exc:  # EMFILE and kin: the next loop round tries again
                self._notices.warn("accept", "%s: accept failed (%s); still serving",
                                   self.agent_id, exc)
                time.sleep(0.05)
                return
            with self._lock:
                full = len(self._conns) >= self.max_connections
                if full:
                    self.refused += 1
                else:
                    conn = _Conn(sock, self.max_message_bytes, time.monotonic(),
                                 self.conn_auth.listener())
                    self._conns[sock.fileno()] = conn
                    self.accepted += 1
                    self.peak = max(self.peak, len(self._conns))
            if full:
                self._refuse(sock)
                continue
            sock.setblocking(False)
            self._sel.register(sock, selectors.EVENT_READ, conn)

    def _refuse(self, sock: socket.socket) -> None:
        """Over the cap: one signed ERROR frame (if the socket takes it at once), then close
        (the close is the refusal either way)."""
        self._notices.warn("cap", "%s: %d connections open (the cap); refusing new ones",
                           self.agent_id, self.max_connections)
        with contextlib.suppress(OSError):
            sock.setblocking(False)
            self._send_now(sock, frame(_rejection(
                self.auth, self.agent_id, f"too many connections to {self.agent_id} "
                f"(cap {self.max_connections}); try again later")))
        sock.close()

    def _read(self, conn: _Conn) -> None:
        """Read what the connection has, up to the end of one frame; hand a full one on."""
        if conn.started is None and not self.conn_auth.accepts(conn.kid):
            log.info("%s: closing a connection whose key was rotated out", self.agent_id)
            self._drop(conn)  # its next frame unread: the client sends it again
            return
        try:
            chunk = conn.sock.recv(min(max(conn.reader.wanted(), 1), RECV_CHUNK))
        except BlockingIOError:
            return
        except OSError as exc:
            log.warning("%s: connection dropped: %s", self.agent_id, exc)
            self._drop(conn)
            return
        now = time.monotonic()
        if not chunk:
            if conn.started is not None:
                log.warning("%s: connection dropped: peer closed the connection mid-frame",
                            self.agent_id)
            self._drop(conn)
            return
        conn.last_active = now
        if conn.started is None:
            conn.started = now
        try:
            body = conn.reader.feed(chunk)
        except FrameTooLarge as exc:
            if conn.handshake is not None:
                self._refuse_connection(conn, Unsigned(f"the connection's first {exc}"))
                return
            log.warning("%s: rejected a frame: %s", self.agent_id, exc)
            self._hand_off(conn, self._refuse_frame, str(exc))
            return
        if body is None:
            return
        conn.started = None
        if conn.handshake is not None:
            self._handshake(conn, conn.handshake, body)
        else:
            self._hand_off(conn, self._work, body)

    def _handshake(self, conn: _Conn, handshake: ListenerHandshake, body: bytes) -> None:
        """One handshake frame of ``conn``: answered, accepted, or the connection refused."""
        try:
            answer = handshake.step(body, self.conn_auth.keys())
        except AuthRejected as exc:
            self._refuse_connection(conn, exc)
            return
        if answer is not None:
            if not self._send_now(conn.sock, frame(answer)):
                self._drop(conn)
            return
        conn.handshake, conn.kid = None, handshake.peer_kid
        conn.reader.max_bytes = self.max_message_bytes

    def _refuse_connection(self, conn: _Conn, exc: AuthRejected) -> None:
        """A failed handshake: counted, one signed ERROR frame, closed; nothing decoded."""
        self.auth.count(exc)
        self._notices.warn("auth", "%s: refused an unauthenticated connection (%s): %s",
                           self.agent_id, exc.reason, exc)
        self._send_now(conn.sock, frame(_rejection(
            self.auth, self.agent_id, f"message rejected: {exc.reason}")))
        self._drop(conn)

    @staticmethod
    def _send_now(sock: socket.socket, data: bytes) -> bool:
        """Send a small frame from the loop thread without waiting: it fits the empty
        buffer of a connection that is still shaking hands (False: it did not)."""
        try:
            return sock.send(data) == len(data)
        except OSError:
            return False

    def _hand_off(self, conn: _Conn, job: Any, arg: Any) -> None:
        """Stop reading ``conn`` and give its request to the worker pool."""
        self._sel.unregister(conn.sock)
        conn.busy = True
        with self._lock:
            self._busy += 1
        self._workers.submit(job, conn, arg)

    def _rearm(self) -> None:
        """Read again the connections whose request was answered (or close them on stop)."""
        with self._lock:
            ready, self._ready = self._ready, []
        now = time.monotonic()
        for conn in ready:
            conn.busy = False
            conn.last_active = now
            if self._stopping.is_set():
                self._close(conn)
            else:
                self._sel.register(conn.sock, selectors.EVENT_READ, conn)

    def _sweep(self, now: float) -> None:
        """Close connections idle past idle_timeout, and frames unfinished past body_timeout."""
        idle_limit = now - self.limits.idle_timeout
        body_limit = now - self.limits.body_timeout
        with self._lock:
            conns = [c for c in self._conns.values() if not c.busy]
        for conn in conns:
            if conn.started is not None:
                if conn.started < body_limit:
                    log.warning("%s: connection dropped: a frame was not finished within %gs",
                                self.agent_id, self.limits.body_timeout)
                    self._drop(conn)
            elif conn.last_active < idle_limit:
                self._drop(conn, idle=True)

    def _drop(self, conn: _Conn, *, idle: bool = False) -> None:
        """Close a connection the loop is reading (loop thread only: it owns the selector)."""
        self._sel.unregister(conn.sock)
        self._close(conn, idle=idle)

    def _close(self, conn: _Conn, *, idle: bool = False) -> None:
        """Forget and close a connection that is not registered with the selector."""
        with self._lock:
            self._conns.pop(conn.sock.fileno(), None)
            if idle:
                self.idle_closed += 1
        conn.sock.close()

    def _stop_loop(self) -> None:
        """On stop: no more accepting; idle connections closed; busy ones finish first."""
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(self._sock)
        self._sock.close()
        with self._lock:
            idle = [c for c in self._conns.values() if not c.busy]
        for conn in idle:
            self._drop(conn)

    # -- the workers ----------------------------------------------------------------------------
    def _work(self, conn: _Conn, data: bytes) -> None:
        """Decode, answer and reply; a request that fans out moves to its own pool first."""
        decoded = self._guarded(conn, lambda: self._dispatch(data))
        if isinstance(decoded, Envelope) and decoded.type in FANOUT_TYPES:
            self._fanout.submit(self._answer_and_reply, conn, decoded)
        elif isinstance(decoded, Envelope):
            self._answer_and_reply(conn, decoded)
        elif decoded is not None:
            self._reply(conn, decoded)

    def _answer_and_reply(self, conn: _Conn, env: Envelope) -> None:
        reply = self._guarded(conn, lambda: self._answer(env))
        if reply is not None:
            self._reply(conn, reply)

    def _guarded(self, conn: _Conn, step: Callable[[], _T]) -> _T | None:
        """``step()``; on an unexpected error the connection is closed (None), the listener
        keeps serving, and the error is logged with its traceback."""
        try:
            return step()
        except Exception:
            log.exception("%s: request handling failed; connection closed, still serving",
                          self.agent_id)
            self._finished(conn, keep=False)
            return None

    def _refuse_frame(self, conn: _Conn, reason: str) -> None:
        """An oversize frame: its body is never read, so the stream cannot continue."""
        self._reply(conn, _rejection(None, self.agent_id, reason), keep=False)

    def _dispatch(self, data: bytes) -> bytes | Envelope:
        """The request decoded (its connection is authenticated: plain envelopes), or the
        ERROR reply refusing it."""
        try:
            return unseal(None, data, self.max_message_bytes)
        except MessageRejected as exc:
            log.warning("%s: rejected a message: %s", self.agent_id, exc)
            return _rejection(None, self.agent_id, str(exc))

    def _answer(self, env: Envelope) -> bytes:
        misrouted = None
        if env.target != self.agent_id:
            misrouted = f"message for {env.target!r} reached {self.agent_id!r}"
        return reply_bytes(self.handler, env, self.agent_id, self.max_message_bytes, None,
                           misrouted)

    def _reply(self, conn: _Conn, reply: bytes, *, keep: bool = True) -> None:
        try:
            conn.sock.settimeout(self.limits.body_timeout)
            send_frame(conn.sock, reply)
            conn.sock.setblocking(False)
        except OSError as exc:
            if not self._stopping.is_set():
                log.warning("%s: connection dropped: %s", self.agent_id, exc)
            keep = False
        self._finished(conn, keep=keep)

    def _finished(self, conn: _Conn, *, keep: bool) -> None:
        """A request is done: the loop reads the connection again, or it is closed."""
        if keep:
            with self._lock:
                self._ready.append(conn)
            self._wake()
        else:
            self._close(conn)
        with self._lock:
            self._busy -= 1
            self._drained.notify_all()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):  # full: the loop wakes anyway
            self._wake_w.send(b"\0")

    # -- shutdown -----------------------------------------------------------------------------
    def close(self) -> None:
        """Stop accepting, finish requests in flight (bounded), remove our socket file."""
        self._stopping.set()
        self._wake()
        self._loop_thread.join(timeout=2.0)
        deadline = time.monotonic() + self.drain_timeout
        with self._lock:
            while self._busy and time.monotonic() < deadline:
                self._drained.wait(max(0.0, deadline - time.monotonic()))
            busy = self._busy
        if busy:
            log.error("%s: %d request(s) still running after %.1fs; closing anyway",
                      self.agent_id, busy, self.drain_timeout)
        self._release_resources()
        with self._lock:
            left = list(self._conns.values())
            self._conns.clear()
        for conn in left:
            conn.sock.close()
        self._remove_socket_file()

    def _release_resources(self) -> None:
        self._workers.shutdown(wait=False, cancel_futures=True)
        self._fanout.shutdown(wait=False, cancel_futures=True)
        self._sel.close()
        self._wake_r.close()
        self._wake_w.close()

    def _remove_socket_file(self) -> None:
        try:
            if os.stat(self.path).st_ino == self._inode:
                self.path.unlink()
        except FileNotFoundError:
            pass
