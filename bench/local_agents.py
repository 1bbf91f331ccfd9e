"""Latency of a local hive: real agent processes on Unix sockets (numbers are indicative).

    python -m bench.local_agents --agents 5 --turns 200 --questions 100

Starts ``--agents`` ``python -m agent_runtime`` processes (memory shards) in a temporary
AMPLIHACK_HOME, then measures: a raw status round trip, LEARN of batches of turns, and ASK
at a rotating agent. Prints p50/p95 per operation and the facts held. Every child is killed
by PID at the end.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from bench.common import pct, turn
from hive_core.errors import TransportError
from hive_core.hive_config import AgentConfig, HiveConfig
from hive_core.messages import Envelope, MessageType
from hive_core.transports.base import check_reply
from hive_core.transports.registry import hive_auth
from hive_core.transports.unix import UnixSocketTransport

HIVE = "bench"


def call(client: UnixSocketTransport, kind: MessageType, target: str, payload: dict) -> dict:
    [reply] = client.request([Envelope(kind, HIVE, "bench", target, payload)], 30.0)
    return check_reply(reply).payload


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", type=int, default=5)
    ap.add_argument("--turns", type=int, default=200)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--questions", type=int, default=100)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="hb") as home:
        env = {**os.environ, "AMPLIHACK_HOME": home}
        env.pop("ANTHROPIC_API_KEY", None)
        os.environ["AMPLIHACK_HOME"] = home
        names = [f"a{i}" for i in range(args.agents)]
        config = HiveConfig(name=HIVE, shard_backend="memory",
                            agents=tuple(AgentConfig(n) for n in names))
        config.save()
        procs = [subprocess.Popen([sys.executable, "-m", "agent_runtime", "--hive", HIVE,
                                   "--agent", n], env=env, stderr=subprocess.DEVNULL)
                 for n in names]
        client = UnixSocketTransport(config.run_dir, auth=hive_auth(config))
        try:
            started = time.monotonic()
            deadline = started + 60
            pending = set(names)
            while pending and time.monotonic() < deadline:
                for n in sorted(pending):
                    try:
                        call(client, MessageType.SHARD_QUERY, n, {"op": "status"})
                        pending.discard(n)
                    except TransportError:
                        time.sleep(0.05)
            if pending:
                raise SystemExit(f"agents not ready within 60s: {sorted(pending)}")
            print(f"{args.agents} agents ready in {time.monotonic() - started:.2f}s")

            status = []
            for i in range(200):
                t = time.perf_counter()
                call(client, MessageType.SHARD_QUERY, names[i % len(names)], {"op": "status"})
                status.append((time.perf_counter() - t) * 1000)
            learn, facts = [], 0
            for start in range(0, args.turns, args.batch):
                turns = [turn(i) for i in range(start, min(args.turns, start + args.batch))]
                t = time.perf_counter()
                out = call(client, MessageType.LEARN, names[start % len(names)],
                           {"turns": turns})
                learn.append((time.perf_counter() - t) * 1000)
                facts += out["facts"]
            ask, found = [], 0
            for q in range(args.questions):
                i = (q * 7) % args.turns
                t = time.perf_counter()
                out = call(client, MessageType.ASK, names[q % len(names)],
                           {"question": f"What caused INC-{1000 + i}?", "limit": 3})
                ask.append((time.perf_counter() - t) * 1000)
                found += any(f"CVE-2024-{3000 + i}" in f["content"] for f in out["facts"][:1])
            held = sum(call(client, MessageType.SHARD_QUERY, n, {"op": "status"})["facts"]
                       for n in names)
            for label, values in (("status round trip", status),
                                  (f"LEARN ({args.batch} turns)", learn), ("ASK", ask)):
                print(f"{label:22s} p50 {statistics.median(values):7.2f} ms   "
                      f"p95 {pct(values, 0.95):7.2f} ms   n={len(values)}")
            print(f"facts learned {facts}, replicas held {held} (RF {config.replication_factor})"
                  f", ASK top-1 correct {found}/{args.questions}")
        finally:
            client.close()
            for proc in procs:
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=5)


if __name__ == "__main__":
    main()
