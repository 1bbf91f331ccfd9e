"""The Service Bus transport's hazards, through the real broker code over a fake SDK.

No Service Bus emulator runs offline (the official one is a Docker image this machine cannot
pull), so these tests run :class:`hive_core.transports.servicebus.ServiceBusBroker` against
the in-process fake namespace through :mod:`hive_core.transports.azurefake.servicebus_sdk`,
a fake of exactly the azure-servicebus calls the broker makes, raising the real SDK's
exceptions. The fake is a small service, not a mock: messages queue, locks expire, delivery
counts grow and messages are dead-lettered, links drop. The conformance suite
(tests/test_transport_conformance.py) covers request/reply; this module covers what can go
wrong: expired locks, replies that cannot be sent, dead-lettering, dropped connections,
bodies over 1 MB, two hives on one topic, and secrets in logs and errors.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from azure.servicebus.exceptions import ServiceBusConnectionError

from hive_core.errors import ConfigError, ConnectionLost, DeadlineExceeded
from hive_core.hive_config import AgentConfig, HiveConfig
from hive_core.membership.liveness import FileLiveness
from hive_core.messages import Envelope, MessageType
from hive_core.transports import broker as broker_module
from hive_core.transports import servicebus
from hive_core.transports.azurefake import server as azurefake
from hive_core.transports.azurefake import servicebus_sdk
from hive_core.transports.base import check_reply
from hive_core.transports.broker import BrokerTransport
from hive_core.transports.servicebus import ServiceBusBroker, subscription_name

SECRET = "Sup3rS3cretKeyValue0123456789=="


class Hive:
    """Transports of one test on one fake namespace; all closed at teardown."""

    def __init__(self, tmp: Path, name: str) -> None:
        self.tmp = tmp
        self.conn = azurefake.inproc(name).replace("SharedAccessKey=x",
                                                    f"SharedAccessKey={SECRET}")
        self.ns = azurefake.namespace(self.conn)
        self.made: list[BrokerTransport] = []

    def transport(self, hive: str = "h", *, limit: int = 64 * 1024,
                  **options: object) -> BrokerTransport:
        broker = ServiceBusBroker(self.conn, hive, presence=FileLiveness(self.tmp / hive),
                                  max_message_bytes=limit, **options)  # type: ignore[arg-type]
        transport = BrokerTransport(broker, max_message_bytes=limit)
        self.made.append(transport)
        return transport

    def counts(self, agent: str, hive: str = "h") -> dict[str, int]:
        return self.ns.sb_counts(f"hive-graph/subscriptions/{subscription_name(hive, agent)}")

    def close(self) -> None:
        for transport in self.made:
            transport.close()


@pytest.fixture
def hive(tmp_path: Path) -> Iterator[Hive]:
    made = Hive(tmp_path, f"sbt-{tmp_path.name}")
    yield made
    made.close()


def query(target: str, payload: dict | None = None, hive: str = "h") -> Envelope:
    return Envelope(MessageType.SHARD_QUERY, hive, "client", target, payload or {})


def until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


class Calls:
    """A handler that counts its calls and can be slowed down per call."""

    def __init__(self, name: str, delay: Callable[[int], float] = lambda n: 0.0) -> None:
        self.name = name
        self.delay = delay
        self.count = 0
        self.hives: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, env: Envelope) -> Envelope:
        with self._lock:
            self.count += 1
            n = self.count
            self.hives.append(env.hive)
        time.sleep(self.delay(n))
        return env.reply({"by": self.name, "echo": env.payload})


def drained(hive: Hive, agent: str, name: str = "h") -> bool:
    return hive.counts(agent, name) == {"active": 0, "locked": 0, "dead_letter": 0}


def test_expired_lock_redelivers_and_the_redelivery_does_not_run_twice(hive: Hive, caplog):
    caplog.set_level(logging.WARNING)
    server, client = hive.transport(lock_duration=0.5), hive.transport()
    handler = Calls("a", delay=lambda n: 1.2 if n == 1 else 0.0)  # first call outlives its lock
    server.bind("a", handler)
    [reply] = client.request([query("a", {"n": 1})], timeout=10.0)
    assert check_reply(reply).payload == {"by": "a", "echo": {"n": 1}}
    # The completion found its lock expired: delivered again, but its nonce was accepted
    # already (hive_core.auth): acknowledged without running again, and not counted as an
    # attack (a replay) either.
    assert until(lambda: server.inbox("a").redelivered >= 1 and drained(hive, "a"))
    assert handler.count == 1
    assert server.auth.rejected()["replayed"] == 0
    assert "lock of a message expired" in caplog.text
    assert check_reply(client.request([query("a", {"n": 2})], 5.0)[0]).payload["echo"] == \
        {"n": 2}


def test_reply_that_cannot_be_sent_is_abandoned_then_answered(hive: Hive, monkeypatch):
    monkeypatch.setattr(broker_module, "REPLY_WRITE_DEADLINE", 0.2)
    server, client = hive.transport(), hive.transport()
    handler = Calls("a")
    server.bind("a", handler)
    real_send_reply = server.broker._send_reply
    broken_until = time.monotonic() + 0.6

    def flaky_send_reply(reply_to: str, body: bytes) -> None:
        if time.monotonic() < broken_until:
            raise ConnectionLost("the reply queue is unreachable (test)")
        real_send_reply(reply_to, body)

    monkeypatch.setattr(server.broker, "_send_reply", flaky_send_reply)
    [reply] = client.request([query("a", {"k": "v"})], timeout=10.0)
    assert check_reply(reply).payload["echo"] == {"k": "v"}
    assert handler.count >= 2  # abandoned after the reply failed, delivered again
    assert server.inbox("a").abandoned >= 1
    assert until(lambda: drained(hive, "a"))


def test_abandoned_message_is_dead_lettered_after_max_delivery_count(hive: Hive, monkeypatch):
    monkeypatch.setattr(broker_module, "REPLY_WRITE_DEADLINE", 0.05)
    server, client = hive.transport(max_delivery_count=3), hive.transport()
    handler = Calls("a")
    server.bind("a", handler)

    def no_reply(reply_to: str, body: bytes) -> None:
        raise ConnectionLost("the reply queue is unreachable (test)")

    monkeypatch.setattr(server.broker, "_send_reply", no_reply)
    [reply] = client.request([query("a")], timeout=2.0)
    assert isinstance(reply, DeadlineExceeded)
    assert until(lambda: hive.counts("a")["dead_letter"] == 1)
    assert hive.counts("a") == {"active": 0, "locked": 0, "dead_letter": 1}
    assert handler.count == 3


def test_dropped_connection_mid_receive_then_requests_still_succeed(hive: Hive, caplog):
    caplog.set_level(logging.WARNING)
    server, client = hive.transport(lock_duration=1.0), hive.transport()
    handler = Calls("a", delay=lambda n: 0.4 if n == 2 else 0.0)
    server.bind("a", handler)
    assert check_reply(client.request([query("a")], 5.0)[0]).payload["by"] == "a"
    # Drop every link while request 2 is being handled: its receiver is gone, so its
    # completion fails and it is delivered again after its lock expires.
    threading.Timer(0.2, hive.ns.drop_connections).start()
    [reply] = client.request([query("a", {"i": 2})], timeout=10.0)
    assert check_reply(reply).payload["echo"] == {"i": 2}
    for i in range(20):
        [reply] = client.request([query("a", {"i": i})], timeout=10.0)
        assert check_reply(reply).payload["echo"] == {"i": i}
    assert until(lambda: drained(hive, "a"))
    assert "ServiceBusConnectionError" in caplog.text  # the receive loops saw the drop
    assert "reconnected" in caplog.text or "flow again" in caplog.text


def test_body_over_one_megabyte_arrives_intact_in_parts(hive: Hive, monkeypatch):
    limit = 8 * 1024 * 1024
    server, client = hive.transport(limit=limit), hive.transport(limit=limit)
    server.bind("a", Calls("a"))
    sent: list[tuple[str, int]] = []
    real_send = servicebus_sdk.ServiceBusSender.send_messages

    def counting_send(self, message, **kwargs):
        sent.append((self.entity_name, len(message)))
        return real_send(self, message, **kwargs)

    monkeypatch.setattr(servicebus_sdk.ServiceBusSender, "send_messages", counting_send)
    blob = base64.b64encode(os.urandom(2_300_000)).decode()  # ~3 MB, incompressible-ish
    [reply] = client.request([query("a", {"blob": blob})], timeout=30.0)
    assert check_reply(reply).payload["echo"]["blob"] == blob
    topic_parts = sum(n for entity, n in sent if entity == "hive-graph")
    reply_parts = sum(n for entity, n in sent if entity == "hive-graph-replies")
    assert topic_parts >= 3 and reply_parts >= 3  # both ways, each part under 1 MB
    assert until(lambda: drained(hive, "a"))


def test_two_hives_on_one_topic_never_see_each_other(hive: Hive):
    one, two = hive.transport("h1"), hive.transport("h2")
    seen1, seen2 = Calls("h1-a"), Calls("h2-a")
    one.bind("a", seen1)
    two.bind("a", seen2)  # the same agent name in the other hive
    client1, client2 = hive.transport("h1"), hive.transport("h2")
    for i in range(5):
        [r1] = client1.request([query("a", {"i": i}, hive="h1")], 5.0)
        [r2] = client2.request([query("a", {"i": i}, hive="h2")], 5.0)
        assert check_reply(r1).payload["by"] == "h1-a"
        assert check_reply(r2).payload["by"] == "h2-a"
    assert seen1.hives == ["h1"] * 5 and seen2.hives == ["h2"] * 5
    assert until(lambda: drained(hive, "a", "h1") and drained(hive, "a", "h2"))
    # A hive's client cannot reach an agent that is live only in the other hive.
    two.unbind("a")
    [ghost] = client2.request([query("a", hive="h2")], 5.0)
    assert isinstance(ghost, ConnectionLost)


def test_connection_string_key_never_in_logs_or_errors(hive: Hive, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    errors: list[str] = []
    server, client = hive.transport(), hive.transport()
    server.bind("a", Calls("a"))
    assert SECRET not in server.broker.where
    check_reply(client.request([query("a")], 5.0)[0])
    hive.ns.drop_connections()  # reconnect warnings name the broker
    errors += [str(r) for r in client.request([query("ghost")], 5.0)]

    def leaky_send(self, message, **kwargs):  # an SDK error that quotes the whole string
        raise ServiceBusConnectionError(message=f"could not reach {hive.conn}")

    monkeypatch.setattr(servicebus_sdk.ServiceBusSender, "send_messages", leaky_send)
    [failed] = client.request([query("a")], timeout=0.5)
    assert isinstance(failed, ConnectionLost)
    errors.append(str(failed))
    monkeypatch.undo()
    bad = hive.conn.replace("fake://inproc/", "fake://inproc/missing-")
    with pytest.raises(ConfigError) as refused:
        ServiceBusBroker(bad, "h", presence=FileLiveness(hive.tmp / "x"))
    errors.append(str(refused.value))
    assert "SharedAccessKey=***" in errors[-1]
    assert all(SECRET not in e for e in errors), errors
    assert SECRET not in caplog.text
    assert "ServiceBusConnectionError" in caplog.text or "ConnectionLost" in caplog.text


def test_subscription_names_fit_the_service_limit():
    long_hive, long_agent = "h" * 40, "agent-" + "x" * 40
    name = subscription_name(long_hive, long_agent)
    assert len(name) <= 50
    assert name != subscription_name(long_hive, long_agent + "y")
    assert subscription_name("ops", "agent_0") == "ops.agent_0"


def test_open_transport_and_purge_through_the_registry(hive: Hive, tmp_path, monkeypatch):
    monkeypatch.setenv("AMPLIHACK_HOME", str(tmp_path / "home"))
    config = HiveConfig(name="ops", transport="azure_service_bus", connection_string=hive.conn,
                        transport_options={"topic": "t1", "max_delivery_count": 4},
                        agents=(AgentConfig("a"), AgentConfig("b")))
    server = servicebus.open_transport(config)
    client = servicebus.open_transport(config)
    try:
        server.bind("a", Calls("a"))
        assert client.live_members() == {"a"}
        [reply] = client.request([query("a", hive="ops")], 5.0)
        assert check_reply(reply).payload["by"] == "a"
    finally:
        server.close()
        client.close()
    assert hive.ns.sb_subscription_exists("t1", "ops.a")
    assert servicebus.purge(config) == ["Service Bus subscription t1/ops.a"]
    assert not hive.ns.sb_subscription_exists("t1", "ops.a")
    assert servicebus.purge(config) == []  # nothing left: purging again is a no-op
