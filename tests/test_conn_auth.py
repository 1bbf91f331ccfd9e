"""Per-connection authentication on Unix sockets (hive_core.transports.conn_auth).

The handshake's bytes are checked against an independent rendering of the documented wire
format (tests/handshake_helpers.py, standard-library hmac); a forged connection -- no
handshake, a bad proof, another hive's key, a replayed recording of a genuine handshake --
runs nothing and is counted; a rogue listener at the socket path can neither read a request
nor feed an answer; a key that a rotation retires stops the connections that proved it,
while the client's requests go on over new ones; the handshake code only ever refuses
arbitrary bytes (hypothesis).
"""

from __future__ import annotations

import contextlib
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from handshake_helpers import MAGIC, handshake, hello, listener_mac_ok, mac, proof
from hypothesis import given, settings
from hypothesis import strategies as st

from hive_core.auth import AuthRejected, BadMac, KeySet, MessageAuth, Unsigned, key_id, new_key
from hive_core.errors import MessageRejected
from hive_core.messages import Envelope, MessageType, decode, encode
from hive_core.transports.base import check_reply
from hive_core.transports.conn_auth import ClientHandshake, ListenerHandshake
from hive_core.transports.framing import frame, read_frame
from hive_core.transports.unix import UnixSocketTransport

KEY, OTHER = new_key(), new_key()


class Keys:
    """A KeySource whose keys a test changes (a rotation, as the secret file's reload)."""

    def __init__(self, signing: bytes, *accepted: bytes) -> None:
        self.keyset = KeySet(signing, accepted or (signing,))

    def keys(self) -> KeySet:
        return self.keyset


def policy(signing: bytes = KEY, *accepted: bytes) -> MessageAuth:
    return MessageAuth(Keys(signing, *accepted))


def query(payload: dict | None = None) -> Envelope:
    return Envelope(MessageType.SHARD_QUERY, "h", "client", "a", payload or {})


@pytest.fixture
def run_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="ahca", dir="/tmp") as tmp:  # short socket paths
        yield Path(tmp)


# -- the wire format, against the independent rendering -----------------------------------------
def test_both_halves_produce_the_documented_bytes() -> None:
    keys = KeySet(KEY, (KEY,))
    listener = ListenerHandshake()
    body, _nonce = hello(KEY)
    challenge = listener.step(body, keys)
    assert challenge is not None and challenge[:8] == MAGIC + key_id(KEY)
    assert listener_mac_ok(KEY, body, challenge)
    assert listener.step(proof(KEY, body, challenge), keys) is None
    assert listener.peer_kid == key_id(KEY)

    client = ClientHandshake(keys)
    assert client.hello[:8] == MAGIC + key_id(KEY) and len(client.hello) == 24
    answer = ListenerHandshake().step(client.hello, keys)
    assert answer is not None
    assert client.answer(answer) == proof(KEY, client.hello, answer)
    assert client.peer_kid == key_id(KEY)


def test_a_rotation_step_authenticates_across_signing_keys_and_a_retired_key_is_refused(
) -> None:
    """Mid-rotation the client signs with the next key while the listener still signs with
    the current one: each accepts the other's. Once the old key is retired, it is refused."""
    old, nxt = KEY, OTHER
    client_keys, listener_keys = KeySet(nxt, (old, nxt)), KeySet(old, (old, nxt))
    client, listener = ClientHandshake(client_keys), ListenerHandshake()
    challenge = listener.step(client.hello, listener_keys)
    assert challenge is not None
    assert listener.step(client.answer(challenge), listener_keys) is None
    with pytest.raises(BadMac):  # the listener no longer accepts the client's old key
        ListenerHandshake().step(ClientHandshake(KeySet(old, (old,))).hello,
                                 KeySet(nxt, (nxt,)))
    answer = ListenerHandshake().step(hello(nxt)[0], KeySet(old, (old, nxt)))
    with pytest.raises(BadMac):  # the client does not accept the listener's old key
        ClientHandshake(KeySet(nxt, (nxt,))).answer(answer)  # type: ignore[arg-type]


@pytest.mark.parametrize(("second", "reason"), [
    (lambda body, ch: MAGIC + bytes(32), BadMac),  # a proof of nothing
    (lambda body, ch: MAGIC + mac(OTHER, b"C", MAGIC + body[4:24] + ch[4:24]), BadMac),
    (lambda body, ch: MAGIC + mac(KEY, b"L", MAGIC + body[4:24] + ch[4:24]), BadMac),  # reflected
    (lambda body, ch: proof(KEY, body, ch)[:-1], Unsigned),  # cut short
    (lambda body, ch: encode(query()), Unsigned),  # no proof: straight to a request
])
def test_a_wrong_proof_is_refused(second, reason) -> None:
    keys = KeySet(KEY, (KEY,))
    listener = ListenerHandshake()
    body, _ = hello(KEY)  # the key id is public: anyone can name it
    challenge = listener.step(body, keys)
    with pytest.raises(reason):
        listener.step(second(body, challenge), keys)
    assert listener.peer_kid is None


# -- fuzz: arbitrary handshake bytes are refused, never crash -------------------------------------
_KEYS = KeySet(KEY, (KEY,))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(
    st.binary(max_size=80),
    st.binary(min_size=20, max_size=20).map(lambda b: MAGIC + key_id(KEY) + b[:16]),
    st.binary(min_size=32, max_size=32).map(lambda b: MAGIC + b),
), min_size=1, max_size=3))
def test_the_listener_half_only_ever_refuses_arbitrary_frames(frames: list[bytes]) -> None:
    listener = ListenerHandshake()
    try:
        for data in frames:
            if listener.step(data, _KEYS) is None:
                pytest.fail("arbitrary bytes authenticated a connection")
    except AuthRejected:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80), st.integers(0, 55), st.integers(0, 255))
def test_the_client_half_only_ever_refuses_arbitrary_or_mutated_challenges(
        junk: bytes, position: int, value: int) -> None:
    client = ClientHandshake(_KEYS)
    genuine = ListenerHandshake().step(client.hello, _KEYS)
    assert genuine is not None
    mutated = bytearray(genuine)
    mutated[position] ^= value or 1
    for data in (junk, bytes(mutated)):
        with pytest.raises(AuthRejected):
            ClientHandshake(_KEYS).answer(data)  # a fresh nonce: even a genuine one fails
        with pytest.raises(AuthRejected):
            client.answer(data)


# -- real sockets ------------------------------------------------------------------------------
def exchange(path: Path, *frames: bytes) -> list[bytes | None]:
    """Send each frame on one new connection, reading one frame back after each."""
    out: list[bytes | None] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5.0)
        sock.connect(str(path))
        for data in frames:
            try:
                sock.sendall(data)
                out.append(read_frame(sock, 1 << 20, 5.0))
            except (ConnectionError, TimeoutError):
                out.append(None)
    return out


def test_forged_connections_run_nothing_and_are_counted(run_dir: Path) -> None:
    ran: list[Envelope] = []
    server = UnixSocketTransport(run_dir, auth=policy())
    server.bind("a", lambda env: (ran.append(env), env.reply({"ran": True}))[1])
    path = run_dir / "a.sock"
    request = frame(encode(query({"forged": True})))
    refusal = {reason: f"message rejected: {reason}" for reason in ("unsigned", "bad_mac")}
    try:
        # A genuine connection, recorded: it works.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5.0)
            sock.connect(str(path))
            recording = handshake(sock, KEY)
            sock.sendall(request)
            assert decode(read_frame(sock, 1 << 20)).payload == {"ran": True}
        assert len(ran) == 1
        other_hello = frame(hello(OTHER)[0])
        attacks = {
            "no handshake": ("unsigned", [request]),
            "signed per message": ("unsigned", [frame(policy().sign(encode(query())))]),
            "another hive's key": ("bad_mac", [other_hello, request]),
            "bad proof": ("bad_mac", [frame(hello(KEY)[0]), frame(MAGIC + bytes(32)) + request]),
            "replayed recording": ("bad_mac", [recording[0], recording[1] + request]),
        }
        for name, (reason, frames) in attacks.items():
            replies = exchange(path, *frames)
            refused = [r for r in replies if r is not None and r[:4] != MAGIC]
            assert len(refused) == 1, (name, replies)
            error = decode(policy().verify(refused[0]))  # signed by the listener
            assert error.payload["error"] == refusal[reason], name
            assert replies[-1] is None or replies[-1] == refused[0], name  # then closed
        assert len(ran) == 1  # none of the forged requests ran
        counted = server.auth.rejected()
        assert counted == {"bad_mac": 3, "stale": 0, "replayed": 0, "unsigned": 2}, counted
    finally:
        server.close()


class RogueListener:
    """A process bound at the socket path without the hive's key: it names the hive's key
    id (public) and answers with a made-up proof, or skips the handshake; then it tries to
    feed a reply. Records every byte a client sent it."""

    def __init__(self, path: Path, skip_handshake: bool) -> None:
        self.skip = skip_handshake
        self.received = b""
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(4)
        self.sock.settimeout(5.0)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with self.sock.accept()[0] as conn:
            conn.settimeout(2.0)
            first = read_frame(conn, 1 << 20, 2.0) or b""
            self.received += first
            fake = Envelope(MessageType.SHARD_RESPONSE, "h", "a", "client", {"fake": True})
            if not self.skip:
                conn.sendall(frame(MAGIC + key_id(KEY) + bytes(16) + bytes(32)))
            conn.sendall(frame(encode(fake)))
            try:
                while chunk := conn.recv(65536):
                    self.received += chunk
            except (TimeoutError, ConnectionError):
                pass


@pytest.mark.parametrize(("skip", "reason"), [(False, "bad_mac"), (True, "unsigned")])
def test_a_rogue_listener_reads_no_request_and_feeds_no_answer(run_dir: Path, skip: bool,
                                                              reason: str) -> None:
    rogue = RogueListener(run_dir / "a.sock", skip)
    client = UnixSocketTransport(run_dir, auth=policy())
    try:
        [reply] = client.request([query({"secret question": 42})], 5.0)
        assert isinstance(reply, MessageRejected) and f"({reason})" in str(reply), reply
        rogue.thread.join(10)
        assert len(rogue.received) == 24 and rogue.received[:4] == MAGIC  # the HELLO only
        assert client.auth.rejected()[reason] == 1
    finally:
        client.close()
        rogue.sock.close()


def test_a_retired_key_stops_its_pooled_connections_and_requests_go_on(run_dir: Path) -> None:
    server_keys, client_keys = Keys(KEY), Keys(KEY)
    server = UnixSocketTransport(run_dir, auth=MessageAuth(server_keys))
    client = UnixSocketTransport(run_dir, auth=MessageAuth(client_keys))
    server.bind("a", lambda env: env.reply({"ok": env.payload}))
    leaked = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # someone who held the key
    try:
        leaked.settimeout(5.0)
        leaked.connect(str(run_dir / "a.sock"))
        handshake(leaked, KEY)
        assert check_reply(client.request([query({"n": 1})], 5.0)[0]).payload == {
            "ok": {"n": 1}}
        assert server.connections_accepted("a") == 2
        # The rotation is done: both sides now hold only the new key.
        server_keys.keyset = client_keys.keyset = KeySet(OTHER, (OTHER,))
        leaked.sendall(frame(encode(query({"n": "leaked"}))))
        with contextlib.suppress(ConnectionResetError):  # a reset: our bytes stayed unread
            assert read_frame(leaked, 1 << 20, 5.0) is None  # closed, the request unread
        # The client's pooled connection proved the old key: not reused, a new one is made.
        assert check_reply(client.request([query({"n": 2})], 5.0)[0]).payload == {
            "ok": {"n": 2}}
        assert server.connections_accepted("a") == 3
        assert sum(server.auth.rejected().values()) == 0  # a retirement is not a forgery
    finally:
        leaked.close()
        client.close()
        server.close()


def test_a_pooled_connection_retired_under_a_request_is_sent_again(run_dir: Path) -> None:
    """The listener retires the key first (the client still accepts it): the client reuses
    its pooled connection, the listener closes it with the request unread, and the client
    sends it once more on a new connection, authenticated under the new key."""
    server_keys, client_keys = Keys(KEY), Keys(KEY)
    server = UnixSocketTransport(run_dir, auth=MessageAuth(server_keys))
    client = UnixSocketTransport(run_dir, auth=MessageAuth(client_keys))
    ran: list[int] = []
    server.bind("a", lambda env: (ran.append(env.payload["n"]), env.reply({}))[1])
    try:
        check_reply(client.request([query({"n": 1})], 5.0)[0])
        client_keys.keyset = KeySet(OTHER, (KEY, OTHER))  # mid-rotation on the client
        server_keys.keyset = KeySet(OTHER, (OTHER,))  # ... done on the listener
        check_reply(client.request([query({"n": 2})], 5.0)[0])
        assert ran == [1, 2] and client.resent == 1
        assert server.connections_accepted("a") == 2
    finally:
        client.close()
        server.close()
