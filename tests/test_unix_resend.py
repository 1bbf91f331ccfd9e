"""A pooled Unix-socket connection the peer closed while idle: the request goes out again
once on a fresh connection, but only when the peer never read it (hive_core.transports.unix).

The listener closes a connection idle past ``idle_timeout``; the client checks a pooled
connection for end of stream before reusing it, but the close can land right after that
check. The first test makes that race certain with a real listener process (short idle
timeout) by letting the client's check pass as if it ran just before the close; the others
use a scripted peer on a real socket to close at the other points that matter: with the
request unread (ECONNRESET: sent again), after reading it, and half way through the reply
(both may have run: reported, never sent again).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from handshake_helpers import serve_handshake

import hive_core.transports.unix as unix
from hive_core.auth import with_key
from hive_core.config import MAX_MESSAGE_BYTES
from hive_core.errors import ConnectionLost
from hive_core.messages import Envelope, MessageType
from hive_core.transports.base import check_reply, seal, unseal
from hive_core.transports.framing import frame, read_frame
from hive_core.transports.unix import UnixSocketTransport

KEY = bytes(range(32))
IDLE = 0.3  # the listener's idle timeout in the first test (seconds)

# The listener process: answers every request with its connection counters.
SERVER = f"""
import sys
from pathlib import Path
from hive_core.auth import with_key
from hive_core.transports.listener_limits import ListenerLimits
from hive_core.transports.unix import UnixSocketTransport
t = UnixSocketTransport(Path(sys.argv[1]), auth=with_key({KEY!r}),
                        limits=ListenerLimits(idle_timeout={IDLE}))
t.bind("a", lambda env: env.reply({{"stats": t.connection_stats("a")}}))
print("ready", flush=True)
sys.stdin.read()
t.close()
"""


def request(n: int = 0) -> Envelope:
    return Envelope(MessageType.SHARD_QUERY, "h", "client", "a", {"op": "search", "n": n})


@pytest.fixture
def run_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="ahrs", dir="/tmp") as tmp:  # short socket paths
        yield Path(tmp)


def test_a_request_on_a_connection_the_listener_closed_idle_is_sent_again(
        run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = Path(__file__).resolve().parents[1]
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(run_dir)], cwd=root,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    client = UnixSocketTransport(run_dir, auth=with_key(KEY))
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        first = check_reply(client.request([request()], 5.0)[0]).payload["stats"]
        assert first["accepted"] == 1 and first["idle_closed"] == 0
        time.sleep(IDLE * 4)  # the listener's sweep closes the idle connection meanwhile
        # The race: the pool's end-of-stream check ran just before the listener's close.
        monkeypatch.setattr(unix, "_alive", lambda sock: True)
        second = check_reply(client.request([request(1)], 5.0)[0]).payload["stats"]
        assert second["idle_closed"] == 1, second  # the listener did close it as idle
        assert second["accepted"] == 2  # ... and the request came on a new connection
        assert client.resent == 1
        third = check_reply(client.request([request(2)], 5.0)[0]).payload["stats"]
        assert third["accepted"] == 2  # the new connection is pooled and reused
    finally:
        client.close()
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=30)


class ScriptedPeer:
    """A peer on a real Unix socket: answers the first request, then treats the next one
    on that connection as ``second`` says, and answers anything on a new connection. Each
    connection is authenticated first (the hive's handshake, played independently), then
    carries plain envelopes."""

    def __init__(self, run_dir: Path, second: Callable[[socket.socket], None]) -> None:
        self.second = second
        self.accepted = 0
        self.requests: list[int] = []  # the "n" of every request read, in order
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(run_dir / "a.sock"))
        self.sock.listen(8)
        self.sock.settimeout(10.0)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def read(self, conn: socket.socket) -> Envelope:
        data = read_frame(conn, MAX_MESSAGE_BYTES, 5.0)
        assert data is not None
        env = unseal(None, data, MAX_MESSAGE_BYTES)
        self.requests.append(env.payload["n"])
        return env

    def answer(self, conn: socket.socket, env: Envelope) -> None:
        conn.sendall(frame(seal(None, env.reply({"n": env.payload["n"]}), MAX_MESSAGE_BYTES)))

    def _serve(self) -> None:
        with self.sock.accept()[0] as conn:
            self.accepted += 1
            assert serve_handshake(conn, KEY)
            self.answer(conn, self.read(conn))
            self.second(conn)
        try:
            extra, _ = self.sock.accept()
        except TimeoutError:
            return
        with extra:
            self.accepted += 1
            assert serve_handshake(extra, KEY)
            self.answer(extra, self.read(extra))


def close_unread(conn: socket.socket) -> None:
    """Close with the request waiting unread (the idle close landing after the send)."""
    conn.settimeout(5.0)
    conn.recv(1, socket.MSG_PEEK)  # it has arrived
    conn.close()


def close_after_reading(peer: ScriptedPeer) -> Callable[[socket.socket], None]:
    return lambda conn: (peer.read(conn), conn.close())  # type: ignore[func-returns-value]


def close_mid_reply(peer: ScriptedPeer) -> Callable[[socket.socket], None]:
    def run(conn: socket.socket) -> None:
        env = peer.read(conn)
        whole = frame(seal(None, env.reply({"n": 1}), MAX_MESSAGE_BYTES))
        conn.sendall(whole[: len(whole) // 2])
        conn.close()
    return run


def test_a_request_the_peer_closed_unread_is_sent_again_once(run_dir: Path) -> None:
    peer = ScriptedPeer(run_dir, close_unread)
    client = UnixSocketTransport(run_dir, auth=with_key(KEY))
    try:
        check_reply(client.request([request(0)], 5.0)[0])
        assert check_reply(client.request([request(1)], 5.0)[0]).payload == {"n": 1}
        peer.thread.join(10)
        assert peer.accepted == 2 and peer.requests == [0, 1] and client.resent == 1
    finally:
        client.close()
        peer.sock.close()


@pytest.mark.parametrize("script", [close_after_reading, close_mid_reply])
def test_a_request_the_peer_may_have_run_is_reported_not_sent_again(
        run_dir: Path, script: Callable[[ScriptedPeer], Callable[[socket.socket], None]]
) -> None:
    peer = ScriptedPeer(run_dir, lambda conn: None)
    peer.second = script(peer)
    client = UnixSocketTransport(run_dir, auth=with_key(KEY))
    try:
        peer.sock.settimeout(1.0)  # long enough for a resend to connect, were there one
        check_reply(client.request([request(0)], 5.0)[0])
        [reply] = client.request([request(1)], 5.0)
        assert isinstance(reply, ConnectionLost), reply
        peer.thread.join(10)
        assert peer.accepted == 1 and peer.requests == [0, 1] and client.resent == 0
    finally:
        client.close()
        peer.sock.close()
