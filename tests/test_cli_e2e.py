"""End to end through the installed ``amplihack-hive`` script with real agent processes.

A temporary AMPLIHACK_HOME, 5 agents on Kuzu shards talking over Unix sockets: create, start,
learn a corpus, ask an agent that did not learn the fact, check status counts against
facts x RF, kill -9 one agent and bring it back with its facts, stop with no process left.
Every spawned agent is killed by PID in teardown, whatever happened.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from cli_helpers import Result, cli_process

from hive_cli import supervisor
from hive_core.hive_config import HiveConfig

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "configs" / "sample_corpus.txt"
AGENTS = 5
RF = 3
COLOR_SGR = re.compile(r"\x1b\[[0-9;]*(3[0-7]|9[0-7]|38;)[0-9;]*m")


class Hive:
    """A hive in a private home, with every agent PID it ever had remembered for teardown."""

    def __init__(self, home: Path, name: str) -> None:
        self.home, self.name = home, name
        self.seen: dict[int, float] = {}

    def __call__(self, *argv: str, **kw) -> Result:
        res = cli_process(self.home, *argv, **kw)
        self.remember()
        return res

    def config(self) -> HiveConfig:
        return HiveConfig.load(self.name)

    def remember(self) -> None:
        run = self.home / "hives" / self.name / "run"
        for pid_file in run.glob("*.pid") if run.exists() else ():
            try:
                raw = json.loads(pid_file.read_text())
            except (OSError, ValueError):
                continue
            self.seen[int(raw["pid"])] = float(raw["create_time"])

    def kill_all(self) -> None:
        self.remember()
        for pid, created in self.seen.items():
            proc = supervisor.live_process(supervisor.PidRecord(pid, created, 0.0))
            if proc is not None:
                proc.kill()

    def alive(self) -> list[int]:
        return [pid for pid, created in self.seen.items()
                if supervisor.live_process(supervisor.PidRecord(pid, created, 0.0))]


@pytest.fixture
def hive(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("AMPLIHACK_HOME", str(home))
    h = Hive(home, "e2e")
    assert h("create", "--name", h.name, "--agents", str(AGENTS)).code == 0
    yield h
    h.kill_all()


def _status(h: Hive) -> tuple[int, dict]:
    res = h("status", "--hive", h.name, "--json")
    return res.code, res.json()


def _turn_owner(turn_text: str) -> str:
    """Turn i of the corpus goes to agent i mod N."""
    turns = [t.strip() for t in CORPUS.read_text().splitlines() if t.strip()]
    return f"agent_{turns.index(turn_text) % AGENTS}"


@pytest.mark.slow
def test_full_life_cycle(hive: Hive):
    started = hive("start", "--hive", hive.name, "--json", "--timeout", "120")
    assert started.code == 0, started.err
    doc = started.json()
    assert [a["outcome"] for a in doc["agents"]] == ["started"] * AGENTS
    pids = {a["agent"]: a["pid"] for a in doc["agents"]}

    twice = hive("start", "--hive", hive.name)  # the wanted state holds: success
    assert twice.code == 0 and "already running; nothing to start" in twice.out
    assert {a["name"]: a["pid"] for a in _status(hive)[1]["agents"]} == pids

    learned = hive("learn", "--hive", hive.name, "--file", str(CORPUS), "--json")
    assert learned.code == 0, learned.err
    ldoc = learned.json()
    assert ldoc["turns"] == 40 and ldoc["facts"] >= 40 and ldoc["failed_shards"] == []
    assert all(n > 0 for n in ldoc["per_agent"].values())

    code, sdoc = _status(hive)
    assert code == 0 and sdoc["hive"] == hive.name and sdoc["transport"] == "local"
    assert [a["status"] for a in sdoc["agents"]] == ["running"] * AGENTS
    assert ldoc["unique_facts"] == ldoc["facts"]  # the corpus has no repeated sentence
    assert sum(a["facts"] for a in sdoc["agents"]) == ldoc["unique_facts"] * RF
    assert all(a["rss_mb"] > 0 and a["pid"] == pids[a["name"]] for a in sdoc["agents"])
    # A fresh hive's ring: its declared agents, all normal, one settled epoch, no fact
    # missing a replica.
    assert sdoc["ring"]["epoch"] == 1 and sdoc["ring"]["settled"] is True
    assert sdoc["ring"]["under_replicated"] == 0
    assert {a["ring_state"] for a in sdoc["agents"]} == {"normal"}
    assert {a["epoch"] for a in sdoc["agents"]} == {1}
    ring_line = hive("status", "--hive", hive.name).out
    assert "ring epoch 1, settled; under-replicated facts: 0" in ring_line

    fact = "Project Osprey replaces the homegrown job scheduler with Temporal"
    learner = _turn_owner(next(t for t in CORPUS.read_text().splitlines() if fact in t))
    asker = "agent_1" if learner != "agent_1" else "agent_2"
    answered = hive("ask", "--hive", hive.name, "--agent", asker, "--json",
                    "Who leads Project Osprey?")
    assert answered.code == 0, answered.err
    adoc = answered.json()
    assert adoc["agent"] == asker and adoc["question"] == "Who leads Project Osprey?"
    assert set(adoc) == {"question", "agent", "answer", "sources", "facts", "shards_queried",
                         "shards_searched", "shards_failed", "shards_rerouted", "partial",
                         "hives_asked", "hives_failed"}
    assert adoc["hives_asked"] == [] == adoc["hives_failed"]  # a hive in no federation
    assert set(adoc["shards_searched"]) <= set(adoc["shards_queried"])
    hits = [f for f in adoc["facts"] if "Hannah Schmidt" in f["content"]]
    assert hits and hits[0]["source_agent"] == learner != asker
    # The answer is a line to read; who learned it and the fact ids are its sources.
    assert "Hannah Schmidt" in adoc["answer"] and "\n" not in adoc["answer"]
    assert learner not in adoc["answer"] and hits[0]["fact_id"] not in adoc["answer"]
    assert adoc["sources"][0]["fact_id"] == hits[0]["fact_id"]
    assert adoc["sources"][0]["source_agent"] == learner
    assert 1 <= len(adoc["shards_queried"]) <= 5 and adoc["partial"] is False
    human = hive("ask", "--hive", hive.name, "--agent", asker, "Who leads Project Osprey?")
    assert human.code == 0 and "Hannah Schmidt" in human.out and "shards queried" in human.out

    log = hive("logs", "--hive", hive.name, "--agent", "agent_0", "--lines", "5")
    assert log.code == 0 and 0 < len(log.out.splitlines()) <= 5

    stopped = hive("stop", "--hive", hive.name, "--json")
    assert stopped.code == 0, stopped.err
    assert {a["outcome"] for a in stopped.json()["agents"]} == {"stopped"}
    assert hive.alive() == []
    code, sdoc = _status(hive)
    assert code == 3 and {a["status"] for a in sdoc["agents"]} == {"stopped"}
    again = hive("stop", "--hive", hive.name)  # already stopped: success, said so
    assert again.code == 0 and "not running: nothing to stop" in again.out


@pytest.mark.slow
def test_kill_9_is_crashed_and_start_restores_it_with_its_facts(hive: Hive):
    assert hive("start", "--hive", hive.name, "--timeout", "120").code == 0
    learned = hive("learn", "--hive", hive.name, "--file", str(CORPUS))
    assert learned.code == 0
    # stderr is not a terminal here: progress comes as plain lines, at most one per tenth.
    progress = [ln for ln in learned.err.splitlines() if ln.startswith("turns learned: ")]
    assert progress[-1] == "turns learned: 40/40" and 1 <= len(progress) <= 10
    _, before = _status(hive)
    facts_before = {a["name"]: a["facts"] for a in before["agents"]}
    victim = next(a for a in before["agents"] if a["name"] == "agent_2")
    assert victim["facts"] > 0

    os.kill(victim["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while psutil.pid_exists(victim["pid"]) and \
            psutil.Process(victim["pid"]).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    code, crashed = _status(hive)
    states = {a["name"]: a["status"] for a in crashed["agents"]}
    assert code == 3 and states["agent_2"] == "crashed"
    assert [s for n, s in states.items() if n != "agent_2"] == ["running"] * (AGENTS - 1)
    # Its primaries now have a replica fewer: the live agents count them (each fact once).
    # agent_2 is still in the ring (rereplicate_after has not passed), so the count is
    # exactly the facts it held as a primary.
    assert crashed["ring"]["under_replicated"] == facts_before["agent_2"]
    human = hive("status", "--hive", hive.name)
    assert human.code == 3 and "crashed" in human.out

    restarted = hive("start", "--hive", hive.name, "--json", "--timeout", "120")
    assert restarted.code == 0, restarted.err
    outcomes = {a["agent"]: a["outcome"] for a in restarted.json()["agents"]}
    assert outcomes.pop("agent_2") == "restarted"
    assert set(outcomes.values()) == {"already running"}
    code, after = _status(hive)
    assert code == 0
    assert {a["name"]: a["facts"] for a in after["agents"]} == facts_before
    answer = hive("ask", "--hive", hive.name, "--agent", "agent_2", "--json",
                  "What is the p99 latency target of the search service?")
    assert answer.code == 0, answer.err
    assert any("250 milliseconds" in f["content"] for f in answer.json()["facts"])
    assert hive("stop", "--hive", hive.name).code == 0
    assert hive.alive() == []


@pytest.mark.slow
def test_partial_hive_learn_fails_clearly_then_stdin_jsonl_to_one_agent(hive: Hive):
    assert hive("start", "--hive", hive.name, "--agents", "agent_0,agent_1",
                "--timeout", "120").code == 0
    lines = [json.dumps({"content": "Zofia Nowak runs the Gdansk data center."}),
             json.dumps({"content": "The Gdansk data center has 48 racks."})]
    stdin = ("\n".join(lines) + "\n").encode()
    partial = hive("learn", "--hive", hive.name, "-", "--agent", "agent_1", stdin=stdin)
    assert partial.code == 1 and len(partial.err.strip().splitlines()) == 1
    assert "learning stopped after 0 of 2 turns" in partial.err
    code, sdoc = _status(hive)
    states = {a["name"]: a["status"] for a in sdoc["agents"]}
    assert code == 3 and states == {"agent_0": "running", "agent_1": "running",
                                    "agent_2": "stopped", "agent_3": "stopped",
                                    "agent_4": "stopped"}
    delete = hive("delete", "--hive", hive.name)
    assert delete.code == 1 and "stop them first" in delete.err

    assert hive("start", "--hive", hive.name, "--timeout", "120").code == 0
    res = hive("learn", "--hive", hive.name, "-", "--agent", "agent_1", "--json", stdin=stdin)
    assert res.code == 0, res.err
    doc = res.json()
    assert doc["turns"] == 2 and set(doc["per_agent"]) == {"agent_1"}
    asked = hive("ask", "--hive", hive.name, "--agent", "agent_4", "--json",
                 "How many racks does the Gdansk data center have?")
    assert asked.code == 0, asked.err
    assert any("48 racks" in f["content"] and f["source_agent"] == "agent_1"
               for f in asked.json()["facts"])
    assert hive("stop", "--hive", hive.name).code == 0
    assert hive.alive() == []


def test_status_without_running_agents_and_no_color(hive: Hive):
    cfg = hive.config()
    supervisor.write_pid(cfg, "agent_3", supervisor.PidRecord(2**22 + 7, 1.0, 1.0))
    res = hive("status", "--hive", hive.name, "--json")
    assert res.code == 3
    states = {a["name"]: a["status"] for a in res.json()["agents"]}
    assert states.pop("agent_3") == "crashed" and set(states.values()) == {"stopped"}
    colored = hive("status", "--hive", hive.name, env={"FORCE_COLOR": "1", "NO_COLOR": ""})
    plain = hive("status", "--hive", hive.name, env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
    assert colored.code == plain.code == 3
    assert COLOR_SGR.search(colored.out) and not COLOR_SGR.search(plain.out)
    assert "crashed" in plain.out


@pytest.mark.slow
def test_a_hung_agent_hands_the_question_to_the_next(hive: Hive) -> None:
    """agent_0 is alive but frozen (SIGSTOP): ask sends no status round first, gives it a
    bounded try, then asks agent_1, all within --timeout. --agent agent_0 gets one line."""
    started = hive("start", "--hive", hive.name, "--json", "--timeout", "120")
    assert started.code == 0, started.err
    pids = {a["agent"]: a["pid"] for a in started.json()["agents"]}
    assert hive("learn", "--hive", hive.name, "--file", str(CORPUS)).code == 0
    os.kill(pids["agent_0"], signal.SIGSTOP)
    try:
        code, doc = _status(hive)  # alive but not answering: hung, not crashed
        states = {a["agent"]: a["status"] for a in doc["agents"]}
        assert code == 3 and states["agent_0"] == "unresponsive" and states["agent_1"] == "running"
        began = time.monotonic()
        answered = hive("ask", "--hive", hive.name, "--json", "--timeout", "20",
                        "Who leads Project Osprey?")
        took = time.monotonic() - began
        assert answered.code == 0, answered.err
        doc = answered.json()
        assert doc["agent"] != "agent_0" and "Hannah Schmidt" in doc["answer"]
        assert took < 20
        pinned = hive("ask", "--hive", hive.name, "--agent", "agent_0", "--timeout", "2",
                      "Who leads Project Osprey?")
        assert pinned.code == 1 and len(pinned.err.strip().splitlines()) == 1
        assert "no agent answered within 2s" in pinned.err and "agent_0" in pinned.err
    finally:
        os.kill(pids["agent_0"], signal.SIGCONT)


@pytest.mark.slow
def test_shards_under_a_storage_path_are_owner_only(tmp_path: Path, monkeypatch) -> None:
    """Kuzu creates its files with the process umask; agents set 077, so a shard under any
    --storage-path is readable by its owner only (it holds the hive's facts)."""
    home = tmp_path / "home"
    monkeypatch.setenv("AMPLIHACK_HOME", str(home))
    storage = tmp_path / "shards"
    h = Hive(home, "perm")
    try:
        assert h("create", "--name", h.name, "--agents", "2", "--storage-path",
                 str(storage)).code == 0
        assert h("start", "--hive", h.name, "--timeout", "120").code == 0
        assert h("learn", "--hive", h.name, "--text", "Project Wren is led by Ada Okafor.").code \
            == 0
        assert h("stop", "--hive", h.name).code == 0
        made = [p for p in storage.rglob("*")]
        assert any(p.is_file() for p in made)
        loose = [f"{p} {oct(p.stat().st_mode & 0o777)}" for p in made
                 if p.stat().st_mode & 0o077]
        assert loose == []
    finally:
        h.kill_all()


@pytest.mark.slow
def test_ctrl_c_during_learn_says_how_far_it_got(tmp_path: Path, monkeypatch) -> None:
    """SIGINT in the middle of learn: exit 130 and one line with K of T turns learned and
    that re-running is safe; re-running learns the rest and loses nothing."""
    from cli_helpers import console_script

    home = tmp_path / "home"
    monkeypatch.setenv("AMPLIHACK_HOME", str(home))
    h = Hive(home, "intr")
    turns = tmp_path / "turns.txt"
    turns.write_text("".join(f"Host h{i} runs service s{i}.\n" for i in range(20_000)))
    try:
        assert h("create", "--name", h.name, "--agents", "2", "--shard-backend",
                 "memory").code == 0
        assert h("start", "--hive", h.name, "--timeout", "120").code == 0
        proc = subprocess.Popen(
            [*console_script(), "learn", "--hive", h.name, "--file", str(turns), "--batch",
             "1", "--parallel", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, "AMPLIHACK_HOME": str(home)})
        time.sleep(3.0)
        assert proc.poll() is None, "learn finished before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
        line = err.decode().strip().splitlines()[-1]  # after the plain progress lines
        found = re.fullmatch(r"amplihack-hive: error: interrupted: ([\d,]+) of 20,000 turns "
                             r"learned; re-running the same learn is safe \(a fact learned "
                             r"twice is one fact\)", line)
        assert found, line
        assert 0 < int(found.group(1).replace(",", "")) < 20_000
        again = h("learn", "--hive", h.name, "--file", str(turns), "--json", "--timeout", "300",
                  timeout=600)
        assert again.code == 0, again.err
        assert again.json()["unique_facts"] == 20_000
    finally:
        h.kill_all()
