"""Request latency through the Azure transports over their in-process fakes.

    python -m bench.azure_fakes eventhubs servicebus redis [--requests 500]

No Azure emulator runs offline, so this measures the transports' own overhead (broker code,
chunking, compression, settlement, the fake SDK and namespace), not Azure's network: one
target agent, a small payload, requests one after the other, p50/p95 in milliseconds; the
``redis`` entry runs the same loop over the real local Redis for comparison. One function
per transport; ``main`` runs the ones named on the command line.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import pct
from hive_core.messages import Envelope, MessageType
from hive_core.transports.base import ShardTransport, check_reply


def _measure(name: str, server: ShardTransport, client: ShardTransport, hive: str,
             requests: int) -> None:
    """Bind one echo agent on ``server``; time ``requests`` round trips from ``client``."""
    server.bind("a", lambda env: env.reply({"echo": env.payload}))
    payload = {"q": "which host ran CVE-2024-3001?", "k": 5}
    for _ in range(20):  # warm up: links, subscriptions, reply session
        check_reply(client.request([Envelope(MessageType.SHARD_QUERY, hive, "bench", "a",
                                             payload)], 10.0)[0])
    times: list[float] = []
    for _ in range(requests):
        env = Envelope(MessageType.SHARD_QUERY, hive, "bench", "a", payload)
        started = time.perf_counter()
        check_reply(client.request([env], 10.0)[0])
        times.append((time.perf_counter() - started) * 1000)
    print(f"{name}: {requests} requests, p50 {pct(times, 0.5):.2f} ms, "
          f"p95 {pct(times, 0.95):.2f} ms, max {max(times):.2f} ms")


def servicebus(requests: int) -> None:
    """Service Bus: topic + per-agent subscription + session reply queue, in-process fake."""
    from hive_core.membership.liveness import FileLiveness
    from hive_core.transports.azurefake.server import inproc
    from hive_core.transports.broker import BrokerTransport
    from hive_core.transports.servicebus import ServiceBusBroker

    conn = inproc("bench-servicebus")
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        server = BrokerTransport(ServiceBusBroker(conn, "bench", presence=FileLiveness(run)))
        client = BrokerTransport(ServiceBusBroker(conn, "bench", presence=FileLiveness(run)))
        try:
            _measure("servicebus (in-process fake)", server, client, "bench", requests)
        finally:
            client.close()
            server.close()


def eventhubs(requests: int) -> None:
    """Event Hubs: partition inboxes, per-agent consumer group, checkpoints in memory."""
    from hive_core.hive_config import AgentConfig, HiveConfig
    from hive_core.membership.liveness import FileLiveness
    from hive_core.state import MemoryCheckpoints
    from hive_core.transports.azurefake.server import inproc
    from hive_core.transports.broker import BrokerTransport
    from hive_core.transports.eventhubs import EventHubsBroker

    config = HiveConfig(name="bench", transport="azure_event_hubs",
                        connection_string=inproc("bench-eventhubs"),
                        agents=(AgentConfig("a"),))
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        made = [BrokerTransport(EventHubsBroker(
            config, presence=FileLiveness(run), checkpoints=MemoryCheckpoints(),
            agent_list=lambda: ["a"])) for _ in range(2)]
        try:
            _measure("eventhubs (in-process fake)", made[0], made[1], "bench", requests)
        finally:
            for t in made:
                t.close()


def redis(requests: int) -> None:
    """Redis Streams on 127.0.0.1:6379 under a throwaway key prefix, for comparison."""
    import uuid

    from hive_core.transports.redis import RedisShardTransport, purge_hive_keys

    url, prefix = "redis://127.0.0.1:6379/0", f"bench-{uuid.uuid4().hex[:8]}"
    server = RedisShardTransport(url, "bench", key_prefix=prefix)
    client = RedisShardTransport(url, "bench", key_prefix=prefix)
    try:
        _measure("redis (127.0.0.1:6379)", server, client, "bench", requests)
    finally:
        client.close()
        server.close()
        purge_hive_keys(url, "bench", prefix)


BENCHES: dict[str, Callable[[int], None]] = {
    "eventhubs": eventhubs, "servicebus": servicebus, "redis": redis}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.azure_fakes")
    parser.add_argument("transports", nargs="+", choices=sorted(BENCHES))
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args(argv)
    for name in args.transports:
        BENCHES[name](args.requests)
    return 0


if __name__ == "__main__":
    sys.exit(main())
