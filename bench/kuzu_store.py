"""Kuzu shard backend at hive scale: creation, ingest, query latency, peak RSS, parity.

    python -m bench.kuzu_store --agents 100 --facts 20000

Builds a synthetic corpus (people, projects, incidents with ids and numbers), loads it into a
DistributedHiveGraph on the Kuzu backend (one directory per agent under a temporary folder)
and into one on the memory backend, then asks the same questions of both. Numbers are
printed plainly; on a shared machine they are indicative only.
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from hive_core.distributed import DistributedHiveGraph
from hive_core.facts import HiveFact

PEOPLE = ["Alice", "Bob", "Carmen", "Dmitri", "Eve", "Farah", "Gus", "Hana", "Ivan", "Jun",
          "Kofi", "Lena", "Marco", "Nia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tara"]
PROJECTS = ["Apollo", "Borealis", "Cobalt", "Delta", "Ember", "Falcon", "Granite", "Helix",
            "Iris", "Juniper", "Kestrel", "Lumen", "Mosaic", "Nimbus", "Orion", "Pulsar"]
SYSTEMS = ["billing", "gateway", "search", "ledger", "auth", "scheduler", "cache", "reports"]


def corpus(n: int, seed: int = 7) -> list[HiveFact]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        person, project, system = rng.choice(PEOPLE), rng.choice(PROJECTS), rng.choice(SYSTEMS)
        kind = i % 3
        if kind == 0:
            text = (f"{person} leads project {project} release v{rng.randint(1, 9)}."
                    f"{rng.randint(0, 40)} with a budget of ${rng.randint(1, 90)}.{i % 10}M")
        elif kind == 1:
            text = (f"Incident INC-{1000 + i} hit the {system} service at 10.0.{i % 250}.0/24; "
                    f"{person} traced it to CVE-2024-{1000 + rng.randint(0, 8999)}")
        else:
            text = (f"The {project} deadline for the {system} migration moved to "
                    f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}, ticket {project[:3].upper()}-{i}")
        out.append(HiveFact(text, concept=project.lower(), confidence=0.5, tags=(system,),
                            created_at=1_700_000_000.0 + i, metadata={"n": i}))
    return out


def questions(facts: list[HiveFact], n: int, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    templates = ["Who leads project {p}?", "What happened in incident INC-{i}?",
                 "When is the {p} deadline for the {s} migration?", "Which CVE did {who} trace?",
                 "What is the budget of {p}?"]
    return [rng.choice(templates).format(p=rng.choice(PROJECTS), s=rng.choice(SYSTEMS),
                                         who=rng.choice(PEOPLE),
                                         i=1000 + rng.randrange(len(facts)))
            for _ in range(n)]


def build(backend: str, agents: int, storage: Path | None) -> tuple[DistributedHiveGraph, float]:
    start = time.perf_counter()
    hive = DistributedHiveGraph("bench", shard_backend=backend, storage_path=storage)
    for a in range(agents):
        hive.register_agent(f"agent-{a:03d}")
    return hive, time.perf_counter() - start


def ingest(hive: DistributedHiveGraph, facts: list[HiveFact], agents: int, batch: int) -> float:
    start = time.perf_counter()
    for b, i in enumerate(range(0, len(facts), batch)):
        hive.promote_facts(f"agent-{b % agents:03d}", facts[i : i + batch])
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.kuzu_store", description=__doc__)
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--facts", type=int, default=20000)
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args(argv)
    if min(args.agents, args.facts, args.questions, args.batch) < 1:
        print("error: --agents, --facts, --questions and --batch must be >= 1", file=sys.stderr)
        return 2
    facts, asks = corpus(args.facts), questions(corpus(args.facts), args.questions)
    print(f"corpus: {len(facts)} facts, {len(asks)} questions, {args.agents} agents")
    with tempfile.TemporaryDirectory(prefix="bench-kuzu-") as tmp:
        hive, created = build("kuzu", args.agents, Path(tmp))
        try:
            print(f"kuzu creation: {created:.2f} s for {args.agents} agents")
            took = ingest(hive, facts, args.agents, args.batch)
            print(f"kuzu ingest: {len(facts) / took:,.0f} facts/s ({took:.2f} s, "
                  f"batches of {args.batch})")
            latencies, kuzu_top = [], []
            for q in asks:
                t0 = time.perf_counter()
                res = hive.search(q, limit=10)
                latencies.append((time.perf_counter() - t0) * 1000)
                kuzu_top.append([f.fact_id for f in res.facts])
                if res.partial:
                    print(f"error: partial result for {q!r}: {res.shards_failed}",
                          file=sys.stderr)
                    return 1
            latencies.sort()
            p95 = latencies[int(0.95 * (len(latencies) - 1))]
            print(f"kuzu query: p50 {statistics.median(latencies):.2f} ms, p95 {p95:.2f} ms")
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"kuzu peak RSS (process, after kuzu phase): {peak:.0f} MB")
        finally:
            hive.close()
    memory, _ = build("memory", args.agents, None)
    try:
        took = ingest(memory, facts, args.agents, args.batch)
        print(f"memory ingest (reference, same machine): {len(facts) / took:,.0f} facts/s")
        same = sum(
            [f.fact_id for f in memory.search(q, limit=10).facts] == top
            for q, top in zip(asks, kuzu_top, strict=True)
        )
    finally:
        memory.close()
    print(f"top-10 identical to memory backend: {100.0 * same / len(asks):.1f}% "
          f"({same}/{len(asks)})")
    return 0 if same == len(asks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
