"""Benchmark of a living ring with real agent processes (numbers, not tests).

    python -m bench.membership --agents 20 100 --facts 20000

Per hive size N, in a temporary AMPLIHACK_HOME, through the real ``amplihack-hive`` command
(memory shards, Unix sockets): learn ~``--facts`` facts; while 2 clients ask without pause
(each answer checked against a fresh in-process hive), ``add-agent --start`` one agent, then
``remove-agent`` one; then kill -9 one agent and time until every live agent reports the
ring settled with 0 under-replicated facts. Reported: seconds to settle, facts and bytes
pulled, wrong and partial answers. Targets: a join at N=20 settled <= 10 s; 0 wrong or
partial; RF restored <= rereplicate_after + 30 s.

``--anti-entropy`` instead measures, in one process, the anti-entropy rounds (every shard
exchanges segment digests with its rotation of co-owners, hive_core.gossip) to repair one
wiped shard and a 30% loss on every shard, with the bytes per round and those of a round
between replicas in sync (target: <= ceil(log2 N)+1 rounds). The machine is shared
(2 cores): numbers are indicative, medians where repeated.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import shutil
import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.cli_processes import cli, synthetic_turns
from bench.ring_load import AskLoad, Reference, extract, settled_and_clean, wait_for
from hive_cli import supervisor
from hive_cli.agent_link import AgentLink
from hive_core.config import DEFAULTS
from hive_core.distributed import DistributedHiveGraph
from hive_core.gossip import round_peers
from hive_core.hive_config import HiveConfig
from hive_core.messages import encode
from hive_core.store.base import StoreBatch
from hive_core.store.memory import MemoryShardStore
from hive_core.transports.local import LocalEventBus
from hive_core.transports.registry import hive_auth
from hive_core.transports.unix import UnixSocketTransport

RING_ENV = {"AMPLIHACK_HANDOFF_GRACE": "2", "AMPLIHACK_RING_POLL": "0.5",
            "AMPLIHACK_REREPLICATE_AFTER": "10"}


def _pulled(link: AgentLink, agents: list[str]) -> tuple[int, int]:
    st = link.status(agents, 10.0)
    facts = sum(s["ring"]["pulled"]["facts"] for s in st.values() if isinstance(s, dict))
    size = sum(s["ring"]["pulled"]["bytes"] for s in st.values() if isinstance(s, dict))
    return facts, size


def run_processes(n: int, n_facts: int) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="bench-ring-"))
    os.environ.update(RING_ENV)
    os.environ["AMPLIHACK_HOME"] = str(home)
    name = "ring"
    out: dict[str, Any] = {"agents": n}
    turns = synthetic_turns(n_facts)  # ~1 distinct fact per turn
    corpus = home / "turns.txt"
    corpus.write_text("\n".join(turns) + "\n")
    try:
        cli(home, "create", "--name", name, "--agents", str(n), "--shard-backend", "memory")
        cli(home, "start", "--hive", name, "--timeout", "300")
        learned = cli(home, "learn", "--hive", name, "--file", str(corpus), "--json")
        out["facts"] = learned["unique_facts"]
        facts = extract(turns)
        config = HiveConfig.load(name)
        names = config.agent_names()
        link = AgentLink(name, UnixSocketTransport(config.run_dir, auth=hive_auth(config)))
        questions = [" ".join(t.split()[:7]) + "?" for t in turns[:: max(1, len(turns) // 60)]]

        # -- join -------------------------------------------------------------------------
        joined = [*names, "newbie"]
        ref = Reference(facts, joined, DEFAULTS.replication_factor)
        expected = {q: ref.top(q) for q in questions}
        ref.close()
        askable = list(names)
        load = AskLoad(link, questions, expected, lambda: askable, threads=2).start()
        t0 = time.monotonic()
        cli(home, "add-agent", "--hive", name, "--agent-name", "newbie", "--prompt", "-",
            "--start", "--timeout", "600")
        out["join_settled_s"] = round(time.monotonic() - t0, 2)
        askable.append("newbie")
        wait_for(lambda: settled_and_clean(link, joined), 300, "join cleanup")
        out["join_cleaned_s"] = round(time.monotonic() - t0, 2)
        load.stop()
        out["join_pulled_facts"], out["join_pulled_bytes"] = _pulled(link, joined)
        out["join_answers"], out["join_wrong"] = load.answers, len(load.wrong) + len(load.errors)
        out["join_wrong_first"] = (load.wrong + load.errors)[:3]

        # -- leave ------------------------------------------------------------------------
        stay = [a for a in joined if a != "agent_1"]
        ref = Reference(facts, stay, DEFAULTS.replication_factor)
        expected.update({q: ref.top(q) for q in questions})
        ref.close()
        askable[:] = stay
        before = _pulled(link, stay)
        load = AskLoad(link, questions, expected, lambda: askable, threads=2).start()
        t0 = time.monotonic()
        cli(home, "remove-agent", "--hive", name, "--agent-name", "agent_1", "--timeout", "600")
        out["leave_settled_s"] = round(time.monotonic() - t0, 2)
        wait_for(lambda: settled_and_clean(link, stay), 300, "leave cleanup")
        load.stop()
        after = _pulled(link, stay)
        out["leave_pulled_facts"] = after[0] - before[0]
        out["leave_pulled_bytes"] = after[1] - before[1]
        out["leave_answers"], out["leave_wrong"] = load.answers, len(load.wrong) + len(
            load.errors)
        out["leave_wrong_first"] = (load.wrong + load.errors)[:3]

        # -- death ------------------------------------------------------------------------
        record = supervisor.read_pid(HiveConfig.load(name), "agent_2")
        assert record is not None
        os.kill(record.pid, signal.SIGKILL)
        t0 = time.monotonic()
        alive = [a for a in stay if a != "agent_2"]

        def restored() -> bool:
            st = settled_and_clean(link, alive)
            return bool(st) and all(s["ring"]["under_replicated"] == 0
                                    and "agent_2" in s["ring"]["down"] for s in st.values())

        wait_for(restored, 600, "RF restored", poll=0.5)
        out["death_restored_s"] = round(time.monotonic() - t0, 2)
        out["rereplicate_after_s"] = float(RING_ENV["AMPLIHACK_REREPLICATE_AFTER"])
        link.transport.close()
    finally:
        with contextlib.suppress(SystemExit):  # a failed stop must not hide the result
            cli(home, "stop", "--hive", name)
        shutil.rmtree(home, ignore_errors=True)
    return out


class CountingBus(LocalEventBus):
    """The in-process bus, counting the encoded bytes of every request and reply."""

    def __init__(self, *, strict: bool = False) -> None:
        super().__init__(strict=strict)
        self.bytes = 0

    def request(self, envelopes, timeout):  # type: ignore[no-untyped-def]
        replies = super().request(envelopes, timeout)
        self.bytes += sum(len(encode(e)) for e in envelopes)
        self.bytes += sum(len(encode(r)) for r in replies if not isinstance(r, Exception))
        return replies


def _roles(store: MemoryShardStore) -> set[tuple[str, str]]:
    out = set()
    for r in store.records():
        if r.primary:
            out.add((r.fact_id, ""))
        out.update((r.fact_id, t) for t in r.terms)
    return out


def run_anti_entropy(n: int, n_facts: int, seed: int = 5) -> dict[str, Any]:
    """Rounds until a wiped shard, then a 30% loss on every shard, are repaired."""
    rng = random.Random(seed)
    turns = synthetic_turns(n_facts)  # ~1 distinct fact per turn
    facts = list(extract(turns).values())
    out: dict[str, Any] = {"agents": n, "facts": len(facts)}
    for case in ("wiped", "lost30"):
        bus = CountingBus()
        graph = DistributedHiveGraph("ae", transport=bus)
        names = [f"a{i}" for i in range(n)]
        for a in names:
            graph.register_agent(a)
        graph.promote_facts(names[0], facts)
        before = {a: _roles(graph.shard_store(a)) for a in names}  # type: ignore[arg-type]
        for a in ([names[0]] if case == "wiped" else names):
            store = graph.shard_store(a)
            records = list(store.records())
            keep = [] if case == "wiped" else [r for r in records if rng.random() >= 0.3]
            fresh = MemoryShardStore(a, bm25=graph.bm25)
            if keep:
                fresh.put(StoreBatch.from_records(keep))
            graph._servers[a].store = fresh  # the bench plays a disk failure
        # What can come back: roles some replica still holds (a role lost on all of its
        # replicas is gone; anti-entropy cannot invent it).
        survived = set().union(*(_roles(graph.shard_store(a)) for a in names))  # type: ignore[arg-type]
        want = {a: len(before[a] & survived) for a in names}
        rounds, per_round = 0, []
        while rounds < 60 and any(
                len(_roles(graph.shard_store(a))) < want[a]  # type: ignore[arg-type]
                for a in names):
            rounds += 1
            bus.bytes = 0
            for a in names:  # as an agent's gossip loop after its first round
                peers = round_peers([p for p in names if p != a], rounds, n)
                graph.gossip_round(a, salt=rounds, peers=peers)
            per_round.append(bus.bytes)
        out[f"{case}_rounds"] = rounds
        out[f"{case}_bytes_per_round_median"] = int(statistics.median(per_round or [0]))
        bus.bytes = 0
        for a in names:  # one more round, replicas in sync: digests only
            graph.gossip_round(a, salt=rounds + 1,
                               peers=round_peers([p for p in names if p != a], rounds + 1, n))
        out["in_sync_bytes_per_round"] = bus.bytes
        graph.close()
    out["target_rounds"] = math.ceil(math.log2(n)) + 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, nargs="+", default=[20])
    parser.add_argument("--facts", type=int, default=20_000)
    parser.add_argument("--anti-entropy", action="store_true")
    args = parser.parse_args()
    for n in args.agents:
        result = run_anti_entropy(n, args.facts) if args.anti_entropy else run_processes(
            n, args.facts)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
