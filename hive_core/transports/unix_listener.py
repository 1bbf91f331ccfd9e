"""The serving half of the Unix-socket transport: one listening socket per bound agent.

Why a thread per connection: clients keep a small pool of connections per peer and use each
for one request at a time, so a connection is a natural unit of concurrency. Handlers of
different connections run in parallel (the ShardTransport contract allows it); requests on one
connection are served in order.

The socket file appears only once the socket is listening (it is bound under a temporary name,
chmod 0600, then hard-linked into place, which also fails atomically if another live process
holds the name). A live socket file therefore means "ready to serve".

Shutdown (:meth:`UnixListener.close`) stops accepting, lets requests already read finish and
send their replies (bounded by ``drain_timeout``), then removes the socket file, but only if it
is still ours.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from hive_core.errors import AgentError, ConfigError, MessageRejected
from hive_core.messages import Envelope, MessageType, decode, encode
from hive_core.transports.base import Handler, reply_bytes
from hive_core.transports.framing import FrameTooLarge, frame, read_frame

log = logging.getLogger("hive_core.transports.unix")

MAX_SOCKET_PATH = 107  # sun_path is 108 bytes including the terminating NUL (Linux)
BACKLOG = 128
BODY_TIMEOUT = 30.0  # a started frame (either way) must be finished within this many seconds


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


def _rejection(agent_id: str, message: str) -> bytes:
    """An ERROR frame for a message we could not even parse (so it has no msg_id)."""
    env = Envelope(MessageType.ERROR, hive="", sender=agent_id, target="",
                   payload={"error": message})
    return encode(env)


class UnixListener:
    """Serves ``handler`` for ``agent_id`` on ``run_dir/<agent_id>.sock``."""

    def __init__(
        self, run_dir: Path, agent_id: str, handler: Handler, *,
        max_message_bytes: int, drain_timeout: float,
    ) -> None:
        self.agent_id = agent_id
        self.handler = handler
        self.path = socket_path(run_dir, agent_id)
        self.max_message_bytes = max_message_bytes
        self.drain_timeout = drain_timeout
        self._stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self.accepted = 0  # connections accepted so far (clients pool them, so this stays low)
        self._busy = 0  # requests read and not yet answered (reported if the drain times out)
        self._lock = threading.Lock()
        self._sock = self._listen(run_dir)
        self._inode = os.stat(self.path).st_ino
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"unix-accept-{agent_id}", daemon=True)
        self._accept_thread.start()

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

    # -- serving ------------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError as exc:
                if self._stopping.is_set():
                    return
                log.error("%s: accept failed (%s); still serving", self.agent_id, exc)
                time.sleep(0.05)
                continue
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True,
                                      name=f"unix-conn-{self.agent_id}")
            with self._lock:
                if self._stopping.is_set():
                    conn.close()
                    return
                self._conns.add(conn)
                self._threads.add(thread)
                self.accepted += 1
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        """One connection: read a frame, handle it, reply; until the peer or we close."""
        try:
            while True:
                try:
                    data = read_frame(conn, self.max_message_bytes, BODY_TIMEOUT)
                except FrameTooLarge as exc:
                    log.warning("%s: rejected a frame: %s", self.agent_id, exc)
                    conn.sendall(frame(_rejection(self.agent_id, str(exc))))
                    return  # the oversize body is never read, so the stream cannot continue
                if data is None:
                    return
                with self._lock:
                    self._busy += 1
                try:
                    reply = self._dispatch(data)
                    conn.settimeout(BODY_TIMEOUT)
                    conn.sendall(frame(reply))
                finally:
                    with self._lock:
                        self._busy -= 1
                if self._stopping.is_set():
                    return
        except OSError as exc:
            if not self._stopping.is_set():
                log.warning("%s: connection dropped: %s", self.agent_id, exc)
        except Exception:
            log.exception("%s: connection handler failed; connection closed, still serving",
                          self.agent_id)
        finally:
            with self._lock:
                self._conns.discard(conn)
                self._threads.discard(threading.current_thread())
            conn.close()

    def _dispatch(self, data: bytes) -> bytes:
        try:
            env = decode(data, self.max_message_bytes)
        except MessageRejected as exc:
            log.warning("%s: rejected a message: %s", self.agent_id, exc)
            return _rejection(self.agent_id, str(exc))
        misrouted = None
        if env.target != self.agent_id:
            misrouted = f"message for {env.target!r} reached {self.agent_id!r}"
        return reply_bytes(self.handler, env, self.agent_id, self.max_message_bytes, misrouted)

    # -- shutdown -----------------------------------------------------------------------------
    def close(self) -> None:
        """Stop accepting, finish requests in flight (bounded), remove our socket file."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes accept() on Linux
        self._sock.close()
        self._accept_thread.join(timeout=2.0)
        with self._lock:
            conns = list(self._conns)
        for conn in conns:  # idle readers see end-of-stream; busy ones still send their reply
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RD)
        deadline = time.monotonic() + self.drain_timeout
        with self._lock:
            threads = list(self._threads)
        for thread in threads:  # idle ones exit at once; busy ones after sending their reply
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        with self._lock:
            busy = self._busy
        if busy:
            log.error("%s: %d request(s) still running after %.1fs; closing anyway",
                      self.agent_id, busy, self.drain_timeout)
        self._remove_socket_file()

    def _remove_socket_file(self) -> None:
        try:
            if os.stat(self.path).st_ino == self._inode:
                self.path.unlink()
        except FileNotFoundError:
            pass
