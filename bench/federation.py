"""Benchmark of federated questions: quality and latency against one flat hive.

    python -m bench.federation [--turns 3000] [--questions 200] [--agents 4] [--seed 7]

In a temporary AMPLIHACK_HOME, through the real ``amplihack-hive`` command: a root hive (2
agents) and three group hives (``--agents`` each) under it, each group learning every third
conversation of the long-horizon eval, and a flat hive (``--agents``) learning all of it.
Then every question is asked, in this process through each hive's transport (so the CLI's
start-up is not timed), of:

* ``flat``: the flat hive (the reference: one memory holding everything);
* ``federated``: group g2, ``ask --federated`` (hive_core.federated_search: summed
  statistics, one merge, a fact once);
* ``rrf``: each group asked on its own (``--local``, its own statistics) and the three
  rankings merged by Reciprocal Rank Fusion (k = 60, a fact at its best rank -- the library's
  merge); the answer line is that of the hive whose fact ranks first;
* ``g2 alone``: what the group knows without the federation.

Prints retrieval@10 and answer accuracy per system, p50/p95 seconds per question, and the
shards searched per federated question (total and the most in one hive; each hive asked runs
its own <= query_fanout search). Median of one run; the machine is shared (2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import pct
from hive_cli import operations
from hive_cli.agent_link import AgentLink
from hive_cli.evaluation import ProcessHive
from hive_core.evaluation.longhorizon import build_long_horizon
from hive_core.evaluation.runner import Reply, SystemReport, evaluate
from hive_core.hive_config import HiveConfig

GROUPS = ("g1", "g2", "g3")
RRF_K = 60


def cli(*argv: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "hive_cli", *argv], capture_output=True,
                          text=True, timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"amplihack-hive {' '.join(argv[:3])} failed: {proc.stderr.strip()}")
    return proc.stdout


class RrfOfGroups:
    """The groups asked one by one (their own statistics), merged by RRF."""

    def __init__(self, links: dict[str, tuple[AgentLink, list[str]]]) -> None:
        self.links = links

    def ask(self, question: str, k: int) -> Reply:
        t0 = time.perf_counter()
        rank: dict[str, float] = {}
        text: dict[str, str] = {}
        answers: dict[str, str] = {}
        shards = 0
        for link, agents in self.links.values():
            doc = operations.ask_first(link, agents, question, k, 30.0, False)
            shards += len(doc["shards_searched"])
            for i, fact in enumerate(doc["facts"], start=1):
                fid = fact["fact_id"]
                rank[fid] = max(rank.get(fid, 0.0), 1.0 / (RRF_K + i))
                text[fid] = fact["content"]
                answers.setdefault(fid, doc["answer"])
        order = sorted(rank, key=lambda f: (-rank[f], f))[:k]
        return Reply(facts=[text[f] for f in order],
                     answer=answers[order[0]] if order else "", shards=shards,
                     seconds=time.perf_counter() - t0)


def learn(name: str, turns: list[dict], folder: Path) -> None:
    path = folder / f"{name}.jsonl"
    path.write_text("".join(json.dumps(t) + "\n" for t in turns))
    cli("learn", "--hive", name, "--file", str(path))


def report(name: str, rep: SystemReport) -> None:
    score = rep.overall()
    seconds = [o.seconds for o in rep.outcomes]
    print(f"  {name:<10} retrieval@10 {score.retrieval_pct:5.1f}%  answers "
          f"{score.answer_pct:5.1f}%  p50 {pct(seconds, 0.5) * 1000:6.1f} ms  "
          f"p95 {pct(seconds, 0.95) * 1000:6.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--turns", type=int, default=3000)
    ap.add_argument("--questions", type=int, default=200)
    ap.add_argument("--agents", type=int, default=4)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    home = Path(tempfile.mkdtemp(prefix="amplihack-fed-"))
    os.environ["AMPLIHACK_HOME"] = str(home)
    hives = ("root", *GROUPS, "flat")
    evalset = build_long_horizon(n_turns=args.turns, n_questions=args.questions,
                                 seed=args.seed)
    sessions = sorted({t.session for t in evalset.turns})
    try:
        cli("create", "--name", "root", "--agents", "2")
        for g in GROUPS:
            cli("create", "--name", g, "--agents", str(args.agents), "--parent", "root")
        cli("create", "--name", "flat", "--agents", str(args.agents))
        for h in hives:
            cli("start", "--hive", h, "--timeout", "120")
        t0 = time.perf_counter()
        for i, g in enumerate(GROUPS):
            mine = set(sessions[i::3])
            learn(g, [t.to_dict() for t in evalset.turns if t.session in mine], home)
        learn("flat", [t.to_dict() for t in evalset.turns], home)
        print(f"{len(evalset.turns)} turns learned into 3 groups and the flat hive in "
              f"{time.perf_counter() - t0:.1f} s; {len(evalset.questions)} questions")

        opened = {h: operations.connected(HiveConfig.load(h)) for h in (*GROUPS, "flat")}
        links = {h: (cm.__enter__(), HiveConfig.load(h).agent_names())
                 for h, cm in opened.items()}
        try:
            systems = {
                "flat": ProcessHive(links["flat"][0], links["flat"][1], 30.0),
                "federated": ProcessHive(links["g2"][0], links["g2"][1], 30.0, True),
                "rrf": RrfOfGroups({g: links[g] for g in GROUPS}),
                "g2 alone": ProcessHive(links["g2"][0], links["g2"][1], 30.0),
            }
            reports = {r.name: r for r in evaluate(evalset, systems, 10)}
            print(f"long-horizon eval, seed {args.seed}, k=10 (machine: {os.cpu_count()} "
                  "cores):")
            for name, rep in reports.items():
                report(name, rep)
            fed_shards = [o.shards for o in reports["federated"].outcomes]
            print(f"  shards searched per federated question (4 hives): median "
                  f"{pct(fed_shards, 0.5):.0f}, max {max(fed_shards)}")
            link, agents = links["g2"]
            most = 0
            for q in evalset.questions[:50]:
                doc = operations.ask_first(link, agents, q.text, 10, 30.0, True)
                per: dict[str, int] = {}
                for s in doc["shards_searched"]:
                    h = s.split("/")[0] if "/" in s else "g2"
                    per[h] = per.get(h, 0) + 1
                most = max(most, max(per.values(), default=0))
            print(f"  most shards searched in one hive by a federated question: {most}")
        finally:
            for cm in opened.values():
                cm.__exit__(None, None, None)
    finally:
        for h in hives:
            subprocess.run([sys.executable, "-m", "hive_cli", "stop", "--hive", h],
                           capture_output=True, timeout=120)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
