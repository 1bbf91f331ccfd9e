"""Bounded work on the learn path: extraction time per turn size, and a big file learned.

``python -m bench.learn_bounds [--mb 50] [--agents 5] [--runs 3]``

1. Extraction (the offline extractor, in this process) of one turn of 10 KB, 100 KB and
   1 MB: the time should grow linearly (it was quadratic: 100 KB 6.6 s). Median of ``--runs``.
2. ``learn --file`` of a ``--mb`` MB file through real agent processes (the CLI, Kuzu shards,
   Unix sockets, a temporary AMPLIHACK_HOME under /tmp): wall time, turns/s, the peak RSS of
   every agent (``VmHWM`` in /proc/PID/status, read before they stop) and of the CLI (the
   children's ``ru_maxrss``). ``--mb 2`` for a quick run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from agent_runtime.learning import RuleBasedExtractor
from hive_cli import supervisor
from hive_core.hive_config import HiveConfig

WORDS = ("the payment gateway team moved deadline Project Osprey release Alice Chen patched "
         "CVE-2024-3094 on host db-7 region eu-west latency p95 rose to 340 ms after v1.29 "
         "shipped incident INC-2041 owner budget quarter review").split()


def sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(6, 16))]
    joiner = rng.choice([". ", ". ", "; ", ", and the ", "! "])
    return words[0].capitalize() + " " + " ".join(words[1:]) + joiner


def turn_of(size: int, seed: int = 7) -> str:
    rng = random.Random(seed)
    parts: list[str] = []
    n = 0
    while n < size:
        s = sentence(rng)
        parts.append(s)
        n += len(s)
    return "".join(parts)[:size]


def extraction(runs: int) -> list[dict[str, float]]:
    ex = RuleBasedExtractor()
    rows = []
    for size in (10_000, 100_000, 1_000_000):
        text = turn_of(size)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            facts = ex.extract(text)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        rows.append({"bytes": size, "facts": len(facts), "seconds": round(med, 4),
                     "us_per_kb": round(med * 1e6 / (size / 1000), 1)})
    return rows


def write_file(path: Path, mb: float) -> int:
    """Lines of ~1 KB (a paragraph each) up to ``mb`` MB; returns the number of lines."""
    rng = random.Random(11)
    target = int(mb * 1_000_000)
    n = size = 0
    with path.open("w") as fh:
        while size < target:
            line = "".join(sentence(rng) for _ in range(rng.randint(5, 12))).strip() + "\n"
            fh.write(line)
            size += len(line.encode())
            n += 1
    return n


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for {pid}")


def learn_run(mb: float, agents: int, timeout: float, keep: bool = False) -> dict[str, object]:
    """One learn of ``mb`` MB; with ``keep`` the hive's folder (agent logs, shards) stays."""
    home = Path(tempfile.mkdtemp(prefix="lb", dir="/tmp"))
    env = {**os.environ, "AMPLIHACK_HOME": str(home)}
    env.pop("ANTHROPIC_API_KEY", None)
    cli = [str(Path(__file__).resolve().parents[1] / ".venv" / "bin" / "amplihack-hive")]
    if not Path(cli[0]).exists():
        cli = ["amplihack-hive"]

    def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([*cli, *argv], env=env, capture_output=True, text=True,
                             timeout=timeout)
        if check and res.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:1])} failed: {res.stderr.strip()[-400:]}")
        return res

    data = home / "input.txt"
    lines = write_file(data, mb)
    try:
        run("create", "--name", "lb", "--agents", str(agents))
        run("start", "--hive", "lb", "--timeout", "120")
        os.environ["AMPLIHACK_HOME"] = str(home)
        config = HiveConfig.load("lb")
        pids = {a: supervisor.read_pid(config, a).pid for a in config.agent_names()}
        before = {a: vm_hwm_mb(p) for a, p in pids.items()}
        t0 = time.monotonic()
        res = run("learn", "--hive", "lb", "--file", str(data), "--json", check=False)
        seconds = time.monotonic() - t0
        peak = {a: round(vm_hwm_mb(p), 1) for a, p in pids.items()}
        cli_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        doc = json.loads(res.stdout.splitlines()[0]) if res.stdout.strip() else {}
        return {"mb": mb, "lines": lines, "exit": res.returncode, "seconds": round(seconds, 1),
                "turns_per_s": round(lines / seconds, 1), "facts": doc.get("unique_facts"),
                "agent_rss_start_mb": round(max(before.values()), 1),
                "agent_peak_rss_mb": peak, "agent_peak_rss_max_mb": max(peak.values()),
                "cli_peak_rss_mb": round(cli_peak, 1),
                "error": (res.stderr.strip().splitlines() or [f"exit {res.returncode}"])[-1]
                 if res.returncode else None}
    finally:
        run("stop", "--hive", "lb", check=False)
        if keep:
            print(f"kept {home} (agent logs under hives/lb/)", flush=True)
        else:
            shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=50.0)
    parser.add_argument("--agents", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--learn-runs", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--skip-learn", action="store_true")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary AMPLIHACK_HOME (agent logs) after the learn")
    args = parser.parse_args()
    print("extraction (median of", args.runs, "runs):")
    for row in extraction(args.runs):
        print(f"  {row['bytes']:>9,} B  {row['facts']:>6,} facts  {row['seconds']:8.4f} s  "
              f"{row['us_per_kb']:8.1f} us/KB")
    if args.skip_learn:
        return
    results = [learn_run(args.mb, args.agents, args.timeout, args.keep)
               for _ in range(args.learn_runs)]
    for r in results:
        print("learn:", json.dumps(r))
    print(f"learn of {args.mb:g} MB through {args.agents} agents, median of {len(results)}: "
          f"{statistics.median(r['seconds'] for r in results)} s, peak agent RSS "
          f"{statistics.median(r['agent_peak_rss_max_mb'] for r in results)} MB, CLI "
          f"{statistics.median(r['cli_peak_rss_mb'] for r in results)} MB")


if __name__ == "__main__":
    main()
