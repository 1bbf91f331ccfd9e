"""The hive's life cycle under the lifecycle lock, with real agent processes and signals.

Every check of "which processes run" reads /proc itself (command line, environment, state),
independently of the product's own discovery, so a bug shared by status and stop cannot hide.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from cli_helpers import cli_process, console_script

from hive_cli import hive_lock, keeper, supervisor
from hive_cli.errors import CliFailure
from hive_core.hive_config import HiveConfig


def hive_pids(home: Path, hive: str) -> dict[str, list[int]]:
    """Live (non-zombie) agent processes of ``hive`` under ``home``, read from /proc."""
    out: dict[str, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if b"agent_runtime" not in argv or hive.encode() not in argv:
                continue
            env = dict(kv.split(b"=", 1) for kv in (entry / "environ").read_bytes().split(b"\0")
                       if b"=" in kv)
            state = next(line for line in (entry / "status").read_text().splitlines()
                         if line.startswith("State:"))
        except (OSError, StopIteration):
            continue
        if env.get(b"AMPLIHACK_HOME") != str(home).encode() or "Z" in state.split()[1]:
            continue
        agent = argv[argv.index(b"--agent") + 1].decode()
        out.setdefault(agent, []).append(int(entry.name))
    return out


def wait_until_gone(home: Path, hive: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while hive_pids(home, hive) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert hive_pids(home, hive) == {}, "processes of the hive are still running"


@pytest.fixture
def home(tmp_path_factory, monkeypatch):
    path = Path(tmp_path_factory.mktemp("lc", numbered=True))
    monkeypatch.setenv("AMPLIHACK_HOME", str(path))
    yield path
    for agent_pids in hive_pids(path, "lc").values():  # whatever a failed test left
        for pid in agent_pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def create(home: Path, agents: int = 3, backend: str = "kuzu") -> None:
    res = cli_process(home, "create", "--name", "lc", "--agents", str(agents),
                      "--shard-backend", backend)
    assert res.code == 0, res.err


def status(home: Path) -> dict[str, dict]:
    res = cli_process(home, "status", "--hive", "lc", "--json")
    return {a["agent"]: a for a in res.json()["agents"]}


def test_overlapping_starts_and_stops_leave_one_recorded_process_per_agent(home) -> None:
    create(home)
    config = HiveConfig.load("lc")
    for _round in range(2):
        procs = [subprocess.Popen([*console_script(), "start", "--hive", "lc"],
                                  env={**os.environ, "AMPLIHACK_HOME": str(home)},
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for _ in range(4)]
        outs = [p.communicate(timeout=180) for p in procs]
        assert all(p.returncode == 0 for p in procs), [o[1].decode() for o in outs]
        # One process per agent, and it is the recorded one: nothing runs that stop can't see.
        running = hive_pids(home, "lc")
        recorded = {a: supervisor.read_pid(config, a).pid for a in config.agent_names()}
        assert running == {a: [pid] for a, pid in recorded.items()}
        assert {a: s["status"] for a, s in status(home).items()} == dict.fromkeys(
            recorded, "running")
        # Only the first start started anything; the others waited and found it done.
        started = sum(b"started" in o[0] or b"ready" in o[0] for o in outs)
        assert started >= 1
        stops = [subprocess.Popen([*console_script(), "stop", "--hive", "lc"],
                                  env={**os.environ, "AMPLIHACK_HOME": str(home)},
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for _ in range(3)]
        for p in stops:
            p.communicate(timeout=120)
            assert p.returncode == 0
        wait_until_gone(home, "lc")


def test_an_unrecorded_agent_is_reported_stopped_adopted_and_never_doubled(home) -> None:
    create(home, agents=2, backend="memory")
    assert cli_process(home, "start", "--hive", "lc").code == 0
    config = HiveConfig.load("lc")
    orphan = supervisor.read_pid(config, "agent_1").pid
    supervisor.pid_path(config, "agent_1").unlink()  # e.g. a start killed before recording
    row = status(home)["agent_1"]
    assert (row["status"], row["pid"]) == ("orphaned", orphan) and "stop" in row["detail"]
    assert cli_process(home, "status", "--hive", "lc").code == 3
    # start adopts it: no second process of agent_1 is spawned.
    res = cli_process(home, "start", "--hive", "lc", "--json")
    assert res.code == 0, res.err
    outcome = {a["agent"]: a["outcome"] for a in res.json()["agents"]}
    assert outcome == {"agent_0": "already running", "agent_1": "adopted"}
    assert hive_pids(home, "lc")["agent_1"] == [orphan]
    assert supervisor.read_pid(config, "agent_1").pid == orphan
    assert status(home)["agent_1"]["status"] == "running"
    # Unrecorded again; stop reaches it all the same.
    supervisor.pid_path(config, "agent_1").unlink()
    res = cli_process(home, "stop", "--hive", "lc", "--json")
    assert res.code == 0, res.err
    outcomes = {(a["agent"], a["outcome"]) for a in res.json()["agents"]}
    assert ("agent_1", "stopped (unrecorded)") in outcomes
    wait_until_gone(home, "lc")


def test_a_corrupt_pid_file_blocks_nothing(home) -> None:
    create(home, agents=2, backend="memory")
    assert cli_process(home, "start", "--hive", "lc").code == 0
    config = HiveConfig.load("lc")
    pid = supervisor.read_pid(config, "agent_0").pid
    supervisor.pid_path(config, "agent_0").write_text("{not json")
    rows = status(home)
    assert rows["agent_1"]["status"] == "running"
    assert rows["agent_0"]["status"] == "orphaned" and rows["agent_0"]["pid"] == pid
    res = cli_process(home, "stop", "--hive", "lc")
    assert res.code == 0, res.err
    wait_until_gone(home, "lc")
    assert supervisor.pid_path(config, "agent_0").with_name("agent_0.pid.corrupt").exists()


def test_stop_and_delete_when_the_config_is_gone_or_records_are_missing(home) -> None:
    create(home, agents=2, backend="memory")
    assert cli_process(home, "start", "--hive", "lc").code == 0
    config = HiveConfig.load("lc")
    for agent in config.agent_names():
        supervisor.pid_path(config, agent).unlink()
    # delete refuses while any process of the hive runs, records or not.
    res = cli_process(home, "delete", "--hive", "lc")
    assert res.code == 1 and "running" in res.err and config.config_path.exists()
    config.config_path.unlink()
    res = cli_process(home, "stop", "--hive", "lc")
    assert res.code == 0, res.err
    assert "no config.yaml" in res.err
    wait_until_gone(home, "lc")
    res = cli_process(home, "stop", "--hive", "lc")
    assert res.code == 1 and "no hive named 'lc'" in res.err


def test_a_command_waits_for_the_lock_and_gives_up_at_its_deadline(home) -> None:
    create(home, agents=1, backend="memory")
    with hive_lock.hold("lc", "test"):
        t0 = time.monotonic()
        res = cli_process(home, "start", "--hive", "lc", env={"AMPLIHACK_LOCK_TIMEOUT": "1"})
        assert time.monotonic() - t0 >= 1.0
    assert res.code == 1 and f"pid {os.getpid()} (test)" in res.err, res.err
    assert "Traceback" not in res.err and hive_pids(home, "lc") == {}
    # Released: a start that waited runs as soon as the holder is done. The lock is let go
    # only once the waiting command has said it waits (however long it took to start).
    with hive_lock.hold("lc", "test"):
        waiting = subprocess.Popen([*console_script(), "start", "--hive", "lc"],
                                   env={**os.environ, "AMPLIHACK_HOME": str(home),
                                        "AMPLIHACK_LOCK_TIMEOUT": "60"},
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert waiting.stderr is not None
        first = waiting.stderr.readline()  # blocks until the CLI writes its first line
    _out, rest = waiting.communicate(timeout=120)
    assert "waiting for" in first and f"pid {os.getpid()} (test)" in first, first + rest
    assert waiting.returncode == 0, rest
    assert cli_process(home, "stop", "--hive", "lc").code == 0


def test_readiness_counts_only_from_the_spawned_process(home) -> None:
    """An impostor answering on an agent's socket does not make a start succeed."""
    create(home, agents=1, backend="memory")
    assert cli_process(home, "start", "--hive", "lc").code == 0
    config = HiveConfig.load("lc")
    real = supervisor.read_pid(config, "agent_0")
    # A record naming another live process of ours: the socket's answers carry real.pid.
    other = subprocess.Popen(["sleep", "60"])
    try:
        supervisor.write_pid(config, "agent_0", supervisor.PidRecord(
            other.pid, psutil.Process(other.pid).create_time(), time.time() - 120,
            ready_at=time.time() - 100))
        row = status(home)["agent_0"]
        assert row["status"] == "unresponsive"
        assert f"answered by pid {real.pid}" in row["detail"], row["detail"]
    finally:
        other.kill()
        other.wait()
        supervisor.write_pid(config, "agent_0", real)
    assert cli_process(home, "stop", "--hive", "lc").code == 0
    wait_until_gone(home, "lc")


def test_the_keeper_never_restarts_while_a_command_holds_the_lock(home) -> None:
    create(home, agents=2, backend="memory")
    res = cli_process(home, "start", "--hive", "lc", "--restart", "on-failure")
    assert res.code == 0, res.err
    config = HiveConfig.load("lc")
    assert keeper.running(config) is not None
    dead = supervisor.read_pid(config, "agent_1").pid
    with hive_lock.hold("lc", "test"):
        os.kill(dead, signal.SIGKILL)
        time.sleep(3.5)  # backoff 1 s + polls: the keeper would have restarted by now
        assert "agent_1" not in hive_pids(home, "lc")
    deadline = time.monotonic() + 20
    while "agent_1" not in hive_pids(home, "lc") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(hive_pids(home, "lc").get("agent_1", [])) == 1
    res = cli_process(home, "stop", "--hive", "lc")
    assert res.code == 0 and "stopped the keeper" in res.err
    wait_until_gone(home, "lc")


def test_the_keepers_log_rotates(home, monkeypatch) -> None:
    create(home, agents=1, backend="memory")
    config = HiveConfig.load("lc")
    log = supervisor.log_path(config, "keeper")
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("x" * 2048 + "\n")  # already past the limit: the next record rotates it
    monkeypatch.setenv("AMPLIHACK_LOG_MAX_BYTES", "1024")
    # No agent has a record, so the keeper logs that it starts, then that it has nothing to
    # keep, and exits.
    record = keeper.launch(config, config.agent_names(), max_restarts=1)
    deadline = time.monotonic() + 20
    while supervisor.live_process(supervisor.read_pid(config, "keeper")) and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    assert record and log.with_name("keeper.log.1").exists()
    assert "x" * 2048 in log.with_name("keeper.log.1").read_text()
    assert "no agent left to keep" in log.read_text()


def test_hive_lock_refuses_a_bad_timeout(home, monkeypatch) -> None:
    monkeypatch.setenv("AMPLIHACK_LOCK_TIMEOUT", "nan")
    with pytest.raises(CliFailure, match="AMPLIHACK_LOCK_TIMEOUT"):
        hive_lock.wait_limit()
