"""Core benchmark: does a hive of N shards answer like one memory, fast and small enough?

Run ``python -m bench.core --agents 100 --facts 20000 [--backend memory|kuzu]
[--questions 500] [--seed 7] [--json]``.

It builds a seeded synthetic corpus (:mod:`bench.corpus`), ingests it into hive A (N agents)
and hive B (the same engine with one agent), asks every question of both, and prints shard
balance, shards queried per question, recall@10 and MRR at N and at 1, how often the two
top-10 lists are identical, query latency, ingest rate and peak RSS, each against the target
of issue 2 (printed as PASS/MISS, never asserted: timings depend on the machine and on
whatever else runs on it, so the numbers are indicative).

Peak RSS is read right after hive A has answered, before hive B exists, so it is the
process holding the corpus and the N-agent hive (``ru_maxrss`` never goes down).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psutil

from bench.common import positive
from bench.corpus import Corpus, Question, build_corpus
from hive_core.distributed import DistributedHiveGraph
from hive_core.errors import HiveError
from hive_core.evaluation.runner import percentile
from hive_core.facts import HiveFact

BATCH = 1000
TOP_K = 10


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    metric: str
    op: str  # "<=" or ">="
    bound: float

    def met(self, value: float) -> bool:
        return value <= self.bound if self.op == "<=" else value >= self.bound


TARGETS = (
    Target("median shards per question <= 5", "shards_median", "<=", 5),
    Target("identical top-10 at N and 1 >= 99%", "identical_top10_pct", ">=", 99.0),
    Target("max/mean facts per shard <= 1.3", "shard_max_over_mean", "<=", 1.3),
    Target("ingest >= 20,000 facts/s", "ingest_facts_per_s", ">=", 20_000),
    Target("query p50 <= 2 ms", "query_p50_ms", "<=", 2.0),
    Target("peak RSS <= 500 MB", "peak_rss_mb", "<=", 500),
)


@dataclass(slots=True)
class HiveRun:
    """What one hive did: timings, shard counts, and each question's top-10 ids."""

    create_s: float
    ingest_s: float
    ingest_gc_s: float
    shard_counts: list[int]
    top10: list[list[str]]
    shards_queried: list[int]
    latencies_ms: list[float]
    partial: int


class _GcTimer:
    """Seconds the garbage collector ran while the block ran (it shows up as ingest time)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def _callback(self, phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._start

    def __enter__(self) -> _GcTimer:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *_exc: object) -> None:
        gc.callbacks.remove(self._callback)


def _run_hive(
    name: str, backend: str, n_agents: int, corpus: Corpus, storage: str, seed: int
) -> HiveRun:
    graph = DistributedHiveGraph(name, shard_backend=backend, storage_path=storage)
    try:
        agent_ids = [f"agent_{i}" for i in range(n_agents)]
        t0 = time.perf_counter()
        for agent_id in agent_ids:
            graph.register_agent(agent_id)
        create_s = time.perf_counter() - t0
        facts: list[HiveFact] = corpus.facts
        with _GcTimer() as gc_timer:
            t0 = time.perf_counter()
            for i in range(0, len(facts), BATCH):
                graph.promote_facts(agent_ids[(i // BATCH) % n_agents], facts[i : i + BATCH])
            ingest_s = time.perf_counter() - t0
        counts = list(graph.get_stats()["shards"].values())
        rng = random.Random(seed)
        top10, queried, latencies, partial = [], [], [], 0
        for question in corpus.questions:
            asker = rng.choice(agent_ids)
            t0 = time.perf_counter()
            result = graph.search(question.text, limit=TOP_K, asking_agent=asker)
            latencies.append((time.perf_counter() - t0) * 1000.0)
            top10.append([f.fact_id for f in result.facts])
            queried.append(len(result.shards_queried))
            partial += result.partial
        return HiveRun(create_s, ingest_s, gc_timer.seconds, counts, top10, queried, latencies,
                       partial)
    finally:
        graph.close()


def _recall_mrr(
    questions: Sequence[Question], top10: Sequence[Sequence[str]]
) -> tuple[float, float]:
    hits, rr = 0, 0.0
    for question, ids in zip(questions, top10, strict=True):
        ranks = [i for i, fid in enumerate(ids, 1) if fid in question.expected]
        if ranks:
            hits += 1
            rr += 1.0 / ranks[0]
    n = max(1, len(questions))
    return hits / n, rr / n


def _peak_rss_mb() -> float:
    """Peak resident set of this process (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def run_benchmark(
    agents: int = 100, facts: int = 20_000, questions: int = 500, seed: int = 7,
    backend: str = "memory",
) -> dict[str, Any]:
    """Every number the benchmark reports, as one plain dict (what ``--json`` prints)."""
    corpus = build_corpus(facts, questions, seed)
    rss_before_mb = psutil.Process().memory_info().rss / (1024 * 1024)
    storage = tempfile.mkdtemp(prefix="hive-bench-")
    try:
        hive_a = _run_hive("bench", backend, agents, corpus, os.path.join(storage, "a"), seed)
        peak_rss_mb = _peak_rss_mb()
        hive_b = _run_hive("bench-one", backend, 1, corpus, os.path.join(storage, "b"), seed)
    finally:
        shutil.rmtree(storage, ignore_errors=True)

    recall_n, mrr_n = _recall_mrr(corpus.questions, hive_a.top10)
    recall_1, mrr_1 = _recall_mrr(corpus.questions, hive_b.top10)
    same = sum(a == b for a, b in zip(hive_a.top10, hive_b.top10, strict=True))
    counts = hive_a.shard_counts
    mean = statistics.fmean(counts) if counts else 0.0
    n_q = max(1, len(corpus.questions))
    metrics: dict[str, Any] = {
        "backend": backend, "agents": agents, "facts": len(corpus.facts),
        "questions": len(corpus.questions), "seed": seed,
        "cores": os.cpu_count(), "machine": f"{platform.machine()} {platform.system()}",
        "python": platform.python_version(),
        "creation_s": hive_a.create_s,
        "ingest_s": hive_a.ingest_s,
        "ingest_gc_s": hive_a.ingest_gc_s,
        "gc_threshold": list(gc.get_threshold()),
        "ingest_facts_per_s": len(corpus.facts) / hive_a.ingest_s if hive_a.ingest_s else 0.0,
        "ingest_facts_per_s_n1": len(corpus.facts) / hive_b.ingest_s if hive_b.ingest_s else 0.0,
        "shard_min": min(counts, default=0), "shard_max": max(counts, default=0),
        "shard_mean": mean, "shard_max_over_mean": max(counts, default=0) / mean if mean else 0.0,
        "replica_facts": sum(counts),
        "shards_median": statistics.median(hive_a.shards_queried) if hive_a.shards_queried else 0,
        "shards_p95": percentile(hive_a.shards_queried, 95) if hive_a.shards_queried else 0,
        "shards_max": max(hive_a.shards_queried, default=0),
        "recall10_n": recall_n, "mrr_n": mrr_n, "recall10_1": recall_1, "mrr_1": mrr_1,
        "identical_top10_pct": 100.0 * same / n_q,
        "partial_results": hive_a.partial,
        "query_p50_ms": percentile(hive_a.latencies_ms, 50) if hive_a.latencies_ms else 0.0,
        "query_p95_ms": percentile(hive_a.latencies_ms, 95) if hive_a.latencies_ms else 0.0,
        "query_p50_ms_n1": percentile(hive_b.latencies_ms, 50) if hive_b.latencies_ms else 0.0,
        "rss_before_hive_mb": rss_before_mb,
        "peak_rss_mb": peak_rss_mb,
    }
    by_kind: dict[str, list[int]] = {}
    for i, q in enumerate(corpus.questions):
        by_kind.setdefault(q.kind, []).append(i)
    metrics["by_kind_n"] = {
        kind: dict(zip(("recall10", "mrr"), _recall_mrr(
            [corpus.questions[i] for i in idx], [hive_a.top10[i] for i in idx]), strict=True),
            questions=len(idx))
        for kind, idx in sorted(by_kind.items())
    }
    metrics["targets"] = {t.name: t.met(metrics[t.metric]) for t in TARGETS}
    return metrics


def render(m: dict[str, Any]) -> None:
    """The human table (``--json`` bypasses it)."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"[bold]hive_core benchmark[/]: backend={m['backend']} agents={m['agents']} "
        f"facts={m['facts']} questions={m['questions']} seed={m['seed']} | "
        f"{m['cores']} cores, {m['machine']}, Python {m['python']}, "
        f"gc threshold {'/'.join(map(str, m['gc_threshold']))} "
        "(shared machine: timings are indicative)"
    )
    table = Table(show_header=True, header_style="bold")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("agent creation (s)", f"{m['creation_s']:.2f}"),
        ("ingest (s)", f"{m['ingest_s']:.2f}"),
        ("  of which garbage collection (s)", f"{m['ingest_gc_s']:.2f}"),
        ("ingest facts/s (N / N=1)",
         f"{m['ingest_facts_per_s']:,.0f} / {m['ingest_facts_per_s_n1']:,.0f}"),
        ("facts per shard min / mean / max",
         f"{m['shard_min']} / {m['shard_mean']:.1f} / {m['shard_max']}"),
        ("facts per shard max/mean", f"{m['shard_max_over_mean']:.3f}"),
        ("replica facts (facts x RF)", f"{m['replica_facts']:,}"),
        ("shards per question median / p95 / max",
         f"{m['shards_median']:g} / {m['shards_p95']:g} / {m['shards_max']}"),
        ("recall@10 at N / at 1", f"{m['recall10_n']:.3f} / {m['recall10_1']:.3f}"),
        ("MRR@10 at N / at 1", f"{m['mrr_n']:.3f} / {m['mrr_1']:.3f}"),
        ("identical top-10 N vs 1", f"{m['identical_top10_pct']:.1f}%"),
        ("partial results at N", str(m["partial_results"])),
        ("query p50 / p95 (ms) at N", f"{m['query_p50_ms']:.2f} / {m['query_p95_ms']:.2f}"),
        ("query p50 (ms) at N=1", f"{m['query_p50_ms_n1']:.2f}"),
        ("RSS before hive (MB)", f"{m['rss_before_hive_mb']:.0f}"),
        ("peak RSS with N-agent hive (MB)", f"{m['peak_rss_mb']:.0f}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    console.print("MRR@10 at N by question kind: " + ", ".join(
        f"{kind} {v['mrr']:.2f}" for kind, v in m["by_kind_n"].items()))
    targets = Table(show_header=True, header_style="bold")
    targets.add_column("target")
    targets.add_column("measured", justify="right")
    targets.add_column("result")
    for t in TARGETS:
        ok = m["targets"][t.name]
        targets.add_row(t.name, f"{m[t.metric]:,.3g}" if m[t.metric] < 1000
                        else f"{m[t.metric]:,.0f}", "[green]PASS[/]" if ok else "[red]MISS[/]")
    console.print(targets)


class _OneLineParser(argparse.ArgumentParser):
    """Bad input is one clear line and exit status 2, not a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"bench.core: error: {message}\n")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = _OneLineParser(prog="python -m bench.core", description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=positive, default=100)
    parser.add_argument("--facts", type=positive, default=20_000)
    parser.add_argument("--questions", type=positive, default=500)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--backend", choices=("memory", "kuzu"), default="memory")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument(
        "--gc-gen0", type=positive, default=None, metavar="N",
        help="set the garbage collector's generation-0 threshold (Python's default is 700) "
             "to see how much of ingest is collector time; default: leave the runtime alone")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.gc_gen0 is not None:
        _, gen1, gen2 = gc.get_threshold()
        gc.set_threshold(args.gc_gen0, gen1, gen2)
    try:
        metrics = run_benchmark(args.agents, args.facts, args.questions, args.seed, args.backend)
    except ImportError as exc:
        print(f"bench.core: error: backend {args.backend!r} is not available ({exc})",
              file=sys.stderr)
        return 1
    except HiveError as exc:
        print(f"bench.core: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        render(metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
