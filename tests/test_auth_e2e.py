"""Authenticated messages with real agent processes, on Unix sockets and on the real Redis.

On Redis a forged message -- unsigned, signed with another hive's secret, tampered, stale,
or a replay of a genuine one -- changes nothing (no fact learned or retracted, no records
dumped) and is counted in the agent's ``status --json``. On a Unix socket, where each
connection is authenticated once (hive_core.transports.conn_auth), so is a forged
connection: no handshake, a bad proof, another hive's secret, a replayed recording of a
genuine handshake. Garbage and mutated frames and handshakes (hypothesis) never stop the
listener. A rotation keeps a running hive answering, and the old key is refused once it
is done. The secret never appears in any output or log. Agents are stopped with ``stop``; a
leftover is killed by its recorded PID.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from cli_helpers import cli_process, register_secret
from handshake_helpers import MAGIC as HANDSHAKE
from handshake_helpers import handshake, hello, mac, proof
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis_helpers import REDIS_URL

from hive_cli import supervisor
from hive_cli.agent_link import AgentLink
from hive_core import secret_store
from hive_core.auth import BROKER_WINDOW, MessageAuth, new_key, with_key
from hive_core.errors import MessageRejected
from hive_core.hive_config import HiveConfig
from hive_core.messages import Envelope, MessageType, decode, encode
from hive_core.transports.base import check_reply
from hive_core.transports.framing import HEADER, frame
from hive_core.transports.redis import RedisShardTransport
from hive_core.transports.redis_membership import RedisKeys
from hive_core.transports.registry import hive_auth
from hive_core.transports.unix import UnixSocketTransport

pytestmark = pytest.mark.slow

TURNS = "Alice Chen leads the Atlas project.\nThe Atlas deadline moved to 2024-06-01.\n"
FORGED_TURN = "Mallory Black is the chief executive of Initech."
REASONS = ("bad_mac", "stale", "replayed", "unsigned")


class Hive:
    """A hive made and driven through the real CLI in a private home."""

    def __init__(self, home: Path, name: str, *create_args: str) -> None:
        self.home, self.name = home, name
        self.outputs: list[str] = []
        self.ok("create", "--name", name, "--shard-backend", "memory", *create_args)

    def cli(self, *argv: str, timeout: float = 120):
        res = cli_process(self.home, *argv, timeout=timeout)
        self.outputs += [res.out, res.err]
        return res

    def ok(self, *argv: str) -> str:
        res = self.cli(*argv)
        assert res.code == 0, f"{argv}: {res.err}"
        return res.out

    @property
    def config(self) -> HiveConfig:
        return HiveConfig.load(self.name)

    def status(self) -> dict[str, dict[str, Any]]:
        res = self.cli("status", "--hive", self.name, "--json")
        assert res.out, f"status --json printed nothing (exit {res.code}): {res.err}"
        return {row["agent"]: row for row in res.json()["agents"]}

    def ask(self, question: str) -> list[str]:
        doc = self.cli("ask", "--hive", self.name, "--agent", "agent_1", "--json",
                       question).json()
        return [f["content"] for f in doc["facts"]]

    def fact_id(self, text: str) -> str:
        doc = self.cli("ask", "--hive", self.name, "--agent", "agent_2", "--json", text).json()
        return next(f["fact_id"] for f in doc["facts"] if f["content"] == text)

    def stop(self) -> None:
        self.cli("stop", "--hive", self.name)
        for agent in self.config.agent_names():  # whatever stop left: killed by PID
            record = supervisor.read_pid_or_none(self.config, agent)[0]
            proc = supervisor.live_process(record)
            if proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)

    def logs(self) -> str:
        return "".join(p.read_text(errors="replace")
                       for p in (self.config.directory / "logs").glob("*.log*"))


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "home"
    monkeypatch.setenv("AMPLIHACK_HOME", str(path))
    monkeypatch.delenv(secret_store.ENV_SECRET, raising=False)
    return path


@pytest.fixture
def hives():
    made: list[Hive] = []
    yield made
    for hive in made:
        hive.stop()


def key_forms(key: bytes) -> list[str]:
    return [key.hex(), key.hex().upper(), base64.b64encode(key).decode()]


def assert_never_shown(hive: Hive, keys: list[bytes]) -> None:
    """No key, in any form, in any command's output or any agent log of ``hive``."""
    texts = [*hive.outputs, hive.logs()]
    for key in keys:
        for form in key_forms(key):
            assert not any(form in t for t in texts), "a message key was printed or logged"


def forged(hive: str, agent: str, keys: MessageAuth, fact_id: str) -> list[tuple[str, bytes]]:
    """(the reason it must be refused for, bytes) of each attack on ``agent``."""
    forget = encode(Envelope(MessageType.FORGET, hive, "cli", agent, {"fact_ids": [fact_id]}))
    retract = encode(Envelope(MessageType.SHARD_DELETE, hive, "agent_0", agent,
                              {"retract": [fact_id]}))
    learn = encode(Envelope(MessageType.LEARN, hive, "agent_0", agent,
                            {"turns": [FORGED_TURN]}))
    dump = encode(Envelope(MessageType.SHARD_QUERY, hive, "agent_0", agent, {"op": "records"}))
    other_hive = with_key(new_key())
    tampered = bytearray(keys.sign(retract))
    tampered[-5] ^= 0x20
    genuine = keys.sign(forget)
    no_mac = genuine[:32] + bytes(32) + genuine[64:]
    stale = MessageAuth(keys.source, clock=lambda: time.time() - 2 * BROKER_WINDOW).sign(learn)
    return [("unsigned", forget), ("unsigned", dump), ("bad_mac", other_hive.sign(learn)),
            ("bad_mac", other_hive.sign(retract)), ("bad_mac", bytes(tampered)),
            ("bad_mac", no_mac), ("stale", stale)]


def read_body(sock: socket.socket) -> bytes | None:
    """The next frame's body, or None if the agent closed or stayed silent."""
    buf = b""
    try:
        while len(buf) < HEADER.size or len(buf) < HEADER.size + HEADER.unpack(
                buf[:HEADER.size])[0]:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            buf += chunk
    except (TimeoutError, ConnectionError):
        return None
    (length,) = HEADER.unpack(buf[:HEADER.size])
    return buf[HEADER.size:HEADER.size + length]


def converse(path: Path, *sends: bytes, timeout: float = 10.0) -> list[bytes | None]:
    """Send each of ``sends`` (raw bytes: frames already) on one new connection, reading
    one reply frame after each: the bodies (None once the agent closed or stayed silent)."""
    out: list[bytes | None] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        for data in sends:
            try:
                sock.sendall(data)
            except ConnectionError:
                out.append(None)
                break
            out.append(read_body(sock))
            if out[-1] is None:
                break
    return out


def exchange(path: Path, data: bytes, *, framed: bool = True, timeout: float = 10.0
             ) -> bytes | None:
    """Send ``data`` (as one frame, or raw) on a new connection; the reply frame's body,
    or None if the agent closed or stayed silent."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        try:
            sock.sendall(frame(data) if framed else data)
            if not framed:
                sock.shutdown(socket.SHUT_WR)
        except ConnectionError:
            return None
        return read_body(sock)


def forged_connections(hive: str, agent: str, key: bytes, fact_id: str
                       ) -> list[tuple[str, list[bytes]]]:
    """(the reason it must be refused for, what it sends) of each attack on ``agent``'s
    socket: each item of the list is sent on one connection, one reply read after each."""
    def req(kind: MessageType, payload: dict) -> bytes:
        return frame(encode(Envelope(kind, hive, "agent_0", agent, payload)))

    forget = req(MessageType.FORGET, {"fact_ids": [fact_id]})
    retract = req(MessageType.SHARD_DELETE, {"retract": [fact_id]})
    learn = req(MessageType.LEARN, {"turns": [FORGED_TURN]})
    dump = req(MessageType.SHARD_QUERY, {"op": "records"})
    signed = frame(with_key(key).sign(encode(Envelope(
        MessageType.SHARD_DELETE, hive, "agent_0", agent, {"retract": [fact_id]}))))
    other = new_key()
    body, _ = hello(key)  # the key id is public: anyone can name it

    def other_proof(challenge_body: bytes) -> bytes:  # what a key-less attacker can compute
        return frame(HANDSHAKE + mac(other, b"C", HANDSHAKE + body[4:24] + challenge_body))

    return [
        ("unsigned", [forget]), ("unsigned", [dump]),  # no handshake at all
        ("unsigned", [signed]),  # signed per message with the key, but no handshake
        ("bad_mac", [frame(hello(other)[0]), learn]),  # another hive's secret
        ("bad_mac", [frame(body), frame(HANDSHAKE + bytes(32)) + retract]),  # a bad proof
        ("bad_mac", [frame(body), other_proof(bytes(20)) + learn]),
        ("unsigned", [frame(body), forget]),  # a request where the proof should be
    ]


def check_refusals(keys: MessageAuth, name: str, replies: list[bytes | None], reason: str
                   ) -> None:
    """An attack's replies: handshake challenges at most, then ONE refusal signed by the
    hive for ``reason``, then nothing (closed)."""
    answers = [r for r in replies if r is not None and r[:4] != HANDSHAKE]
    assert len(answers) == 1, (name, replies)
    assert refused(keys, answers[0]) == f"message rejected: {reason}", name
    assert replies[-1] is answers[0] or replies[-1] is None, (name, replies)


def refused(keys: MessageAuth, body: bytes | None) -> str:
    """The error of a reply that must be a refusal signed by the hive (never records)."""
    assert body is not None, "the agent did not answer"
    reply = decode(keys.verify(body))
    assert reply.type == MessageType.ERROR and "records" not in reply.payload, reply
    return str(reply.payload["error"])


# -- Unix sockets ------------------------------------------------------------------------------
def test_forged_messages_on_the_socket_change_nothing_and_are_counted(home, hives) -> None:
    hive = Hive(home, "uauth", "--agents", "3")
    hives.append(hive)
    # A hive made before messages were signed gets its secret at the next start.
    secret_store.secret_path(hive.config.directory).unlink()
    started = hive.cli("start", "--hive", "uauth")
    assert started.code == 0, started.err
    assert sum("had no message secret" in line for line in started.err.splitlines()) == 1
    hive.ok("learn", "--hive", "uauth", "--text", TURNS)
    keys = hive_auth(hive.config)
    fact = hive.fact_id("Alice Chen leads the Atlas project.")
    before = hive.status()
    target = "agent_1"
    path = hive.config.run_dir / f"{target}.sock"

    key = keys.source.keys().signing
    attacks = forged_connections("uauth", target, key, fact)
    for i, (reason, sends) in enumerate(attacks):
        check_refusals(keys, f"attack {i}", converse(path, *sends), reason)
    dump = frame(encode(Envelope(MessageType.SHARD_QUERY, "uauth", "agent_0", target,
                                 {"op": "records"})))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10.0)
        sock.connect(str(path))
        recording = handshake(sock, key)  # we hold the key: a real dump
        sock.sendall(dump)
        genuine = decode(read_body(sock))
    assert genuine.type == MessageType.SHARD_RESPONSE and "records" in genuine.payload
    # The same bytes again, on a new connection: the recorded proof answers an old
    # challenge, so the dump behind it is never read.
    check_refusals(keys, "replay", converse(path, recording[0], recording[1] + dump), "bad_mac")

    after = hive.status()
    expected = {r: sum(a == r for a, _ in attacks) for r in REASONS}
    expected["bad_mac"] += 1  # the replay
    assert after[target]["auth_rejected"] == expected
    assert all(sum(after[a]["auth_rejected"].values()) == 0 for a in after if a != target)
    assert [after[a]["facts"] for a in after] == [before[a]["facts"] for a in before]
    assert "Alice Chen leads the Atlas project." in hive.ask("Who leads the Atlas project?")
    assert not any("Mallory" in f for f in hive.ask("Who is the chief executive of Initech?"))
    # The LEARN's (authenticated) sender is kept with each fact as its provenance.
    doc = hive.cli("ask", "--hive", "uauth", "--agent", "agent_0", "--json",
                   "Who leads the Atlas project?").json()
    assert {f["learned_from"] for f in doc["facts"]} == {"cli"}
    assert_never_shown(hive, [keys.source.keys().signing])


def test_garbage_and_mutated_frames_never_stop_the_listener(home, hives) -> None:
    hive = Hive(home, "fuzz", "--agents", "3")
    hives.append(hive)
    hive.ok("start", "--hive", "fuzz")
    keys = hive_auth(hive.config)
    key = keys.source.keys().signing
    path = hive.config.run_dir / "agent_0.sock"
    pid = hive.status()["agent_0"]["pid"]
    status = encode(Envelope(MessageType.SHARD_QUERY, "fuzz", "cli", "agent_0",
                             {"op": "status"}))

    def mutate(data: bytes, position: int, value: int, how: int) -> bytes:
        out = bytearray(data)
        position %= len(out)
        if how == 0:
            out[position] = value
        elif how == 1:
            del out[position:]
        else:
            out.insert(position, value)
        return bytes(out)

    def handshake_then(stage: str, mutation: tuple[int, int, int]) -> list[bytes | None]:
        """A genuine handshake with one byte of ``stage`` (its hello, its proof, or the
        request after it) changed, cut or added; the agent's replies."""
        body, _ = hello(key)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5.0)
            sock.connect(str(path))
            first = mutate(body, *mutation) if stage == "hello" else body
            sock.sendall(frame(first))
            challenge = read_body(sock)
            if challenge is None or challenge[:4] != HANDSHAKE:
                return [challenge]
            second = proof(key, first, challenge)
            third = status
            if stage == "proof":
                second = mutate(second, *mutation)
            elif stage == "request":
                third = mutate(status, *mutation)
            try:
                sock.sendall(frame(second) + frame(third))
            except ConnectionError:
                return [challenge, None]
            return [challenge, read_body(sock)]

    mutation = st.tuples(st.integers(0, 2000), st.integers(0, 255), st.integers(0, 2))

    @settings(max_examples=150, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.one_of(
        st.binary(max_size=600).map(lambda b: [exchange(path, b, framed=False, timeout=5.0)]),
        st.binary(max_size=600).map(lambda b: [exchange(path, b, timeout=5.0)]),
        mutation.map(lambda m: [exchange(  # signed per message, but no handshake
            path, mutate(keys.sign(status), *m), timeout=5.0)]),
        st.integers(0, 2**32 - 1).map(
            lambda n: [exchange(path, struct.pack(">I", n), framed=False, timeout=5.0)]),
        st.tuples(st.sampled_from(["hello", "proof", "request"]), mutation).map(
            lambda m: handshake_then(*m)),
    ))
    def attack(replies: list[bytes | None]) -> None:
        for body in replies:
            if body is None or body[:4] == HANDSHAKE:
                continue
            # A refusal signed by the agent, or (after a genuine handshake) a plain reply.
            reply = decode(keys.verify(body) if body[:4] == b"AHM1" else body)
            assert reply.type in (MessageType.ERROR, MessageType.SHARD_RESPONSE)

    attack()
    after = hive.status()["agent_0"]
    assert after["status"] == "running" and after["pid"] == pid  # the same process answers
    assert sum(after["auth_rejected"].values()) > 0
    assert "Traceback" not in hive.logs()


def test_rotation_keeps_a_running_hive_answering_and_retires_the_old_key(home, hives) -> None:
    hive = Hive(home, "rot", "--agents", "3")
    hives.append(hive)
    hive.ok("start", "--hive", "rot")
    hive.ok("learn", "--hive", "rot", "--text", TURNS)
    config = hive.config
    old = secret_store.read(secret_store.secret_path(config.directory)).current
    register_secret(old.hex())  # audited in every later command's output, though rotated out
    agents = config.agent_names()

    # Traffic all through the rotation, from a process that follows the file as a CLI run does.
    link = AgentLink("rot", UnixSocketTransport(config.run_dir, auth=hive_auth(config)))
    done = threading.Event()
    failures: list[str] = []
    answered = [0]

    def load() -> None:
        while not done.is_set():
            for agent, result in link.status(agents, 5.0).items():
                if isinstance(result, dict):
                    answered[0] += 1
                else:
                    failures.append(f"{agent}: {result}")
            time.sleep(0.02)

    worker = threading.Thread(target=load)
    worker.start()
    try:
        time.sleep(0.5)
        rotated = hive.cli("rotate-secret", "--hive", "rot", "--json")
    finally:
        done.set()
        worker.join(30)
        link.transport.close()
    assert rotated.code == 0, rotated.err
    doc = rotated.json()
    assert doc["generation"] == 4 and doc["updated"] == agents and doc["not_running"] == []
    assert failures == [] and answered[0] > 30

    new = secret_store.read(secret_store.secret_path(config.directory))
    assert new.current != old and new.next is None and new.previous is None
    with_old = UnixSocketTransport(config.run_dir, auth=with_key(old))
    try:
        [reply] = with_old.request([Envelope(MessageType.SHARD_QUERY, "rot", "cli", "agent_0",
                                             {"op": "status"})], 5.0)
    finally:
        with_old.close()
    assert isinstance(reply, MessageRejected) and "bad_mac" in str(reply)
    rows = hive.status()
    assert rows["agent_0"]["auth_rejected"]["bad_mac"] == 1
    assert all(r["status"] == "running" for r in rows.values())
    assert "Alice Chen leads the Atlas project." in hive.ask("Who leads the Atlas project?")
    hive.ok("show", "--hive", "rot", "--json")
    assert_never_shown(hive, [old, new.current])


# -- Redis -------------------------------------------------------------------------------------
def test_forged_messages_on_redis_change_nothing_and_are_counted(home, hives, prefix) -> None:
    hive = Hive(home, "rauth", "--agents", "3", "--transport", "redis",
                "--connection-string", REDIS_URL, "--key-prefix", prefix)
    hives.append(hive)
    hive.ok("start", "--hive", "rauth")
    hive.ok("learn", "--hive", "rauth", "--text", TURNS)
    keys = MessageAuth(hive_auth(hive.config).source, window=BROKER_WINDOW)
    fact = hive.fact_id("Alice Chen leads the Atlas project.")
    before = hive.status()
    target = "agent_1"
    names = RedisKeys(prefix, "rauth")
    reply_to = names.reply("attacker")
    client = redis.Redis.from_url(REDIS_URL)

    def inject(data: bytes) -> None:
        client.xadd(names.inbox(target), {"env": data, "id": "forged", "reply": reply_to})

    try:
        attacks = forged("rauth", target, keys, fact)
        for _reason, data in attacks:
            inject(data)
        dump = keys.sign(encode(Envelope(MessageType.SHARD_QUERY, "rauth", "agent_0", target,
                                         {"op": "records"})))
        inject(dump)  # genuine (we hold the key): answered with the records
        deadline = time.monotonic() + 15
        while client.xlen(reply_to) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        inject(dump)  # the same bytes again: a replay, dropped unanswered
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            rejected = hive.status()[target]["auth_rejected"]
            if sum(rejected.values()) >= len(attacks) + 1:
                break
            time.sleep(0.3)
        replies = client.xrange(reply_to)
    finally:
        client.delete(reply_to)
        client.close()
    assert len(replies) == 1  # only the genuine dump was answered
    [(_, fields)] = replies
    assert "records" in decode(keys.verify(fields[b"r"])).payload

    after = hive.status()
    expected = {r: sum(a == r for a, _ in attacks) for r in REASONS}
    expected["replayed"] = 1
    assert after[target]["auth_rejected"] == expected
    assert [after[a]["facts"] for a in after] == [before[a]["facts"] for a in before]
    assert "Alice Chen leads the Atlas project." in hive.ask("Who leads the Atlas project?")
    assert not any("Mallory" in f for f in hive.ask("Who is the chief executive of Initech?"))
    assert_never_shown(hive, [keys.source.keys().signing])


def test_without_its_secret_an_agent_does_not_start_and_a_bad_one_is_one_line(
        home, hives) -> None:
    hive = Hive(home, "nokey", "--agents", "3")
    hives.append(hive)
    secret_store.secret_path(hive.config.directory).unlink()
    env = {**os.environ, "AMPLIHACK_HOME": str(home)}
    agent = subprocess.run([sys.executable, "-m", "agent_runtime", "--hive", "nokey",
                            "--agent", "agent_0"], env=env, capture_output=True, text=True,
                           timeout=60)
    assert agent.returncode == 1 and "no message secret" in agent.stderr, agent.stderr
    refusal = cli_process(home, "status", "--hive", "nokey",
                          env={secret_store.ENV_SECRET: "not-a-key"})
    assert refusal.code == 1 and secret_store.ENV_SECRET in refusal.err, refusal.err
    assert len(refusal.err.strip().splitlines()) == 1 and "Traceback" not in refusal.err
    assert "not-a-key" not in refusal.err


# -- forged replies ------------------------------------------------------------------------------
def test_a_forged_reply_is_not_accepted_on_redis_or_a_socket(tmp_path, prefix) -> None:
    """An impostor's reply, unsigned or under another key, never reaches the asker: on Redis
    the genuine reply still does; on a socket held by an impostor the request fails."""
    key = new_key()
    hive = "replies"
    server = RedisShardTransport(REDIS_URL, hive, key_prefix=prefix,
                                 auth=with_key(key, BROKER_WINDOW))
    client = RedisShardTransport(REDIS_URL, hive, key_prefix=prefix,
                                 auth=with_key(key, BROKER_WINDOW))
    admin = redis.Redis.from_url(REDIS_URL)
    entered = threading.Event()

    def slow(env: Envelope) -> Envelope:
        entered.set()
        time.sleep(1.0)  # time for the impostor to answer first
        return env.reply({"genuine": True})

    try:
        server.bind("a", slow)
        request = Envelope(MessageType.SHARD_QUERY, hive, "cli", "a", {"op": "status"})
        out: list = []
        asker = threading.Thread(target=lambda: out.extend(client.request([request], 10.0)))
        asker.start()
        assert entered.wait(10)
        [(_, fields)] = admin.xrange(RedisKeys(prefix, hive).inbox("a"))
        forged_reply = encode(request.reply({"genuine": False}))
        for body in (forged_reply, with_key(new_key()).sign(forged_reply)):
            admin.xadd(fields[b"reply"], {"r": body})
        asker.join(15)
        assert check_reply(out[0]).payload == {"genuine": True}
        assert client.auth.rejected()["unsigned"] == 1 and client.auth.rejected()["bad_mac"] == 1
    finally:
        client.close()
        server.close()
        admin.close()

    impostor = UnixSocketTransport(tmp_path / "run", auth=with_key(new_key()))
    asker_unix = UnixSocketTransport(tmp_path / "run", auth=with_key(key))
    try:
        impostor.bind("a", lambda env: env.reply({"genuine": False}))
        [reply] = asker_unix.request([Envelope(MessageType.SHARD_QUERY, hive, "cli", "a",
                                               {"op": "status"})], 5.0)
        assert isinstance(reply, MessageRejected) and "bad_mac" in str(reply)
    finally:
        asker_unix.close()
        impostor.close()
