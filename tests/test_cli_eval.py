"""``amplihack-hive eval`` end to end: a throwaway hive of real agent processes, compared in
the same run with a one-shard hive in this process (n1) and a central BM25.

The n1 system is the independent reference here: it learns the same turns with the agents'
extraction in one process, so a hive of processes that loses, misroutes or misranks a fact
answers a question differently from it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import cli, cli_process
from semantic_helpers import require_model


def systems(doc: dict, suite: str) -> dict[str, dict]:
    run = next(s for s in doc["suites"] if s["suite"] == suite)
    return {s["system"]: s for s in run["systems"]}


def outcomes(system: dict) -> list[tuple[str, bool, bool]]:
    return [(q["question"], q["retrieved"], q["answered"]) for q in system["per_question"]]


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A short TMPDIR: agents' Unix socket paths must fit in 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="ev", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_throwaway_hive_answers_like_one_shard_and_leaves_nothing(tmp_path, scratch) -> None:
    report = tmp_path / "report.json"
    res = cli_process(tmp_path / "home", "eval", "--agents", "4", "--suite", "all",
                      "--turns", "600", "--questions", "40", "--json", "--output",
                      str(report), env={"TMPDIR": str(scratch)}, timeout=300)
    assert res.code == 0, res.err
    doc = res.json()
    assert json.loads(report.read_text()) == doc
    assert os.stat(report).st_mode & 0o077 == 0
    science = systems(doc, "science")
    assert science["hive"]["questions"] == 15
    assert science["hive"]["retrieval_at_k_pct"] == 100.0
    long = systems(doc, "long-horizon")
    assert long["hive"]["questions"] == 40
    for name in ("science", "long-horizon"):
        run = systems(doc, name)
        # Through 4 processes, question by question, the same as one shard in one process.
        assert outcomes(run["hive"]) == outcomes(run["n1"]), name
        assert run["hive"]["partial"] == 0
        assert run["hive"]["shards_asked_max"] <= 5
    assert {"n1", "central"} <= set(long)
    # The hive, its agents and its temporary home are gone; the user's home has no hive.
    assert list(scratch.iterdir()) == []
    assert not (tmp_path / "home" / "hives").exists() or not any(
        (tmp_path / "home" / "hives").iterdir())


def test_bad_eval_input_is_one_line(amplihack_home, capsys) -> None:
    res = cli(capsys, "eval", "--suite", "bogus")
    assert res.code == 2 and "unknown --suite 'bogus'" in res.err
    assert len(res.err.strip().splitlines()) == 1
    res = cli(capsys, "eval", "--hive", "nothere")
    assert res.code == 1 and "nothere" in res.err and "Traceback" not in res.err
    res = cli(capsys, "eval", "--output", str(amplihack_home / "no" / "such" / "r.json"))
    assert res.code == 2 and "does not exist" in res.err


def test_a_throwaway_hive_that_cannot_start_says_why(tmp_path) -> None:
    deep = tmp_path / ("d" * 60)  # too long a path for the agents' sockets
    deep.mkdir()
    res = cli_process(tmp_path / "home", "eval", "--agents", "2", "--suite", "science",
                      env={"TMPDIR": str(deep)}, timeout=120)
    assert res.code == 1
    assert "the eval hive did not start" in res.err and "AMPLIHACK_HOME" in res.err
    assert list(deep.iterdir()) == []  # cleaned up all the same


def test_eval_of_a_hive_that_is_not_running_says_so(amplihack_home, capsys) -> None:
    assert cli(capsys, "create", "--name", "idle", "--agents", "2").code == 0
    res = cli(capsys, "eval", "--hive", "idle", "--suite", "science")
    assert res.code == 1 and "not running" in res.err.lower()


def test_a_semantic_hive_ranks_by_meaning_through_processes(tmp_path, scratch) -> None:
    """``create --semantic`` writes the key; ``eval --semantic`` runs agent processes that
    re-rank by meaning: the same outcomes as n1 (which ranks the same way), and better
    than the lexical hive on the questions whose answers share no word with them."""
    require_model()
    home = tmp_path / "home"
    res = cli_process(home, "create", "--name", "sem", "--agents", "2", "--semantic")
    assert res.code == 0, res.err
    assert "semantic: true" in (home / "hives" / "sem" / "config.yaml").read_text()
    docs = {}
    for flag in ("--semantic", "--no-semantic"):
        res = cli_process(home, "eval", "--agents", "3", "--suite", "long-horizon",
                          "--turns", "900", "--questions", "60", "--json", flag,
                          env={"TMPDIR": str(scratch)}, timeout=300)
        assert res.code == 0, res.err
        docs[flag] = systems(res.json(), "long-horizon")
    semantic, lexical = docs["--semantic"], docs["--no-semantic"]
    assert outcomes(semantic["hive"]) == outcomes(semantic["n1"])
    assert outcomes(lexical["hive"]) == outcomes(lexical["n1"])
    assert semantic["hive"]["retrieval_at_k_pct"] > lexical["hive"]["retrieval_at_k_pct"]
