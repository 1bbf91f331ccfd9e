"""Cross-shard questions over Redis Streams (numbers are indicative: a shared 2-core box).

    python -m bench.redis_transport --agents 20 100 --turns 400 --questions 200

For each N: N agents run in this process, each a real :class:`agent_runtime.agent.Agent`
with its OWN :class:`RedisShardTransport` (own connections, stream, consumer group, reply
stream, heartbeats), so every cross-shard hop is a Redis round trip exactly as between
machines. Measured:

* ``search``: one question routed by an agent to <= query_fanout shards (stats + score
  rounds over Redis), the per-question latency of the hive's memory;
* ``ask``: the same plus the client -> agent ASK hop and the answer;
* ``msgs/s``: request/reply round trips per second with 8 concurrent callers.

Keys live under a fresh prefix and are deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import threading
import time
import uuid

import redis

from agent_runtime.agent import Agent
from bench.common import pct, turn
from hive_core.hive_config import AgentConfig, HiveConfig
from hive_core.messages import Envelope, MessageType
from hive_core.redact import redact_secret
from hive_core.transports.base import check_reply
from hive_core.transports.redis import RedisShardTransport

URL = os.environ.get("AMPLIHACK_REDIS_URL", "redis://127.0.0.1:6379/0")


def run(n: int, turns: int, questions: int, seconds: float) -> None:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    names = [f"a{i}" for i in range(n)]
    config = HiveConfig(name="bench", transport="redis", connection_string=URL,
                        key_prefix=prefix, shard_backend="memory",
                        agents=tuple(AgentConfig(x) for x in names))
    agents: list[Agent] = []
    client = RedisShardTransport(URL, "bench", key_prefix=prefix)
    admin = redis.Redis.from_url(URL)
    try:
        started = time.perf_counter()
        for name in names:
            agent = Agent(config, name, transport=RedisShardTransport(
                URL, "bench", key_prefix=prefix, max_workers=4))
            agent.start()
            agents.append(agent)
        print(f"N={n}: {n} agents up in {time.perf_counter() - started:.1f}s")

        def call(kind: MessageType, target: str, payload: dict) -> dict:
            env = Envelope(kind, "bench", "bench", target, payload)
            return check_reply(client.request([env], 30.0)[0]).payload

        started = time.perf_counter()
        facts = 0
        for b in range(0, turns, 10):
            out = call(MessageType.LEARN, names[b // 10 % n],
                       {"turns": [turn(i) for i in range(b, min(turns, b + 10))]})
            assert out["failed_shards"] == [], out
            facts += out["facts"]
        took = time.perf_counter() - started
        print(f"  learn: {turns} turns -> {facts} facts in {took:.2f}s "
              f"({facts / took:.0f} facts/s)")

        rng = random.Random(7)
        search_ms: list[float] = []
        ask_ms: list[float] = []
        shards: list[int] = []
        hits = 0
        for q in range(questions):
            i = rng.randrange(turns)
            question = f"What caused INC-{1000 + i}?"
            agent = agents[q % n]
            assert agent.graph is not None
            t0 = time.perf_counter()
            result = agent.graph.search(question, 5, asking_agent=agent.name)
            search_ms.append((time.perf_counter() - t0) * 1000)
            shards.append(len(result.shards_queried))
            t0 = time.perf_counter()
            answer = call(MessageType.ASK, agent.name, {"question": question, "limit": 5})
            ask_ms.append((time.perf_counter() - t0) * 1000)
            hits += bool(answer["facts"]) and f"CVE-2024-{3000 + i}" in answer["facts"][0][
                "content"]
        print(f"  search: p50 {statistics.median(search_ms):.2f} ms, "
              f"p95 {pct(search_ms, 0.95):.2f} ms, shards/question "
              f"{statistics.mean(shards):.1f} (of {n})")
        print(f"  ask:    p50 {statistics.median(ask_ms):.2f} ms, p95 {pct(ask_ms, 0.95):.2f} ms,"
              f" top hit right {hits}/{questions}")

        stop = time.monotonic() + seconds
        done = [0] * 8

        def caller(w: int) -> None:
            r = random.Random(w)
            while time.monotonic() < stop:
                env = Envelope(MessageType.SHARD_QUERY, "bench", "bench", names[r.randrange(n)],
                               {"op": "count"})
                check_reply(client.request([env], 10.0)[0])
                done[w] += 1

        threads = [threading.Thread(target=caller, args=(w,)) for w in range(8)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rate = sum(done) / (time.perf_counter() - t0)
        print(f"  msgs/s: {rate:.0f} request/reply round trips per second (8 callers)")
    finally:
        for agent in agents:
            agent.stop()
        client.close()
        keys = list(admin.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            admin.delete(*keys)
        admin.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", type=int, nargs="+", default=[20, 100])
    ap.add_argument("--turns", type=int, default=400)
    ap.add_argument("--questions", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    print(f"Redis at {redact_secret(URL)}; numbers are indicative (shared machine)")
    for n in args.agents:
        run(n, args.turns, args.questions, args.seconds)


if __name__ == "__main__":
    main()
