"""What authentication costs a real question: ASK p50 through agent processes on Redis, with
the hive's authentication and without any (numbers are indicative: a shared 2-core box).

    python -m bench.auth_ask --agents 5 --turns 300 --questions 400 --rounds 4

bench.auth_cost measures the worst case, an echo agent whose request does no work, so the
four MACs of a round trip (request and reply, each signed and verified) weigh most there.
This measures what a user waits for: an ASK sent to one agent, which routes the question to
<= 5 shards over Redis (statistics and scoring rounds, each signed), ranks and answers.

Each round starts two hives side by side under fresh key prefixes, ``--agents`` agent
processes each (memory shards, each agent with its own Redis transport and its own record
of handled requests on disk, as ``amplihack-hive start`` runs them): one with the hive's
authentication, one with a pass-through policy (bench.auth_cost.PassThrough). Both learn the
same turns; questions then alternate between the two hives in blocks of ``--block`` (ABBA),
so drift in the machine's load hits both alike. Printed: the p50 of each per round, the a/b
per round, and the median of the rounds' a/b (the headline; the target is < 5%).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.auth_cost import REPO, URL, transport
from bench.common import pct, turn
from hive_core.auth import new_key
from hive_core.hive_config import AgentConfig, HiveConfig
from hive_core.messages import Envelope, MessageType
from hive_core.transports.base import check_reply
from hive_core.transports.redis import purge_hive_keys

HIVE = "bench"  # the hive bench.auth_cost.transport opens
READY_WITHIN = 90.0


def hive_config(prefix: str, names: list[str]) -> HiveConfig:
    return HiveConfig(name=HIVE, transport="redis", connection_string=URL, key_prefix=prefix,
                      shard_backend="memory", agents=tuple(AgentConfig(n) for n in names))


def serve(prefix: str, names: list[str], name: str, key: bytes, on: bool) -> None:
    """One agent (a child process): serves until its stdin closes."""
    from agent_runtime.agent import Agent  # the agent's imports only in the children

    home = Path(os.environ["AMPLIHACK_HOME"])
    agent = Agent(hive_config(prefix, names), name,
                  transport=transport(f"redis:{prefix}", key, on, home / "replay" / name))
    agent.start()
    print("ready", flush=True)
    sys.stdin.read()
    agent.stop()


class Hive:
    """``agents`` agent processes under one key prefix, and this process's client of them."""

    def __init__(self, prefix: str, agents: int, key: bytes, on: bool, home: Path) -> None:
        self.prefix, self.on = prefix, on
        self.names = [f"a{i}" for i in range(agents)]
        env = {**os.environ, "AMPLIHACK_HOME": str(home)}
        env.pop("ANTHROPIC_API_KEY", None)
        self.procs = [subprocess.Popen(
            [sys.executable, "-m", "bench.auth_ask", "--serve", prefix, "--key", key.hex(),
             "--names", ",".join(self.names), "--name", name, *([] if on else ["--plain"])],
            cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True) for name in self.names]
        self.client = transport(f"redis:{prefix}", key, on)

    def call(self, kind: MessageType, target: str, payload: dict[str, Any],
             timeout: float = 30.0) -> dict[str, Any]:
        env = Envelope(kind, HIVE, "bench", target, payload)
        return check_reply(self.client.request([env], timeout)[0]).payload

    def wait_ready(self) -> None:
        """Every agent answers and all of them are on one settled ring of every agent."""
        for proc in self.procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + READY_WITHIN
        while time.monotonic() < deadline:
            try:
                rings = [self.call(MessageType.SHARD_QUERY, n, {"op": "status"}, 5.0)["ring"]
                         for n in self.names]
            except Exception:  # an agent still joining: ask again
                rings = []
            if rings and all(r["settled"] and sorted(r["current"]) == self.names
                             for r in rings) and len({r["epoch"] for r in rings}) == 1:
                return
            time.sleep(0.2)
        raise SystemExit(f"the hive under {self.prefix} did not settle within "
                         f"{READY_WITHIN:g}s")

    def learn(self, turns: list[str], batch: int = 20) -> int:
        facts = 0
        for i in range(0, len(turns), batch):
            out = self.call(MessageType.LEARN, self.names[i // batch % len(self.names)],
                            {"turns": turns[i:i + batch]}, 60.0)
            if out["failed_shards"]:
                raise SystemExit(f"learn failed on {out['failed_shards']}")
            facts += out["facts"]
        return facts

    def ask(self, question: str, target: str) -> tuple[float, int]:
        """Milliseconds of one ASK, and how many shards it asked."""
        start = time.perf_counter()
        out = self.call(MessageType.ASK, target, {"question": question, "limit": 5})
        return (time.perf_counter() - start) * 1000, len(out.get("shards_queried", []))

    def close(self) -> None:
        self.client.close()
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        purge_hive_keys(URL, HIVE, self.prefix)


def round_trip(agents: int, turns: int, questions: int, block: int, r: int) -> float:
    """One round: two fresh hives, the same turns, questions ABBA by block; the a/b in %."""
    key = new_key()
    base = f"bench-ask-{uuid.uuid4().hex[:8]}"
    order = (True, False) if r % 2 == 0 else (False, True)
    with tempfile.TemporaryDirectory(prefix="auth-ask-") as tmp:
        hives: dict[bool, Hive] = {}
        try:
            for on in order:
                hives[on] = Hive(f"{base}-{'on' if on else 'off'}", agents, key, on,
                                 Path(tmp) / ("on" if on else "off"))
            texts = [turn(i) for i in range(turns)]
            facts = {}
            for on in order:
                hives[on].wait_ready()
                facts[on] = hives[on].learn(texts)
            rng = random.Random(r)
            asks = [(f"What caused INC-{1000 + rng.randrange(turns)}?", f"a{q % agents}")
                    for q in range(questions)]
            ms: dict[bool, list[float]] = {True: [], False: []}
            shards: list[int] = []
            for q in range(0, len(asks), block):
                for on in order if q // block % 2 == 0 else order[::-1]:
                    for question, target in asks[q:q + block]:
                        took, asked = hives[on].ask(question, target)
                        ms[on].append(took)
                        shards.append(asked)
        finally:
            for hive in hives.values():
                hive.close()
    ratio = 100 * (statistics.median(ms[True]) / statistics.median(ms[False]) - 1)
    print(f"  round {r}: ASK p50 with auth {statistics.median(ms[True]):6.2f} ms "
          f"(p95 {pct(ms[True], 0.95):6.2f}), without {statistics.median(ms[False]):6.2f} ms "
          f"(p95 {pct(ms[False], 0.95):6.2f})  a/b {ratio:+5.1f}%  facts {facts[True]}/"
          f"{facts[False]}  shards asked median {statistics.median(shards):g}", flush=True)
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=5)
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--questions", type=int, default=400, help="per hive and round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--block", type=int, default=10,
                        help="questions in a row to one hive before switching (ABBA)")
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # an agent's own mode
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--names", help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    parser.add_argument("--plain", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve, args.names.split(","), args.name, bytes.fromhex(args.key),
                     not args.plain)
    print(f"ASK through {args.agents} agent processes on Redis, {args.turns} turns, "
          f"{args.questions} questions per hive and round, blocks of {args.block}:")
    ratios = sorted(round_trip(args.agents, args.turns, args.questions, args.block, r)
                    for r in range(args.rounds))
    print(f"authentication adds {statistics.median(ratios):+.1f}% to the ASK p50 (median of "
          f"{args.rounds} rounds, {ratios[0]:+.1f}..{ratios[-1]:+.1f}%)")


if __name__ == "__main__":
    main()
