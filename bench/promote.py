"""Write throughput of an in-process hive: facts/s of ``promote_fact`` and ``promote_facts``.

    python -m bench.promote [--agents 10 100] [--facts 3000] [--runs 5] [--batch 1000]

Issue 13's measure: one fact per ``promote_fact`` call at N=100, each call returning only
once the fact is stored on every owner of each of its roles (~27 shards: its RF=3 owners and
the owners of each term and of its position key). ``promote_facts`` (``--batch`` facts a
call) is printed next to it for scale. Facts come from the core benchmark's corpus
(:mod:`bench.corpus`), each given a place in a conversation (session, turn) as ``learn``
gives it, so each is also posted under its position key.

Every run builds a fresh hive and promotes the same facts; the median of ``--runs`` runs is
printed in wall-clock facts/s, with the best run and the median in process CPU time (on a
shared machine wall time includes other processes' turns; CPU time mostly does not).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable, Sequence

from bench.common import positive
from bench.corpus import build_corpus
from hive_core.distributed import DistributedHiveGraph
from hive_core.facts import HiveFact

TURNS_PER_SESSION = 20


def positioned_facts(n: int, seed: int = 7) -> list[HiveFact]:
    """``n`` corpus facts, each said at a (session, turn) as a learned turn is."""
    return [HiveFact(f.content, f.concept, f.confidence, tags=f.tags, created_at=f.created_at,
                     metadata={"session": f"s{i // TURNS_PER_SESSION}",
                               "turn": i % TURNS_PER_SESSION})
            for i, f in enumerate(build_corpus(n, 1, seed).facts)]


def one_at_a_time(graph: DistributedHiveGraph, agents: Sequence[str],
                  facts: Sequence[HiveFact], _batch: int) -> None:
    n = len(agents)
    promote = graph.promote_fact
    for i, fact in enumerate(facts):
        promote(agents[i % n], fact)


def batched(graph: DistributedHiveGraph, agents: Sequence[str],
            facts: Sequence[HiveFact], batch: int) -> None:
    for i in range(0, len(facts), batch):
        graph.promote_facts(agents[(i // batch) % len(agents)], facts[i : i + batch])


Ingest = Callable[[DistributedHiveGraph, Sequence[str], Sequence[HiveFact], int], None]


def measure(ingest: Ingest, n_agents: int, facts: Sequence[HiveFact], batch: int
            ) -> tuple[float, float]:
    """(wall seconds, CPU seconds) to ingest ``facts`` into a fresh ``n_agents`` hive; checks
    that every fact was stored RF times, so a fast run is never an incomplete one."""
    graph = DistributedHiveGraph(f"promote{n_agents}")
    try:
        agents = [f"agent_{i}" for i in range(n_agents)]
        for agent in agents:
            graph.register_agent(agent)
        gc.collect()
        wall, cpu = time.perf_counter(), time.process_time()
        ingest(graph, agents, facts, batch)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        held = sum(graph.get_stats()["shards"].values())
        expected = len({f.fact_id for f in facts}) * min(n_agents, graph.ring.replication_factor)
        if held != expected:
            raise SystemExit(f"bench.promote: error: {held} replicas held, {expected} expected")
        return wall, cpu
    finally:
        graph.close()


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"bench.promote: error: {message}\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _OneLineParser(prog="python -m bench.promote", description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=positive, nargs="+", default=[10, 100])
    parser.add_argument("--facts", type=positive, default=3000)
    parser.add_argument("--runs", type=positive, default=5)
    parser.add_argument("--batch", type=positive, default=1000)
    args = parser.parse_args(argv)
    facts = positioned_facts(args.facts)
    print(f"{len(facts)} facts, {args.runs} runs each, median (best) facts/s; "
          "shared machine: timings are indicative")
    for n_agents in args.agents:
        for label, ingest in (("promote_fact", one_at_a_time),
                              (f"promote_facts({args.batch})", batched)):
            runs = [measure(ingest, n_agents, facts, args.batch) for _ in range(args.runs)]
            walls = [len(facts) / w for w, _ in runs]
            cpus = [len(facts) / c for _, c in runs if c > 0]
            print(f"N={n_agents:<4d} {label:22s} wall {statistics.median(walls):9,.0f} "
                  f"({max(walls):,.0f})   cpu {statistics.median(cpus):9,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
