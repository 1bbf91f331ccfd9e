"""Operator conveniences, with real agent processes where processes matter: ``restart``,
"did you mean", plain columns when piped, and a JSON error document under ``--json``."""

from __future__ import annotations

import json

import pytest
from cli_helpers import cli, cli_process

from hive_cli import supervisor
from hive_core.errors import ConfigError
from hive_core.hive_config import HiveConfig

BOX = set("┃━┏┓┗┛│─┡┩╇")


def pids(name: str) -> dict[str, int]:
    config = HiveConfig.load(name)
    out = {}
    for agent in config.agent_names():
        record = supervisor.read_pid(config, agent)
        if record is not None and supervisor.live_process(record) is not None:
            out[agent] = record.pid
    return out


@pytest.fixture
def home(tmp_path, monkeypatch):
    path = tmp_path / "home"
    monkeypatch.setenv("AMPLIHACK_HOME", str(path))
    yield path
    root = path / "hives"
    for folder in root.iterdir() if root.exists() else ():
        try:
            config = HiveConfig.load(folder.name)
        except ConfigError:
            continue  # a test broke it on purpose; it never ran agents
        supervisor.stop(config, config.agent_names(), timeout=5)


def test_restart_replaces_the_named_agents_and_starts_stopped_ones(home) -> None:
    assert cli_process(home, "create", "--name", "rs", "--agents", "2",
                       "--shard-backend", "memory").code == 0
    # A stopped hive: restart starts it (as pm2 restart does).
    res = cli_process(home, "restart", "--hive", "rs", "--json")
    assert res.code == 0, res.err
    doc = res.json()
    assert doc["ok"] is True and {a["agent"] for a in doc["agents"]} == {"agent_0", "agent_1"}
    before = pids("rs")
    assert set(before) == {"agent_0", "agent_1"}
    res = cli_process(home, "restart", "--hive", "rs", "--agents", "agent_1")
    assert res.code == 0, res.err
    after = pids("rs")
    assert after["agent_0"] == before["agent_0"]  # untouched
    assert after["agent_1"] != before["agent_1"]  # a new process
    status = cli_process(home, "status", "--hive", "rs", "--json").json()
    assert {a["name"]: a["status"] for a in status["agents"]} == {
        "agent_0": "running", "agent_1": "running"}


def test_did_you_mean_for_hives_and_agents(home, capsys) -> None:
    assert cli(capsys, "create", "--name", "ops", "--agents", "2").code == 0
    res = cli(capsys, "status", "--hive", "opps")
    assert res.code == 1 and "did you mean 'ops'?" in res.err
    res = cli(capsys, "stop", "--hive", "ops", "--agents", "agnet_1")
    assert res.code == 1 and "did you mean 'agent_1'?" in res.err
    res = cli(capsys, "status", "--hive", "zzzzzz")
    assert "did you mean" not in res.err


def test_piped_tables_are_plain_columns(home) -> None:
    assert cli_process(home, "create", "--name", "pl", "--agents", "2").code == 0
    res = cli_process(home, "list")
    assert res.code == 0 and not BOX & set(res.out), res.out
    lines = [line.split() for line in res.out.splitlines() if line.strip()]
    assert lines[0][:3] == ["hive", "transport", "agents"]
    assert lines[1][:3] == ["pl", "local", "2"]
    res = cli_process(home, "status", "--hive", "pl")
    assert not BOX & set(res.out) and "agent_1" in res.out


def test_json_errors_are_a_document_on_stdout(home, capsys) -> None:
    res = cli(capsys, "status", "--hive", "nope", "--json")
    assert res.code == 1
    assert json.loads(res.out) == {"error": res.err.strip().removeprefix(
        "amplihack-hive: error: "), "exit_code": 1}
    res = cli(capsys, "status", "--hive", "nope")
    assert res.out == ""  # without --json, stdout stays empty


@pytest.mark.parametrize(("line", "message"), [
    ("replication_factor: abc", "replication_factor: must be a whole number (got 'abc')"),
    ("replication_factor: 2.7", "replication_factor: must be a whole number (got 2.7)"),
    ("query_fanout: '5'", "query_fanout: must be a whole number (got '5')"),
    ("search_timeout: 0", "search_timeout: must be greater than 0 (got 0)"),
    ("colour: blue", "colour: unknown key"),
])
def test_a_broken_config_names_its_file_and_key_and_list_goes_on(home, capsys, line,
                                                                  message) -> None:
    for name in ("good", "bad"):
        assert cli(capsys, "create", "--name", name, "--agents", "2").code == 0
    path = home / "hives" / "bad" / "config.yaml"
    text = path.read_text()
    key = line.split(":")[0]
    lines = [ln for ln in text.splitlines() if not ln.startswith(f"{key}:")]
    path.write_text("\n".join([*lines, line]) + "\n")
    res = cli(capsys, "show", "--hive", "bad")
    assert res.code == 1 and res.err.strip() == f"amplihack-hive: error: {path}: {message}"
    listed = cli(capsys, "list", "--json")
    assert listed.code == 0
    rows = {r["name"]: r for r in listed.json()["hives"]}
    assert rows["good"]["error"] is None and rows["good"]["agents"] == 2
    assert message in rows["bad"]["error"]


def test_an_unknown_agent_key_is_named(home, capsys) -> None:
    assert cli(capsys, "create", "--name", "ag", "--agents", "2").code == 0
    path = home / "hives" / "ag" / "config.yaml"
    path.write_text(path.read_text().replace("- name: agent_1\n",
                                             "- name: agent_1\n  colour: blue\n"))
    res = cli(capsys, "status", "--hive", "ag")
    assert res.code == 1 and res.err.strip().endswith("agents.1.colour: unknown key")


def complete(home, words: str) -> list[str]:
    """What bash completion offers for ``words`` (the last one being completed)."""
    parts = words.split(" ")
    res = cli_process(home, env={"_AMPLIHACK_HIVE_COMPLETE": "complete_bash",
                                 "COMP_WORDS": words, "COMP_CWORD": str(len(parts) - 1)})
    assert res.code == 0, res.err
    return res.out.split()


def test_shell_completion_of_hive_and_agent_names(home, capsys) -> None:
    for name in ("ops", "openai", "sec"):
        assert cli(capsys, "create", "--name", name, "--agents", "3").code == 0
    assert complete(home, "amplihack-hive status --hive op") == ["openai", "ops"]
    assert complete(home, "amplihack-hive stop --hive ops --agents agent_1,") == [
        "agent_1,agent_0", "agent_1,agent_2"]
    assert complete(home, "amplihack-hive logs --hive nothere --agent a") == []


def test_an_agent_rotates_its_log_by_size(home) -> None:
    from hive_cli.agent_link import AgentLink
    from hive_core.transports.registry import hive_auth
    from hive_core.transports.unix import UnixSocketTransport

    assert cli_process(home, "create", "--name", "lg", "--agents", "1",
                       "--shard-backend", "memory").code == 0
    limits = {"AMPLIHACK_LOG_MAX_BYTES": "2048", "AMPLIHACK_LOG_BACKUPS": "2"}
    assert cli_process(home, "start", "--hive", "lg", env=limits).code == 0
    config = HiveConfig.load("lg")
    link = AgentLink("lg", UnixSocketTransport(config.run_dir, auth=hive_auth(config)))
    try:
        for i in range(120):  # each ask writes one ~150-byte log line
            link.ask("agent_0", f"What is question number {i}?", 3, 10.0)
    finally:
        link.transport.close()
    log = supervisor.log_path(config, "agent_0")
    one, two = (log.with_name(f"{log.name}.{i}") for i in (1, 2))
    assert one.exists() and two.exists()
    assert not log.with_name(f"{log.name}.3").exists()  # beyond the backups: dropped
    for path in (log, one, two):
        assert path.stat().st_size < 2048 + 400  # the limit, plus the record that passed it
        assert path.stat().st_mode & 0o077 == 0
    # The newest line is in the live file, which `logs` shows.
    assert "question number 119" in log.read_text()
    res = cli_process(home, "logs", "--hive", "lg", "--lines", "1")
    assert "question number 119" in res.out


def test_ctrl_c_during_start_leaves_every_spawned_agent_recorded(home) -> None:
    import os
    import signal
    import subprocess
    import time

    import psutil
    from cli_helpers import console_script

    name = f"cc{os.getpid()}"
    assert cli_process(home, "create", "--name", name, "--agents", "6").code == 0
    config = HiveConfig.load(name)
    proc = subprocess.Popen([*console_script(), "start", "--hive", name],
                            env={**os.environ, "AMPLIHACK_HOME": str(home)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not list(config.run_dir.glob("*.pid")):
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert b"interrupted:" in err and b"of 6 agent(s) spawned" in err

    def hive_processes() -> set[int]:
        out = set()
        for p in psutil.process_iter(["cmdline", "status"]):
            cmd = p.info["cmdline"] or []
            if "agent_runtime" in cmd and name in cmd and p.info["status"] != "zombie":
                out.add(p.pid)
        return out

    recorded = {supervisor.read_pid(config, a).pid for a in config.agent_names()
                if supervisor.read_pid(config, a) is not None}
    assert hive_processes() <= recorded  # no agent runs without a record
    assert cli_process(home, "stop", "--hive", name).code == 0
    assert hive_processes() == set()


def test_status_watch_redraws_until_ctrl_c(home) -> None:
    import os
    import signal
    import subprocess
    import time

    from cli_helpers import console_script

    assert cli_process(home, "create", "--name", "wt", "--agents", "2",
                       "--shard-backend", "memory").code == 0
    assert cli_process(home, "start", "--hive", "wt").code == 0
    proc = subprocess.Popen([*console_script(), "status", "--hive", "wt", "--watch",
                             "--interval", "0.3"], env={**os.environ, "AMPLIHACK_HOME": str(home)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(3.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    snapshots = out.decode().count("2/2 running")
    assert snapshots >= 2, out.decode()  # piped: one plain snapshot per interval
    assert not BOX & set(out.decode())
    res = cli_process(home, "status", "--hive", "wt", "--watch", "--json")
    assert res.code == 2 and "--watch" in res.err


def test_the_keeper_restarts_a_crashed_agent_and_stop_stops_it_first(home) -> None:
    import os
    import signal
    import time

    from hive_cli import keeper

    assert cli_process(home, "create", "--name", "kp", "--agents", "2",
                       "--shard-backend", "memory").code == 0
    res = cli_process(home, "start", "--hive", "kp", "--restart", "on-failure")
    assert res.code == 0 and "keeper (pid" in res.err, res.err
    config = HiveConfig.load("kp")
    watcher = keeper.running(config)
    assert watcher is not None
    first = pids("kp")
    os.kill(first["agent_1"], signal.SIGKILL)  # a crash, not a stop

    def restarted() -> dict | None:
        doc = cli_process(home, "status", "--hive", "kp", "--json").json()
        rows = {a["agent"]: a for a in doc["agents"]}
        one = rows["agent_1"]
        ok = one["status"] == "running" and one["pid"] != first["agent_1"]
        return rows if ok else None

    deadline, rows = time.monotonic() + 30, None
    while time.monotonic() < deadline and rows is None:
        rows = restarted()
        time.sleep(0.3)
    assert rows is not None, "the keeper did not restart agent_1"
    assert rows["agent_1"]["restarts"] == 1 and rows["agent_0"]["restarts"] == 0
    assert rows["agent_0"]["pid"] == first["agent_0"]
    # A stop of one agent is not a crash: the keeper leaves it stopped.
    assert cli_process(home, "stop", "--hive", "kp", "--agents", "agent_0").code == 0
    time.sleep(2.5)
    assert "agent_0" not in pids("kp")
    # Stopping the hive stops the keeper first; nothing comes back.
    res = cli_process(home, "stop", "--hive", "kp")
    assert res.code == 0 and "stopped the keeper" in res.err
    time.sleep(2.5)
    assert keeper.running(config) is None and pids("kp") == {}


def test_the_keeper_backs_off_and_gives_up_after_max_restarts(home, capsys, monkeypatch):
    from hive_cli import keeper

    assert cli(capsys, "create", "--name", "gu", "--agents", "1").code == 0
    config = HiveConfig.load("gu")
    dead = supervisor.PidRecord(2**22 + 12345, 1.0, 0.0)  # no such process
    supervisor.write_pid(config, "agent_0", dead)
    spawned: list[float] = []

    def fake_spawn(cfg, agent, command=None, env=None, restarts=0):  # crashes at once
        record = supervisor.PidRecord(dead.pid, 1.0, clock[0], restarts=restarts)
        supervisor.write_pid(cfg, agent, record)
        spawned.append(clock[0])
        return record

    monkeypatch.setattr(supervisor, "spawn", fake_spawn)
    monkeypatch.setattr(keeper, "BACKOFF", type(keeper.BACKOFF)(base=1.0, cap=4.0))
    k = keeper.Keeper(config, ["agent_0"], max_restarts=3)
    clock = [1000.0]
    while clock[0] < 1100:
        k.check(clock[0])
        clock[0] += 0.25
    assert len(spawned) == 3 and "agent_0" in k.given_up
    # Backoff base 1 s doubling (equal jitter: half to all of it), seen at 0.25 s steps.
    waits = [spawned[0] - 1000.0, spawned[1] - spawned[0], spawned[2] - spawned[1]]
    for wait, full in zip(waits, (1.0, 2.0, 4.0), strict=True):
        assert full / 2 - 0.01 <= wait <= full + 0.5, waits
    assert supervisor.read_pid(config, "agent_0").restarts == 3


def test_the_default_hive_is_the_env_var_or_the_only_one(home, capsys, monkeypatch) -> None:
    res = cli(capsys, "show")
    assert res.code == 2 and "no hive exists yet" in res.err
    assert cli(capsys, "create", "--name", "solo", "--agents", "1").code == 0
    assert cli(capsys, "show", "--json").json()["name"] == "solo"  # the only one
    assert cli(capsys, "create", "--name", "duo", "--agents", "1").code == 0
    res = cli(capsys, "show")
    assert res.code == 2 and "give --hive NAME or set AMPLIHACK_HIVE (2 hives: duo, solo)" \
        in res.err
    monkeypatch.setenv("AMPLIHACK_HIVE", "duo")
    assert cli(capsys, "show", "--json").json()["name"] == "duo"
    assert cli(capsys, "show", "--hive", "solo", "--json").json()["name"] == "solo"


def test_forget_retracts_hive_wide_and_it_stays_forgotten(home) -> None:
    assert cli_process(home, "create", "--name", "fg", "--agents", "3").code == 0  # kuzu
    assert cli_process(home, "start", "--hive", "fg").code == 0
    text = ("Project Osprey is led by Hannah Schmidt.\nProject Osprey was cancelled in May.\n"
            "Project Heron is led by Ravi Gupta.\n")
    assert cli_process(home, "learn", "--hive", "fg", "--text", text).code == 0

    def facts_about(question: str) -> list[str]:
        doc = cli_process(home, "ask", "--hive", "fg", question, "--json").json()
        return [f["content"] for f in doc["facts"]]

    assert "Project Osprey was cancelled in May." in facts_about("Was Project Osprey cancelled?")
    preview = cli_process(home, "forget", "--hive", "fg", "--match", "osprey was cancelled")
    assert preview.code == 1 and "nothing forgotten: add --yes" in preview.err
    assert "would be forgotten" in preview.out and "cancelled in May" in preview.out
    assert "Project Osprey was cancelled in May." in facts_about("Was Project Osprey cancelled?")
    done = cli_process(home, "forget", "--hive", "fg", "--match", "osprey was cancelled",
                       "--yes", "--json")
    assert done.code == 0, done.err
    doc = done.json()
    assert doc["ok"] and len(doc["forgotten"]) == 1 and doc["failed"] == []
    # Gone on every replica, from every asker, and after a restart (Kuzu tombstones).
    for _ in range(3):
        assert "Project Osprey was cancelled in May." not in facts_about(
            "Was Project Osprey cancelled?")
    assert cli_process(home, "restart", "--hive", "fg").code == 0
    left = facts_about("Was Project Osprey cancelled?")
    assert "Project Osprey was cancelled in May." not in left
    assert "Project Osprey is led by Hannah Schmidt." in left  # only what matched went
    status = cli_process(home, "status", "--hive", "fg", "--json").json()
    assert sum(a["facts"] for a in status["agents"]) == 2 * 3  # 2 facts x RF 3
    res = cli_process(home, "forget", "--hive", "fg", "--match", "x", "--fact-id", "f_1")
    assert res.code == 2 and "not both" in res.err
