"""Benchmark of the process supervisor with real agent processes (numbers, not tests).

    python -m bench.cli_processes --agents 20
    python -m bench.cli_processes --agents 100

Measures, in a temporary AMPLIHACK_HOME, through the real ``amplihack-hive`` command:
seconds until all agents report ready, total and per-agent RSS, seconds to learn 5,000
synthetic turns; then ask latency p50/p95 measured in this process through the hive's
transport (``AgentLink.ask``), so interpreter start-up of the CLI is excluded.
Targets (2-core machine): 100 agents ready <= 30 s and <= 60 MB RSS each; 5,000 turns
<= 60 s; ask p50 <= 50 ms. The machine is shared: the numbers are indicative only.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import pct
from hive_cli import supervisor
from hive_cli.agent_link import AgentLink
from hive_cli.transport_factory import open_transport
from hive_core.hive_config import HiveConfig

PEOPLE = ["Ada Lovelace", "Grace Hopper", "Alan Turing", "Maria Okafor", "Tomasz Wilk",
          "Priya Raman", "Dmitri Sokolov", "Aisha Bello", "Kenji Watanabe", "Elena Petrova"]
SERVICES = ["billing", "search", "checkout", "notifications", "identity", "exports",
            "scheduler", "warehouse", "gateway", "payments"]


def synthetic_turns(n: int, seed: int = 7) -> list[str]:
    """Distinct, fact-bearing turns about people, projects, incidents and metrics."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        person, svc = rng.choice(PEOPLE), rng.choice(SERVICES)
        kind = i % 4
        if kind == 0:
            out.append(f"{person} leads project P{i} which migrates the {svc} service.")
        elif kind == 1:
            out.append(f"Incident INC-{10000 + i} hit the {svc} service for "
                       f"{rng.randint(2, 300)} minutes; {person} wrote the postmortem.")
        elif kind == 2:
            out.append(f"The {svc} service p99 latency in week {i} was "
                       f"{rng.randint(40, 900)} milliseconds against a target of 250.")
        else:
            out.append(f"Customer C{i} renewed a {rng.randint(1, 5)}-year contract for the "
                       f"{svc} product; {person} is the account owner.")
    return out


def cli(home: Path, *argv: str, stdin: bytes | None = None) -> dict:
    env = {**os.environ, "AMPLIHACK_HOME": str(home)}
    proc = subprocess.run([sys.executable, "-m", "hive_cli", *argv], capture_output=True,
                          env=env, input=stdin, timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"amplihack-hive {' '.join(argv[:1])} failed: {proc.stderr.decode()}")
    return json.loads(proc.stdout) if "--json" in argv else {}


def run(agents: int, turns: int, questions: int, backend: str, keep: bool = False) -> dict:
    home = Path(tempfile.mkdtemp(prefix="amplihack-bench."))
    os.environ["AMPLIHACK_HOME"] = str(home)
    name = "bench"
    result: dict = {"agents": agents, "backend": backend}
    cli(home, "create", "--name", name, "--agents", str(agents), "--shard-backend", backend)
    config = HiveConfig.load(name)
    try:
        t0 = time.monotonic()
        start = cli(home, "start", "--hive", name, "--timeout", "300", "--json")
        result["seconds_to_all_ready"] = round(time.monotonic() - t0, 2)
        result["slowest_agent_ready_s"] = max(a["ready_s"] or 0 for a in start["agents"])
        rss = [supervisor.rss_mb(supervisor.live_process(supervisor.read_pid(config, a)))
               for a in config.agent_names()]
        result["rss_total_mb"] = round(sum(r or 0 for r in rss), 1)
        result["rss_per_agent_mb_mean"] = round(statistics.mean(r or 0 for r in rss), 1)
        result["rss_per_agent_mb_max"] = max(r or 0 for r in rss)

        corpus = home / "turns.txt"
        texts = synthetic_turns(turns)
        corpus.write_text("\n".join(texts) + "\n")
        t0 = time.monotonic()
        learned = cli(home, "learn", "--hive", name, "--file", str(corpus), "--json")
        result["learn_turns"] = learned["turns"]
        result["learn_facts"] = learned["facts"]
        result["learn_unique_facts"] = learned["unique_facts"]
        result["learn_seconds_wall"] = round(time.monotonic() - t0, 2)
        result["learn_seconds_in_cli"] = learned["seconds"]

        rng = random.Random(11)
        latencies: list[float] = []
        transport = open_transport(config)
        link = AgentLink(name, transport)
        try:
            for _ in range(questions):
                agent = rng.choice(config.agent_names())
                person, svc = rng.choice(PEOPLE), rng.choice(SERVICES)
                q = f"Which incidents of the {svc} service did {person} write up?"
                t = time.perf_counter()
                link.ask(agent, q, 10, timeout=30)
                latencies.append((time.perf_counter() - t) * 1000)
        finally:
            transport.close()
        result["ask_p50_ms"] = round(pct(latencies, 0.5), 1)
        result["ask_p95_ms"] = round(pct(latencies, 0.95), 1)
        status = cli(home, "status", "--hive", name, "--json")
        result["facts_held_total"] = sum(a["facts"] or 0 for a in status["agents"])
        result["facts_held_equals_unique_x_rf"] = (
            result["facts_held_total"] == learned["unique_facts"] * config.replication_factor)
    finally:
        stopped = supervisor.stop(config, config.agent_names(), timeout=20)
        result["left_running"] = [r.agent for r in stopped if r.outcome == "stuck"]
        if not keep and not result["left_running"]:
            shutil.rmtree(home)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--turns", type=int, default=5000)
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--backend", choices=["kuzu", "memory"], default="kuzu")
    parser.add_argument("--keep", action="store_true", help="keep the temporary hive home")
    args = parser.parse_args()
    result = run(args.agents, args.turns, args.questions, args.backend, args.keep)
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / f"cli_processes_{args.agents}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
