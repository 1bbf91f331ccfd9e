"""The process supervisor with real processes and real signals (no agent runtime needed).

Stand-in agents are plain Python processes; readiness answers come over the in-process
LocalEventBus so the waiting logic is exercised exactly as with Unix sockets.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time

import psutil
import pytest

from hive_cli import lifecycle, supervisor
from hive_cli.agent_link import AgentLink
from hive_core.hive_config import AgentConfig, HiveConfig
from hive_core.messages import Envelope
from hive_core.transports.local import LocalEventBus

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]
STUBBORN = [sys.executable, "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(120)"]
EXITS = [sys.executable, "-c", "import sys; print('boom', flush=True); sys.exit(3)"]


@pytest.fixture
def hive(amplihack_home):
    cfg = HiveConfig("sup", agents=tuple(AgentConfig(f"a{i}") for i in range(3)))
    cfg.save()
    yield cfg
    supervisor.stop(cfg, cfg.agent_names(), timeout=1)


def _wait_for_output(cfg: HiveConfig, agent: str, text: str) -> None:
    deadline = time.monotonic() + 10
    while text not in supervisor.log_path(cfg, agent).read_text():
        assert time.monotonic() < deadline, f"{agent} never printed {text!r}"
        time.sleep(0.05)


def test_spawn_records_pid_and_start_time_and_logs(hive):
    record = supervisor.spawn(hive, "a0", [sys.executable, "-c", "print('hello log')"])
    raw = json.loads(supervisor.pid_path(hive, "a0").read_text())
    assert raw["pid"] == record.pid and raw["create_time"] == record.create_time
    assert oct(supervisor.pid_path(hive, "a0").stat().st_mode & 0o777) == "0o600"
    _wait_for_output(hive, "a0", "hello log")
    assert "starting a0" in supervisor.log_path(hive, "a0").read_text()


def test_reused_pid_is_not_recognised_or_signalled(hive):
    victim = psutil.Popen(SLEEPER)
    try:
        fake = supervisor.PidRecord(victim.pid, victim.create_time() - 1000.0, time.time())
        supervisor.write_pid(hive, "a0", fake)
        assert supervisor.live_process(fake) is None
        results = supervisor.stop(hive, ["a0"], timeout=1)
        assert results[0].outcome == "crashed"
        assert victim.is_running() and victim.status() != psutil.STATUS_ZOMBIE
        assert not supervisor.pid_path(hive, "a0").exists()
    finally:
        victim.kill()
        victim.wait(5)


def test_stop_escalates_to_sigkill_and_verifies(hive):
    supervisor.spawn(hive, "a0", STUBBORN)
    supervisor.spawn(hive, "a1", SLEEPER)
    _wait_for_output(hive, "a0", "ready")
    procs = {a: supervisor.live_process(supervisor.read_pid(hive, a)) for a in ("a0", "a1")}
    results = {r.agent: r.outcome for r in supervisor.stop(hive, ["a0", "a1", "a2"], 0.5)}
    assert results == {"a0": "killed", "a1": "stopped", "a2": "not running"}
    for proc in procs.values():
        assert supervisor.is_gone(proc)
    assert not list(hive.run_dir.glob("*.pid"))


def test_probe_states(hive):
    supervisor.spawn(hive, "a0", SLEEPER)
    dead = supervisor.spawn(hive, "a1", SLEEPER)
    psutil.Process(dead.pid).send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 5
    while supervisor.live_process(dead) is not None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    states = {s.name: s for s in lifecycle.probe(hive, None, hive.agent_names())}
    assert states["a0"].status == "starting" and states["a0"].rss_mb
    assert states["a1"].status == "crashed" and states["a1"].pid == dead.pid
    assert states["a2"].status == "stopped"
    old = supervisor.read_pid(hive, "a0")
    supervisor.write_pid(hive, "a0", supervisor.PidRecord(
        old.pid, old.create_time, time.time() - lifecycle.STARTUP_GRACE_S - 1))
    hung = lifecycle.probe(hive, None, ["a0"])[0]
    assert hung.status == "unresponsive" and "no ready status" in hung.detail


def _recorded_pid(cfg: HiveConfig, agent: str) -> int | None:
    """The stand-in answers as the process recorded for ``agent`` (an agent's status reply
    carries its own PID, which must be the recorded one to count as ready)."""
    record = supervisor.read_pid(cfg, agent)
    return None if record is None else record.pid


class FakeReadiness:
    """Answers status for agents on a LocalEventBus: ready after ``after`` polls."""

    def __init__(self, cfg: HiveConfig, bus: LocalEventBus, agents: list[str],
                 after: int | None) -> None:
        self.cfg = cfg
        self.calls = dict.fromkeys(agents, 0)
        self.after = after
        for agent in agents:
            bus.bind(agent, self.handle)

    def handle(self, env: Envelope) -> Envelope:
        self.calls[env.target] += 1
        ready = self.after is not None and self.calls[env.target] > self.after
        return env.reply({"agent": env.target, "ready": ready, "facts": 7,
                          "pid": _recorded_pid(self.cfg, env.target)})


def test_start_waits_for_ready_and_reports_failures(hive):
    bus = LocalEventBus()
    fake = FakeReadiness(hive, bus, ["a0", "a1"], after=3)
    commands = {"a0": SLEEPER, "a1": EXITS}
    ticks: list[int] = []
    results = lifecycle.start(hive, AgentLink(hive.name, bus), ["a0", "a1"], timeout=20,
                              progress=ticks.append, command=commands.__getitem__)
    by = {r.agent: r for r in results}
    assert by["a0"].outcome == "started" and by["a0"].ready_s is not None
    assert fake.calls["a0"] >= 4
    assert by["a1"].outcome == "failed" and "exited while starting" in by["a1"].detail
    assert not supervisor.pid_path(hive, "a1").exists()
    assert sum(ticks) == 2
    again = lifecycle.start(hive, AgentLink(hive.name, bus), ["a0"], timeout=5,
                            command=commands.__getitem__)
    assert again[0].outcome == "already running" and again[0].pid == by["a0"].pid
    state = lifecycle.probe(hive, AgentLink(hive.name, bus), ["a0"])[0]
    assert (state.status, state.facts) == ("running", 7)
    bus.close()


def test_start_timeout_stops_agents_that_never_get_ready(hive):
    bus = LocalEventBus()
    FakeReadiness(hive, bus, ["a2"], after=None)
    results = lifecycle.start(hive, AgentLink(hive.name, bus), ["a2"], timeout=1,
                              command=lambda a: SLEEPER)
    assert results[0].outcome == "failed" and "not ready within 1s" in results[0].detail
    assert supervisor.read_pid(hive, "a2") is None
    assert not psutil.pid_exists(results[0].pid) or supervisor.is_gone(
        psutil.Process(results[0].pid))
    bus.close()


def _backdate(cfg: HiveConfig, agent: str) -> supervisor.PidRecord:
    old = supervisor.read_pid(cfg, agent)
    supervisor.write_pid(cfg, agent, supervisor.PidRecord(
        old.pid, old.create_time, time.time() - lifecycle.STARTUP_GRACE_S - 1))
    return old


def test_start_does_not_kill_a_busy_agent(hive):
    bus = LocalEventBus()

    def slow(env: Envelope) -> Envelope:
        time.sleep(lifecycle.STATUS_TIMEOUT_S + 1)  # busier than a status poll waits
        return env.reply({"agent": env.target, "ready": True, "facts": 1,
                          "pid": _recorded_pid(hive, env.target)})

    bus.bind("a0", slow)
    record = supervisor.spawn(hive, "a0", SLEEPER)
    _backdate(hive, "a0")
    link = AgentLink(hive.name, bus)
    assert lifecycle.probe(hive, link, ["a0"])[0].status == "unresponsive"
    result = lifecycle.start(hive, link, ["a0"], timeout=30, command=lambda a: SLEEPER)[0]
    assert (result.outcome, result.pid) == ("already running", record.pid)
    assert supervisor.live_process(record) is not None
    bus.close()


def test_start_replaces_a_hung_agent(hive):
    bus = LocalEventBus()
    hung = supervisor.spawn(hive, "a1", SLEEPER)
    _backdate(hive, "a1")

    def handle(env: Envelope) -> Envelope:  # the old process never gets ready, a new one does
        current = supervisor.read_pid(hive, "a1")
        ready = current is not None and current.pid != hung.pid
        return env.reply({"agent": env.target, "ready": ready, "facts": 0,
                          "pid": None if current is None else current.pid})

    bus.bind("a1", handle)
    result = lifecycle.start(hive, AgentLink(hive.name, bus), ["a1"], timeout=30,
                             command=lambda a: SLEEPER)[0]
    assert result.outcome == "restarted" and result.pid != hung.pid
    assert supervisor.live_process(hung) is None
    bus.close()


def test_a_ctrl_c_on_another_thread_waits_until_the_spawn_is_recorded() -> None:
    """A SIGINT that lands on a thread other than the main one (numpy and friends start
    threads) is held until the spawn's block is done, then delivered."""
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    reached_end = False
    try:
        with pytest.raises(KeyboardInterrupt), supervisor._sigint_deferred():
            signal.pthread_kill(other.ident, signal.SIGINT)
            time.sleep(0.2)  # a handler not held would raise here
            reached_end = True
    finally:
        stop.set()
    assert reached_end
