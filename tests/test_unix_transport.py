"""What only the Unix-socket transport has: files, modes, raw frames, pooling, draining.

The behaviour every transport shares is in ``test_transport_conformance.py``.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
import threading
import time

import pytest
from handshake_helpers import handshake

from hive_core.auth import ephemeral
from hive_core.distributed import DistributedHiveGraph
from hive_core.errors import AgentError, ConnectionLost, MessageRejected
from hive_core.facts import HiveFact
from hive_core.graph import InMemoryHiveGraph
from hive_core.messages import Envelope, MessageType, decode, encode
from hive_core.store.memory import MemoryShardStore
from hive_core.transports.base import check_reply
from hive_core.transports.framing import HEADER, frame, read_frame
from hive_core.transports.unix import UnixSocketTransport


@pytest.fixture
def run_dir(tmp_path):
    return tmp_path / "run"


@pytest.fixture
def transports(run_dir):
    made: list[UnixSocketTransport] = []

    def make(**kw) -> UnixSocketTransport:
        t = UnixSocketTransport(run_dir, **kw)
        made.append(t)
        return t

    yield make
    for t in made:
        t.close()


def echo(env: Envelope) -> Envelope:
    return env.reply({"echo": env.payload})


def query(target: str, payload: dict | None = None) -> Envelope:
    return Envelope(MessageType.SHARD_QUERY, "h", "client", target, payload or {})


def raw_connect(path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5.0)
    sock.connect(str(path))
    return sock


def test_socket_file_mode_and_removal(transports, run_dir) -> None:
    server = transports()
    server.bind("a", echo)
    path = run_dir / "a.sock"
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(run_dir).st_mode) == 0o700
    assert [p.name for p in run_dir.iterdir()] == ["a.sock"]  # no temp file left behind
    server.unbind("a")
    assert not path.exists()


def test_client_only_transport_creates_nothing(tmp_path) -> None:
    client = UnixSocketTransport(tmp_path / "absent")
    [reply] = client.request([query("a")], 2.0)
    client.close()
    assert isinstance(reply, ConnectionLost)
    assert not (tmp_path / "absent").exists()


def test_second_live_binding_is_refused_and_stale_socket_is_replaced(
    transports, run_dir
) -> None:
    first = transports()
    first.bind("a", echo)
    with pytest.raises(AgentError, match="already listening"):
        transports().bind("a", echo)
    first.close()
    # A crashed agent leaves its socket file behind: nobody answers on it.
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(run_dir / "b.sock"))
    stale.close()
    server = transports()
    server.bind("b", echo)
    assert check_reply(transports().request([query("b", {"x": 1})], 5.0)[0]).payload == {
        "echo": {"x": 1}}


def process_key() -> bytes:
    """This process's key: the transports built without a policy use it (hive_core.auth)."""
    return ephemeral().source.keys().signing


def closed_after(sock: socket.socket) -> bool:
    """Whether the peer closed ``sock`` (a reset counts: our bytes stayed unread)."""
    try:
        return read_frame(sock, 1 << 20) is None
    except ConnectionResetError:
        return True


def test_oversize_frame_is_refused_without_reading_it(transports, run_dir, caplog) -> None:
    server = transports(max_message_bytes=1024)
    server.bind("a", echo)
    sock = raw_connect(run_dir / "a.sock")
    handshake(sock, process_key())
    sock.sendall(HEADER.pack(1 << 30) + b"{")  # announces 1 GiB, sends one byte
    reply = decode(read_frame(sock, 1 << 20))  # a plain envelope: the connection is authentic
    assert reply.type == MessageType.ERROR and "exceeds" in reply.payload["error"]
    assert closed_after(sock)
    sock.close()
    assert "rejected a frame" in caplog.text
    # Before the handshake a frame may be 256 bytes: a larger one is refused, unread.
    sock = raw_connect(run_dir / "a.sock")
    sock.sendall(HEADER.pack(1 << 30) + b"{")
    reply = decode(ephemeral().verify(read_frame(sock, 1 << 20)))  # signed: not authentic
    assert reply.payload["error"] == "message rejected: unsigned"
    assert closed_after(sock)
    sock.close()
    assert server.auth.rejected()["unsigned"] == 1
    # the agent keeps serving
    assert check_reply(transports().request([query("a")], 5.0)[0]).payload == {"echo": {}}


def test_receiver_limit_applies_to_larger_senders(transports) -> None:
    transports(max_message_bytes=4096).bind("a", echo)
    client = transports(max_message_bytes=1 << 20)
    [reply] = client.request([query("a", {"blob": "y" * 100_000})], 5.0)
    with pytest.raises(MessageRejected, match="exceeds"):
        check_reply(reply)
    assert check_reply(client.request([query("a")], 5.0)[0]).payload == {"echo": {}}


def test_garbage_and_truncated_frames_do_not_stop_the_listener(
    transports, run_dir, caplog
) -> None:
    server = transports()
    server.bind("a", echo)
    auth = ephemeral()  # this process's key, as the transports have it
    sock = raw_connect(run_dir / "a.sock")
    sock.sendall(frame(b"not json"))  # no handshake: refused before anything is parsed
    reply = decode(auth.verify(read_frame(sock, 1 << 20)))
    assert reply.type == MessageType.ERROR and "unsigned" in reply.payload["error"]
    assert closed_after(sock)
    sock.close()
    sock = raw_connect(run_dir / "a.sock")
    handshake(sock, process_key())
    sock.sendall(frame(b"not json"))  # authenticated, but not an envelope
    reply = decode(read_frame(sock, 1 << 20))
    assert reply.type == MessageType.ERROR and "not valid JSON" in reply.payload["error"]
    env = query("a", {"after": "garbage"})
    sock.sendall(frame(encode(env)))  # the same connection still works
    reply = decode(read_frame(sock, 1 << 20))
    assert reply.payload == {"echo": {"after": "garbage"}}
    sock.close()
    assert server.auth.rejected() == {"bad_mac": 0, "stale": 0, "replayed": 0, "unsigned": 1}
    with caplog.at_level(logging.WARNING, logger="hive_core.transports.unix"):
        cut = raw_connect(run_dir / "a.sock")
        cut.sendall(HEADER.pack(100) + b"{\"v\":")  # dies mid-frame
        cut.close()
        deadline = time.monotonic() + 5
        while "connection dropped" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.02)
    assert "connection dropped" in caplog.text
    assert check_reply(transports().request([query("a")], 5.0)[0]).payload == {"echo": {}}


def test_connections_are_pooled_and_a_restarted_peer_is_reconnected(transports) -> None:
    server, client = transports(), transports()
    server.bind("a", echo)
    for i in range(20):
        assert check_reply(client.request([query("a", {"i": i})], 5.0)[0]).payload["echo"] == {
            "i": i}
    assert server.connections_accepted("a") == 1
    server.unbind("a")  # the pooled connection is now closed by the peer
    restarted = transports()
    restarted.bind("a", echo)
    assert check_reply(client.request([query("a", {"i": "again"})], 5.0)[0]).payload == {
        "echo": {"i": "again"}}


def test_unbind_lets_the_request_in_flight_finish(transports, run_dir) -> None:
    server, client = transports(), transports()
    entered = threading.Event()

    def slow(env: Envelope) -> Envelope:
        entered.set()
        time.sleep(0.4)
        return env.reply({"done": True})

    server.bind("a", slow)
    out: list = []
    caller = threading.Thread(target=lambda: out.extend(client.request([query("a")], 5.0)))
    caller.start()
    assert entered.wait(5)
    server.unbind("a")  # returns only after the reply went out
    caller.join(5)
    assert check_reply(out[0]).payload == {"done": True}
    assert not (run_dir / "a.sock").exists()
    assert isinstance(client.request([query("a")], 5.0)[0], ConnectionLost)


FACTS = [
    "Incident INC-2041 was caused by CVE-2024-3094 in xz-utils 5.6.0.",
    "The Atlas project deadline moved to 2024-06-01.",
    "Alice Chen leads the Atlas project.",
    "Subnet 10.0.1.0/24 hosts the payment gateway.",
    "The payment gateway p95 latency is 180 ms.",
    "Bob Stone rotated the TLS certificates on 2024-04-02.",
    "Kubernetes was upgraded to v1.29 on the staging cluster.",
    "The Q3 budget for Atlas is $4.7M.",
    "CVE-2024-3094 was patched on 2024-03-29.",
    "The staging cluster runs 12 nodes in eu-west-1.",
]
QUESTIONS = [
    "What caused INC-2041?", "When is the Atlas deadline?", "Who leads Atlas?",
    "What runs on 10.0.1.0/24?", "payment gateway latency", "When was CVE-2024-3094 patched?",
    "What version is the staging cluster?", "Atlas budget",
]


def test_graph_over_separate_unix_transports_answers_like_one_process(run_dir) -> None:
    agents = ["a0", "a1", "a2", "a3"]
    graphs: dict[str, DistributedHiveGraph] = {}
    reference = DistributedHiveGraph("h", replication_factor=2, query_fanout=3)
    one_memory = InMemoryHiveGraph("h")
    try:
        for name in agents:  # one graph + one transport per "process"
            graph = DistributedHiveGraph("h", replication_factor=2, query_fanout=3,
                                         transport=UnixSocketTransport(run_dir))
            for peer in agents:
                if peer != name:
                    graph.add_remote_agent(peer)
            graph.add_local_agent(name, MemoryShardStore(name, bm25=graph.bm25))
            graphs[name] = graph
            reference.register_agent(name)
        one_memory.register_agent("a0")
        facts = [HiveFact(content=c, concept="test") for c in FACTS]
        ids, failed = graphs["a0"].promote_facts_report("a0", facts)
        assert failed == []
        reference.promote_facts("a0", facts)
        one_memory.promote_facts("a0", facts)
        counts = [graphs[a].shard_store(a).count() for a in agents]
        assert sum(counts) == len(FACTS) * 2
        for question in QUESTIONS:
            got = graphs["a3"].search(question, limit=3, asking_agent="a3")
            want = reference.search(question, limit=3, asking_agent="a3")
            single = one_memory.search(question, limit=3)
            assert not got.partial
            assert [f.fact_id for f in got.facts] == [f.fact_id for f in want.facts]
            assert got.scores == pytest.approx(want.scores)
            assert [f.fact_id for f in got.facts] == [f.fact_id for f in single.facts]
            assert len(got.shards_queried) <= 3
        assert graphs["a3"].get_fact(ids[0]).content == FACTS[0]
    finally:
        for graph in graphs.values():
            graph.close()
            graph.transport.close()
        reference.close()
