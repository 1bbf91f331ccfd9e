"""Event Hubs behaviour beyond the conformance suite, through the real transport code.

No Event Hubs emulator runs offline (Microsoft's needs Docker images this machine cannot
pull), so these tests run against hive_core.transports.azurefake: a fake *service* of the few
SDK calls the transport makes, which reproduces the hazards on purpose -- at-least-once
(replay from a checkpoint), no order across partitions, the 1 MB limit, dropped links,
bytes-keyed properties. What it cannot show (real throttling, real network) is for the live
module, tests/test_azure_live.py.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
import time
from pathlib import Path

import pytest

from hive_core.errors import ConnectionLost
from hive_core.hive_config import AgentConfig, HiveConfig
from hive_core.membership.liveness import FileLiveness
from hive_core.messages import Envelope, MessageType
from hive_core.redact import redact_secret
from hive_core.state import DirBlobs, MemoryCheckpoints
from hive_core.state.checkpoints import BlobCheckpoints
from hive_core.transports import registry
from hive_core.transports.azurefake import server as azurefake
from hive_core.transports.base import check_reply
from hive_core.transports.broker import BrokerTransport
from hive_core.transports.eventhubs import EventHubsBroker

AGENTS = ("zeta", "alpha", "mid-node", "x.y", "omega")


def query(target: str, payload: dict | None = None) -> Envelope:
    return Envelope(MessageType.SHARD_QUERY, "h", "client", target, payload or {})


def echo(name: str):
    def handler(env: Envelope) -> Envelope:
        return env.reply({"by": name, "echo": env.payload})
    return handler


class Fabric:
    def __init__(self, tmp: Path, partitions: int = 2, *, checkpoints=None,
                 max_message_bytes: int = 1 << 20) -> None:
        self.name = f"eh-{tmp.name}-{os.urandom(3).hex()}"
        self.conn = azurefake.inproc(self.name, partitions)
        self.ns = azurefake.namespace(self.conn)
        self.tmp = tmp
        self.config = HiveConfig(name="h", transport="azure_event_hubs",
                                 connection_string=self.conn,
                                 agents=tuple(AgentConfig(n) for n in AGENTS))
        self.checkpoints = checkpoints or MemoryCheckpoints()
        self.limit = max_message_bytes
        self.made: list[BrokerTransport] = []

    def new(self, **kw) -> BrokerTransport:
        broker = EventHubsBroker(self.config, presence=FileLiveness(self.tmp / "run"),
                                 checkpoints=self.checkpoints, agent_list=lambda: list(AGENTS),
                                 max_message_bytes=self.limit, **kw)
        transport = BrokerTransport(broker, max_message_bytes=self.limit)
        self.made.append(transport)
        return transport

    def close(self) -> None:
        for t in self.made:
            t.close()


@pytest.fixture
def fabric(tmp_path: Path):
    f = Fabric(tmp_path)
    yield f
    f.close()


def test_partition_is_the_agent_index_modulo_partitions_for_any_name(fabric: Fabric) -> None:
    broker = fabric.new().broker
    assert isinstance(broker, EventHubsBroker)
    assert [broker.partition_of(a) for a in AGENTS] == ["0", "1", "0", "1", "0"]
    assert broker.partition_of("ghost") is None


def test_agents_sharing_a_partition_each_get_only_their_own(fabric: Fabric) -> None:
    server, client = fabric.new(), fabric.new()
    for name in ("zeta", "mid-node", "omega"):  # all three on partition 0
        server.bind(name, echo(name))
    envs = [query(name, {"i": i}) for i in range(10) for name in ("omega", "zeta", "mid-node")]
    replies = [check_reply(r) for r in client.request(envs, 10.0)]
    assert [r.payload["by"] for r in replies] == [e.target for e in envs]
    handled = {n: server.inbox(n).handled for n in ("zeta", "mid-node", "omega")}
    assert handled == {"zeta": 10, "mid-node": 10, "omega": 10}


def test_a_request_in_flight_when_its_agent_dies_is_handled_by_the_next_incarnation(
        tmp_path: Path) -> None:
    """The checkpoint stays below an unanswered event; the restarted agent resumes from
    the checkpoint (never from @latest) and answers it: the asker never knew."""
    fabric = Fabric(tmp_path, checkpoints=BlobCheckpoints(DirBlobs(tmp_path / "ckpt")))
    try:
        client = fabric.new()
        first = fabric.new()
        first.drain_timeout = 0.2
        entered, release = threading.Event(), threading.Event()

        def stuck(env: Envelope) -> Envelope:
            entered.set()
            release.wait(30)
            raise RuntimeError("the first incarnation died")  # never answers

        first.bind("alpha", echo("alpha"))
        for i in range(5):  # handled and checkpointed
            assert check_reply(client.request([query("alpha", {"i": i})], 5.0)[0])
        first.unbind("alpha")
        first.bind("alpha", stuck)
        out: list = []
        env = query("alpha", {"n": 7})
        waiter = threading.Thread(target=lambda: out.extend(client.request([env], 30.0)))
        waiter.start()
        assert entered.wait(10)
        first.close()  # drains for 0.2 s only: the request stays unanswered, unacknowledged
        release.set()
        heir = fabric.new()
        heir.bind("alpha", echo("heir"))
        waiter.join(30)
        assert not waiter.is_alive()
        reply = check_reply(out[0])
        assert reply.correlation_id == env.msg_id and reply.payload["by"] == "heir"
        # Resumed after the checkpoint: the 5 answered requests were not handled again.
        assert heir.inbox("alpha").handled == 1
    finally:
        release.set()
        fabric.close()


def test_a_dropped_link_is_reconnected_and_nothing_sent_meanwhile_is_lost(
        fabric: Fabric, caplog) -> None:
    caplog.set_level(logging.WARNING)
    server, client = fabric.new(), fabric.new()
    server.bind("alpha", echo("alpha"))
    assert check_reply(client.request([query("alpha")], 5.0)[0])
    results: list = []

    def ask_during_drop() -> None:
        results.extend(client.request([query("alpha", {"during": i}) for i in range(20)],
                                      20.0))

    asker = threading.Thread(target=ask_during_drop)
    fabric.ns.drop_connections()  # every receive in progress fails: readers back off
    asker.start()
    fabric.ns.drop_connections()
    asker.join(30)
    assert [check_reply(r).payload["echo"] for r in results] == [
        {"during": i} for i in range(20)]
    assert "reconnecting with backoff" in caplog.text


def test_a_body_over_the_1mb_event_limit_travels_in_parts(tmp_path: Path) -> None:
    fabric = Fabric(tmp_path, max_message_bytes=8 << 20)
    try:
        server, client = fabric.new(), fabric.new()
        server.bind("alpha", echo("alpha"))
        blob = base64.b64encode(os.urandom(3 << 20)).decode()  # 4 MB, incompressible
        before = fabric.ns.sent_batches
        [reply] = client.request([query("alpha", {"blob": blob})], 30.0)
        assert check_reply(reply).payload["echo"]["blob"] == blob
        assert fabric.ns.sent_batches - before >= 2 * 4  # request and reply, >= 4 parts each
    finally:
        fabric.close()


def test_a_request_to_an_agent_that_is_not_live_is_connection_lost_unsent(
        fabric: Fabric) -> None:
    client = fabric.new()
    before = fabric.ns.sent_batches
    [lost] = client.request([query("alpha")], 5.0)
    assert isinstance(lost, ConnectionLost) and "no live agent 'alpha'" in str(lost)
    assert fabric.ns.sent_batches == before


def test_settings_come_from_the_config_or_the_environment() -> None:
    config = HiveConfig(name="h", transport="azure_event_hubs",
                        transport_options={"eventhub": "from-config"})
    env = {"AMPLIHACK_EH_CONNECTION_STRING": "Endpoint=sb://ns/;SharedAccessKeyName=k;"
                                             "SharedAccessKey=s3cr3t", "AMPLIHACK_EH_NAME": "hub-b"}
    resolved = config.with_env_overrides(env)
    assert resolved.connection_string == env["AMPLIHACK_EH_CONNECTION_STRING"]
    assert resolved.transport_options == {"eventhub": "hub-b"}
    with pytest.raises(Exception, match="AMPLIHACK_EH_CONNECTION_STRING"):
        registry.check(config, connection_required=True)
    with pytest.raises(Exception, match="unknown transport_options"):
        HiveConfig(name="h", transport="azure_event_hubs", transport_options={"topic": "x"})


def test_the_key_is_never_shown(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "Zm9vYmFyc2VjcmV0a2V5"
    conn = f"Endpoint=fake://127.0.0.1:1/;SharedAccessKeyName=test;SharedAccessKey={secret}"
    config = HiveConfig(name="h", transport="azure_event_hubs", connection_string=conn,
                        agents=(AgentConfig("alpha"),))
    with pytest.raises(ConnectionLost) as info:  # nothing listens there
        EventHubsBroker(config, presence=FileLiveness(tmp_path / "run"),
                        checkpoints=MemoryCheckpoints())
    shown = [str(info.value), caplog.text, redact_secret(conn),
             str(config.to_dict(redact=True))]
    assert all(secret not in text for text in shown)


def test_checkpoints_follow_the_handled_events(fabric: Fabric) -> None:
    """Every event of the partition is handled (or not this agent's): the saved checkpoint
    reaches the partition's last sequence number, within about CHECKPOINT_EVERY."""
    server, client = fabric.new(), fabric.new()
    server.bind("alpha", echo("alpha"))
    for i in range(3):
        assert check_reply(client.request([query("alpha", {"i": i})], 5.0)[0])
    last = fabric.ns.eh_last_sequence("hive-shards-h", "1")  # alpha is agent 1: partition 1
    deadline = time.monotonic() + 10
    while fabric.checkpoints.load("hive-shards-h", "alpha", "1/alpha") != last:
        assert time.monotonic() < deadline, "the checkpoint never reached the last event"
        time.sleep(0.1)


def test_a_clean_stop_drains_and_replays_nothing(fabric: Fabric) -> None:
    """A request still being handled at unbind is answered (drain) and checkpointed, so the
    next incarnation starts after it instead of handling it again."""
    server, client = fabric.new(), fabric.new()
    entered = threading.Event()

    def slow(env: Envelope) -> Envelope:
        entered.set()
        time.sleep(0.5)
        return env.reply({"by": "first"})

    server.bind("alpha", slow)
    out: list = []
    asker = threading.Thread(target=lambda: out.extend(client.request([query("alpha")], 10.0)))
    asker.start()
    assert entered.wait(5)
    server.unbind("alpha")  # releases, then drains the request in flight
    asker.join(10)
    assert check_reply(out[0]).payload["by"] == "first"
    heir = fabric.new()
    heir.bind("alpha", echo("heir"))
    assert check_reply(client.request([query("alpha", {"n": 1})], 5.0)[0]).payload["by"] == \
        "heir"
    time.sleep(0.5)
    assert heir.inbox("alpha").handled == 1  # only the new request: nothing replayed


def test_a_first_start_never_replays_an_older_hives_events(fabric: Fabric) -> None:
    """The hub outlives hives: requests to 'alpha' of an older hive of the same name lie in
    its partition. A first start begins where the partition ended when it claimed."""
    stale = Envelope(MessageType.LEARN, "h", "client", "alpha", {"turns": ["stale"]})
    fabric.ns.eh_send("hive-shards-h", "1", [(chunks_body(stale), {
        "hive": "h", "kind": "req", "target": "alpha", "id": stale.msg_id,
        "reply_to": "0:gone", "part": "0", "parts": "1"})])
    seen: list[str] = []

    def record(env: Envelope) -> Envelope:
        seen.append(env.type)
        return env.reply({})

    server, client = fabric.new(), fabric.new()
    server.bind("alpha", record)
    assert check_reply(client.request([query("alpha")], 5.0)[0])
    time.sleep(0.5)
    assert seen == [MessageType.SHARD_QUERY]  # the stale LEARN was not handled


def chunks_body(env: Envelope) -> bytes:
    from hive_core.messages import encode
    from hive_core.transports.chunks import split

    [part] = split(encode(env))
    return part
