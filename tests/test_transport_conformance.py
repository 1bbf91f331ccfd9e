"""One conformance suite for every ShardTransport.

Each test runs once per entry of ``FABRICS``. A fabric makes transports that reach each other:
the in-process bus is one shared object; Unix sockets are separate instances in one run
folder (so server and client really are different endpoints); Redis transports are separate
instances (separate connections, reply streams and heartbeats) on the real Redis at
127.0.0.1:6379 under a key prefix of their own, deleted at teardown.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from redis_helpers import REDIS_URL, delete_prefix, shared_redis, unique_prefix

from hive_core.errors import ConnectionLost, DeadlineExceeded, MessageRejected, PeerFailed
from hive_core.hive_config import AgentConfig, HiveConfig
from hive_core.membership.liveness import FileLiveness
from hive_core.messages import Envelope, MessageType
from hive_core.state import MemoryCheckpoints
from hive_core.transports.azurefake import server as azurefake
from hive_core.transports.base import ShardTransport, check_reply
from hive_core.transports.broker import BrokerTransport
from hive_core.transports.eventhubs import EventHubsBroker
from hive_core.transports.local import LocalEventBus
from hive_core.transports.redis import RedisShardTransport
from hive_core.transports.unix import UnixSocketTransport

LIMIT = 64 * 1024  # a small message limit keeps the oversize test cheap
SLACK = 1.0


class Fabric:
    """Makes transports that reach each other; closes them all at teardown."""

    def __init__(self, make: Callable[[], ShardTransport],
                 cleanup: Callable[[], object] | None = None) -> None:
        self._make = make
        self._cleanup = cleanup
        self.made: list[ShardTransport] = []

    def new(self) -> ShardTransport:
        transport = self._make()
        if not any(t is transport for t in self.made):
            self.made.append(transport)
        return transport

    def close(self) -> None:
        for transport in self.made:
            transport.close()
        if self._cleanup is not None:
            self._cleanup()


def local_fabric(_tmp: Path) -> Fabric:
    bus = LocalEventBus(strict=True, max_message_bytes=LIMIT)
    return Fabric(lambda: bus)


def unix_fabric(tmp: Path) -> Fabric:
    return Fabric(lambda: UnixSocketTransport(tmp / "run", max_message_bytes=LIMIT))


def redis_fabric(_tmp: Path) -> Fabric:
    admin = shared_redis()
    prefix = unique_prefix()

    def cleanup() -> None:
        delete_prefix(admin, prefix)
        admin.close()

    return Fabric(lambda: RedisShardTransport(REDIS_URL, "h", key_prefix=prefix,
                                              max_message_bytes=LIMIT), cleanup)


def eventhubs_fabric(tmp: Path) -> Fabric:
    """Event Hubs over the in-process fake namespace (no emulator runs offline): each new()
    is a separate broker (own producer, readers, reply route) on one namespace, with the
    hive's liveness in flock files and checkpoints in memory, as agents of one machine."""
    conn = azurefake.inproc(f"eh-{tmp.name}", partitions=2)  # agents share partitions
    config = HiveConfig(name="h", transport="azure_event_hubs", connection_string=conn,
                        agents=tuple(AgentConfig(n) for n in AGENTS))
    checkpoints = MemoryCheckpoints()
    return Fabric(lambda: BrokerTransport(
        EventHubsBroker(config, presence=FileLiveness(tmp / "run"), checkpoints=checkpoints,
                        agent_list=lambda: list(AGENTS), max_message_bytes=LIMIT),
        max_message_bytes=LIMIT))


def servicebus_fabric(tmp: Path) -> Fabric:
    """Service Bus over the in-process fake namespace (no emulator runs offline): each new()
    is a separate broker (own senders, receivers, reply session) on one namespace and topic,
    with the hive's liveness in flock files, as agents of one machine."""
    from hive_core.transports.servicebus import ServiceBusBroker

    conn = azurefake.inproc(f"sb-{tmp.name}")
    return Fabric(lambda: BrokerTransport(
        ServiceBusBroker(conn, "h", presence=FileLiveness(tmp / "run"),
                         max_message_bytes=LIMIT, known_agents=lambda: list(AGENTS)),
        max_message_bytes=LIMIT))


FABRICS = [pytest.param(local_fabric, id="local"), pytest.param(unix_fabric, id="unix"),
           pytest.param(redis_fabric, id="redis"), pytest.param(eventhubs_fabric, id="eventhubs"),
           pytest.param(servicebus_fabric, id="servicebus")]
AGENTS = ("a", "b", "c", "slow", "fast")


@pytest.fixture(params=FABRICS)
def fabric(request, tmp_path) -> Iterator[Fabric]:
    made = request.param(tmp_path)
    yield made
    made.close()


def echo(name: str):
    def handler(env: Envelope) -> Envelope:
        return env.reply({"by": name, "echo": env.payload})
    return handler


def query(target: str, payload: dict | None = None) -> Envelope:
    return Envelope(MessageType.SHARD_QUERY, "h", "client", target, payload or {})


def test_request_reply_carries_correlation_id(fabric: Fabric) -> None:
    server, client = fabric.new(), fabric.new()
    server.bind("a", echo("a"))
    env = query("a", {"n": 1})
    [reply] = client.request([env], timeout=5.0)
    reply = check_reply(reply)
    assert reply.correlation_id == env.msg_id
    assert reply.type == MessageType.SHARD_RESPONSE
    assert (reply.sender, reply.target) == ("a", "client")
    assert reply.payload == {"by": "a", "echo": {"n": 1}}


def test_scatter_to_several_targets_in_one_request(fabric: Fabric) -> None:
    server, client = fabric.new(), fabric.new()
    for name in ("a", "b", "c"):
        server.bind(name, echo(name))
    envs = [query(name, {"i": i}) for i, name in enumerate(("c", "a", "b"))]
    replies = [check_reply(r) for r in client.request(envs, timeout=5.0)]
    assert [r.payload["by"] for r in replies] == ["c", "a", "b"]
    assert [r.correlation_id for r in replies] == [e.msg_id for e in envs]
    assert [r.payload["echo"]["i"] for r in replies] == [0, 1, 2]


def test_unknown_target_fails_fast_with_connection_lost(fabric: Fabric) -> None:
    server, client = fabric.new(), fabric.new()
    server.bind("a", echo("a"))
    started = time.monotonic()
    missing, found = client.request([query("ghost"), query("a")], timeout=10.0)
    assert isinstance(missing, ConnectionLost)
    assert check_reply(found).payload["by"] == "a"
    assert time.monotonic() - started < 5.0  # did not wait for the 10 s deadline


def test_silent_handler_costs_its_item_the_deadline_only(fabric: Fabric) -> None:
    server, client = fabric.new(), fabric.new()
    release = threading.Event()

    def never(env: Envelope) -> Envelope:
        release.wait(30)
        return env.reply({})

    server.bind("slow", never)
    server.bind("fast", echo("fast"))
    try:
        started = time.monotonic()
        slow, fast = client.request([query("slow"), query("fast")], timeout=0.5)
        elapsed = time.monotonic() - started
    finally:
        release.set()
    assert isinstance(slow, DeadlineExceeded)
    assert check_reply(fast).payload["by"] == "fast"
    assert 0.5 <= elapsed < 0.5 + SLACK


def test_handler_exception_comes_back_as_error_reply(fabric: Fabric) -> None:
    server, client = fabric.new(), fabric.new()

    def broken(env: Envelope) -> Envelope:
        raise RuntimeError("shard exploded")

    server.bind("a", broken)
    [reply] = client.request([query("a")], timeout=5.0)
    assert isinstance(reply, Envelope) and reply.type == MessageType.ERROR
    with pytest.raises(MessageRejected, match="shard exploded"):
        check_reply(reply)


def test_a_handler_whose_peers_failed_answers_retryable(fabric: Fabric) -> None:
    """A receiver that could not reach its own peers says so: the caller may send again
    (learn does, then fails over), where a refused message is final."""
    server, client = fabric.new(), fabric.new()

    def peers_down(env: Envelope) -> Envelope:
        raise DeadlineExceeded("store failed on shard(s) b, c")

    server.bind("a", peers_down)
    [reply] = client.request([query("a")], timeout=5.0)
    with pytest.raises(PeerFailed, match="store failed") as caught:
        check_reply(reply)
    assert not isinstance(caught.value, MessageRejected)


def test_oversize_message_is_rejected(fabric: Fabric) -> None:
    server, client = fabric.new(), fabric.new()
    server.bind("a", echo("a"))
    big, small = client.request([query("a", {"blob": "x" * (LIMIT + 1)}), query("a")], 5.0)
    with pytest.raises(MessageRejected, match="exceeds"):
        check_reply(big)
    assert check_reply(small).payload["by"] == "a"


def test_unbind_then_request_is_connection_lost(fabric: Fabric) -> None:
    server, client = fabric.new(), fabric.new()
    server.bind("a", echo("a"))
    assert check_reply(client.request([query("a")], 5.0)[0]).payload["by"] == "a"
    server.unbind("a")
    [reply] = client.request([query("a")], 5.0)
    assert isinstance(reply, ConnectionLost)


def test_concurrent_requests_each_get_their_own_reply(fabric: Fabric) -> None:
    server, client = fabric.new(), fabric.new()
    for name in ("a", "b", "c"):
        server.bind(name, echo(name))
    errors: list[str] = []
    answered: list[int] = []

    def worker(w: int) -> None:
        # Any exception here (a failed reply, a transport error) is recorded and fails the
        # test in the main thread: an exception in a thread alone only warns.
        try:
            for i in range(25):
                envs = [query(name, {"w": w, "i": i, "to": name}) for name in ("a", "b", "c")]
                for env, reply in zip(envs, client.request(envs, 10.0), strict=True):
                    got = check_reply(reply)
                    if got.correlation_id != env.msg_id or got.payload["echo"] != env.payload:
                        errors.append(f"{env.payload} got {got.payload}")
                    if got.payload["by"] != env.target:
                        errors.append(f"{env.target} answered by {got.payload['by']}")
                    answered.append(w)
        except Exception as exc:
            errors.append(f"worker {w}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert len(answered) == 8 * 25 * 3


def test_payload_round_trips_plain_data_exactly(fabric: Fabric) -> None:
    server, client = fabric.new(), fabric.new()
    server.bind("a", echo("a"))
    payload = {
        "unicode": "naïve café — 日本語 🐝 \u0000 \n\t\"quoted\"",
        "nested": {"list": [1, [2, [3, {"deep": None}]]], "empty": {}, "none": []},
        "floats": [0.1, 1e-300, 1.7976931348623157e308, -2.5, 3.0],
        "ints": [0, -1, 2**53, 2**63],
        "bools": [True, False],
        "ключ": "значение",
    }
    [reply] = client.request([query("a", payload)], 5.0)
    echoed = check_reply(reply).payload["echo"]
    assert echoed == payload
    assert [type(x) for x in echoed["floats"]] == [float] * 5
    assert [type(x) for x in echoed["ints"]] == [int] * 4
