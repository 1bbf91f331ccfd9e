"""Bounded work on the learn path (issue 12): linear extraction, the per-turn limit, a batch
re-sent after a timeout done once, failover when an agent dies mid-learn, and retracted
facts reported on re-learning and restored with ``--restore``.

End-to-end tests drive the installed CLI against real agent processes (memory shards,
Unix sockets) in a private AMPLIHACK_HOME; every agent is killed by PID in teardown.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from cli_helpers import cli, console_script
from test_cli_e2e import Hive

from agent_runtime import learning
from hive_cli import supervisor
from hive_cli.agent_link import AgentLink
from hive_core import facts as hive_facts


# -- extraction is linear in the turn size -------------------------------------------------
def _turn(size: int) -> str:
    """Half one long run of clauses (a split re-read the rest of the sentence), half
    sentences full of abbreviations (each skipped stop re-read the line so far)."""
    clauses = "The gateway team moved the deadline; Alice Chen patched CVE-2024-3094, "
    stops = "Dr. Smith met Mr. Jones at St. Mary. "
    half = size // 2
    return ((clauses * (half // len(clauses) + 1))[:half] + ". "
            + (stops * (half // len(stops) + 1))[:half])


def _characters_handled(monkeypatch, text: str) -> int:
    """Characters handed to every function of the extraction (each of learning's helpers
    and the content hash): work that grows with the turn, counted, not timed."""
    seen = [0]

    def counting(fn):
        def wrapper(*args, **kwargs):
            seen[0] += sum(len(a) for a in args if isinstance(a, str))
            return fn(*args, **kwargs)
        return wrapper

    for name in dir(learning):
        fn = getattr(learning, name)
        if callable(fn) and getattr(fn, "__module__", "") == learning.__name__ \
                and not isinstance(fn, type):
            monkeypatch.setattr(learning, name, counting(fn))
    monkeypatch.setattr(hive_facts, "content_hash", counting(hive_facts.content_hash))
    learning.RuleBasedExtractor().extract(text)
    monkeypatch.undo()
    return seen[0]


def test_extraction_work_grows_linearly_with_the_turn(monkeypatch) -> None:
    small = _characters_handled(monkeypatch, _turn(10_000))
    big = _characters_handled(monkeypatch, _turn(100_000))
    # Linear: 10x the text is ~10x the work (quadratic was ~100x), and each character is
    # handled a few times at most (sentence, clause, fact, hash).
    assert big <= 12 * small, (small, big)
    assert big <= 20 * 100_000, big


def test_long_clause_runs_split_as_before() -> None:
    text = "The server went down hard; " * 3 + "The team was paged at once, and they fixed it."
    assert learning.split_clauses(text) == [
        "The server went down hard.", "The server went down hard.",
        "The server went down hard.", "The team was paged at once, and they fixed it."]


# -- end to end ------------------------------------------------------------------------------
@pytest.fixture
def hive(tmp_path, monkeypatch):
    home = Path(f"/tmp/lbt{os.getpid()}-{time.monotonic_ns() % 10**6}")
    home.mkdir()
    monkeypatch.setenv("AMPLIHACK_HOME", str(home))
    h = Hive(home, "lb")
    assert h("create", "--name", h.name, "--agents", "3", "--shard-backend", "memory").code == 0
    yield h
    h.kill_all()
    subprocess.run(["rm", "-rf", str(home)], check=False)


def _log(h: Hive, agent: str) -> str:
    return (h.home / "hives" / h.name / "logs" / f"{agent}.log").read_text()


def test_a_turn_over_the_limit_is_refused_naming_its_line(hive: Hive, tmp_path: Path) -> None:
    cfg = hive.config().config_path
    cfg.write_text(cfg.read_text().replace("max_turn_bytes: 65536", "max_turn_bytes: 2048"))
    assert hive("start", "--hive", hive.name, "--timeout", "120").code == 0
    data = tmp_path / "big.txt"
    data.write_text("Alice leads Project Osprey.\n" + "word " * 500 + "\nBob runs db-7.\n")
    res = hive("learn", "--hive", hive.name, "--file", str(data))
    assert res.code == 1 and "Traceback" not in res.err
    assert res.err.strip().splitlines()[-1] == (
        f"amplihack-hive: error: {data}: line 2 is 2,500 bytes; the limit per turn is 2,048 "
        "bytes (max_turn_bytes in the hive config)")
    status = hive("status", "--hive", hive.name, "--json").json()
    assert sum(a["facts"] for a in status["agents"]) == 0  # nothing half-learned


def test_a_batch_resent_after_a_timeout_is_done_once(hive: Hive, tmp_path: Path,
                                                      capsys, monkeypatch) -> None:
    """The agent is stopped (SIGSTOP) as the first LEARN is sent: it times out and is sent
    again with the same batch id; when the agent resumes it does the work once and answers
    the repeat from its journal, and the CLI reports what was learned, once."""
    assert hive("start", "--hive", hive.name, "--timeout", "120").code == 0
    pid = supervisor.read_pid(hive.config(), "agent_0").pid
    real = AgentLink.learn
    first = [True]

    def stalled(self, batches, timeout, batch_ids=None, restore=False):
        if first[0]:
            first[0] = False
            os.kill(pid, signal.SIGSTOP)
            threading.Timer(timeout + 1.0, os.kill, args=(pid, signal.SIGCONT)).start()
        return real(self, batches, timeout, batch_ids, restore)

    monkeypatch.setattr(AgentLink, "learn", stalled)
    res = cli(capsys, "learn", "--hive", hive.name, "--agent", "agent_0", "--timeout", "2",
              "--text", "Alice leads Project Osprey.\nThe Gdansk data center has 48 racks.",
              "--json")
    assert res.code == 0, res.err
    doc = res.json()
    assert (doc["turns"], doc["facts"], doc["unique_facts"]) == (2, 2, 2)
    assert doc["repeats"] == 1 and doc["failover"] == {}
    log = _log(hive, "agent_0")
    assert log.count("LEARN turns=") == 1, log  # the work, once
    assert log.count("LEARN repeat") == 1, log  # the re-send, answered from the journal


def test_learn_fails_over_when_an_agent_is_killed_mid_learn(hive: Hive, tmp_path: Path) -> None:
    assert hive("start", "--hive", hive.name, "--timeout", "120").code == 0
    turns = 3000
    data = tmp_path / "turns.txt"
    data.write_text("".join(f"Host h{i} runs service s{i}.\n" for i in range(turns)))
    proc = subprocess.Popen(
        [*console_script(), "learn", "--hive", hive.name, "--file", str(data), "--batch", "5",
         "--parallel", "1", "--timeout", "10", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "AMPLIHACK_HOME": str(hive.home)})
    victim = supervisor.read_pid(hive.config(), "agent_1").pid
    deadline = time.monotonic() + 60
    while "LEARN turns=" not in _log(hive, "agent_1"):
        assert time.monotonic() < deadline and proc.poll() is None, "learn did not start"
        time.sleep(0.05)
    os.kill(victim, signal.SIGKILL)  # our own agent, by its PID
    out, err = proc.communicate(timeout=300)
    doc = json.loads(out.decode().splitlines()[0])
    assert doc["turns"] == turns and "agent_1" in doc["failover"], err
    assert doc["unique_facts"] == turns  # every turn learned by someone: nothing lost
    # Only replicas on the dead shard are missing, and the learn says so (exit 1).
    assert proc.returncode in (0, 1)
    if proc.returncode:
        assert "missing replicas" in err.decode() and "agent_1" in err.decode()
    asked = hive("ask", "--hive", hive.name, "--agent", "agent_2", "--json",
                 f"Which service does host h{turns - 1} run?")
    assert any(f"s{turns - 1}" in f["content"] for f in asked.json()["facts"])


def test_no_agent_left_stops_the_learn_with_how_far_it_got(hive: Hive, tmp_path: Path) -> None:
    assert hive("start", "--hive", hive.name, "--agents", "agent_0", "--timeout", "120").code == 0
    os.kill(supervisor.read_pid(hive.config(), "agent_0").pid, signal.SIGKILL)
    time.sleep(0.5)
    # The PID file still names agent_0: learn tries it, cannot reach it, and has no other.
    res = hive("learn", "--hive", hive.name, "--agent", "agent_0", "--text", "Bob runs db-7.")
    assert res.code == 1 and "Traceback" not in res.err
    line = res.err.strip().splitlines()[-1]
    assert ("not running" in line) or ("0 of 1 turns" in line and "re-running" in line), line


def test_relearning_retracted_facts_says_so_and_restore_learns_them(hive: Hive) -> None:
    assert hive("start", "--hive", hive.name, "--timeout", "120").code == 0
    text = "The Gdansk data center has 48 racks.\nZofia Nowak runs the Gdansk data center."
    assert hive("learn", "--hive", hive.name, "--text", text).code == 0
    assert hive("forget", "--hive", hive.name, "--match", "48 racks", "--yes").code == 0

    again = hive("learn", "--hive", hive.name, "--text", text, "--json")
    assert again.code == 1
    assert again.err.strip().splitlines()[-1] == (
        "amplihack-hive: error: 1 fact was retracted earlier and was not learned; "
        "`learn --restore` to learn it again")
    assert json.loads(again.out.splitlines()[0])["retracted"] == 1
    question = "How many racks does the Gdansk data center have?"
    found = hive("ask", "--hive", hive.name, "--json", question).json()["facts"]
    assert not any("48 racks" in f["content"] for f in found)

    restored = hive("learn", "--hive", hive.name, "--text", text, "--restore", "--json")
    assert restored.code == 0, restored.err
    assert json.loads(restored.out)["restored"] == 1
    found = hive("ask", "--hive", hive.name, "--json", question).json()["facts"]
    assert any("48 racks" in f["content"] for f in found)
    # Restored hive-wide: a plain learn now finds nothing retracted.
    assert hive("learn", "--hive", hive.name, "--text", text).code == 0


def test_restore_needs_every_agent_running(hive: Hive) -> None:
    assert hive("start", "--hive", hive.name, "--agents", "agent_0,agent_1",
                "--timeout", "120").code == 0
    res = hive("learn", "--hive", hive.name, "--text", "Bob runs db-7.", "--restore")
    assert res.code == 1 and res.err.strip().splitlines()[-1].endswith("agent_2 not running")
