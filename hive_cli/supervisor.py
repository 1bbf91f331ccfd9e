"""Agent processes of a hive: spawn them, know them again, signal them, reap them.

One OS process per agent, started in its own session so a Ctrl-C in the terminal that ran
``start`` does not reach it. Its stdout and stderr are appended to ``logs/AGENT.log``.

A PID alone does not identify a process: after an agent dies its PID can be handed to any
other program. So ``run/AGENT.pid`` records the PID *and* the process start time (psutil's
``create_time``); a process counts as the agent only when both match, and only then is it
signalled or reported as alive. A zombie counts as gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from hive_core.atomic import write_private
from hive_core.errors import AgentError
from hive_core.hive_config import HiveConfig, amplihack_home

CREATE_TIME_TOLERANCE_S = 0.05
KILL_WAIT_S = 5.0
STOP_TIMEOUT_S = 10.0  # SIGTERM grace when a command (not the user) stops an agent
POLL_S = 0.05


@dataclass(frozen=True, slots=True)
class PidRecord:
    """What ``run/AGENT.pid`` holds: enough to recognise the process later."""

    pid: int
    create_time: float
    started_at: float
    ready_at: float | None = None  # when it first reported ready (then silence = hung)
    restarts: int = 0  # times the keeper restarted this agent after a crash

    def to_json(self) -> str:
        return json.dumps({"pid": self.pid, "create_time": self.create_time,
                           "started_at": self.started_at, "ready_at": self.ready_at,
                           "restarts": self.restarts})


def pid_path(config: HiveConfig, agent: str) -> Path:
    return config.run_dir / f"{agent}.pid"


def log_path(config: HiveConfig, agent: str) -> Path:
    return config.logs_dir / f"{agent}.log"


def agent_command(hive: str, agent: str) -> list[str]:
    """The agent process, exactly as the runtime's contract names it."""
    return [sys.executable, "-m", "agent_runtime", "--hive", hive, "--agent", agent]


class CorruptPidFile(AgentError):
    """A PID file that cannot be read: the agent it named is found by discovery instead."""


def read_pid(config: HiveConfig, agent: str) -> PidRecord | None:
    path = pid_path(config, agent)
    try:
        raw = json.loads(path.read_text())
        ready = raw.get("ready_at")
        return PidRecord(int(raw["pid"]), float(raw["create_time"]), float(raw["started_at"]),
                         None if ready is None else float(ready), int(raw.get("restarts", 0)))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CorruptPidFile(f"{path} is corrupt ({exc})") from exc


def read_pid_or_none(config: HiveConfig, agent: str) -> tuple[PidRecord | None, str]:
    """The record, or None and why: one corrupt file must not block every agent's status
    and stop (the process it named, if any, is found by hive_cli.discovery)."""
    try:
        return read_pid(config, agent), ""
    except CorruptPidFile as exc:
        return None, str(exc)


def set_aside(config: HiveConfig, agent: str) -> Path | None:
    """Move a corrupt PID file to ``AGENT.pid.corrupt`` (kept for a post-mortem)."""
    path = pid_path(config, agent)
    aside = path.with_name(path.name + ".corrupt")
    try:
        path.replace(aside)
    except FileNotFoundError:
        return None
    return aside


def adopt(config: HiveConfig, agent: str, proc: psutil.Process) -> PidRecord:
    """Record a live process of ``agent`` that no PID file named (found by discovery)."""
    created = proc.create_time()
    record = PidRecord(proc.pid, created, created)
    write_pid(config, agent, record)
    return record


def write_pid(config: HiveConfig, agent: str, record: PidRecord) -> None:
    """Atomically (temp file + rename), mode 0600."""
    path = pid_path(config, agent)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_private(path, record.to_json(), fsync=False)


def clear_pid(config: HiveConfig, agent: str) -> None:
    pid_path(config, agent).unlink(missing_ok=True)


def is_gone(proc: psutil.Process) -> bool:
    """True once the process has exited (a zombie has exited too; reap it if it is ours)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(proc.pid, os.WNOHANG)
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def live_process(record: PidRecord | None) -> psutil.Process | None:
    """The running process the record describes, or None (gone, zombie, or PID reused)."""
    if record is None:
        return None
    try:
        proc = psutil.Process(record.pid)
        same = abs(proc.create_time() - record.create_time) <= CREATE_TIME_TOLERANCE_S
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    if not same or is_gone(proc):
        return None
    return proc


def rss_mb(proc: psutil.Process) -> float | None:
    try:
        return round(proc.memory_info().rss / (1024 * 1024), 1)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _open_log(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)


def stopping_path(config: HiveConfig, agent: str) -> Path:
    """Present while ``stop`` takes the agent down: the keeper must not restart it."""
    return config.run_dir / f"{agent}.stopping"


def spawn(
    config: HiveConfig,
    agent: str,
    command: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    restarts: int = 0,
) -> PidRecord:
    """Start one agent process and record it; ``command`` defaults to the agent runtime."""
    config.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    cmd = list(command) if command is not None else agent_command(config.name, agent)
    child_env = dict(os.environ if env is None else env)
    child_env["AMPLIHACK_HOME"] = str(amplihack_home())
    child_env["PYTHONUNBUFFERED"] = "1"
    child_env["AMPLIHACK_LOG_FILE"] = str(log_path(config, agent))  # the agent rotates it
    # Ctrl-C waits until the process is recorded: a spawned agent without a PID file is one
    # that status calls stopped and stop cannot reach.
    with _sigint_deferred():
        log_fd = _open_log(log_path(config, agent))
        try:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            os.write(log_fd, f"--- amplihack-hive: starting {agent} at {stamp}\n".encode())
            child = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log_fd, stderr=subprocess.STDOUT,
                start_new_session=True, env=child_env, close_fds=True,
            )
        finally:
            os.close(log_fd)
        try:
            created = psutil.Process(child.pid).create_time()
        except psutil.NoSuchProcess as exc:  # pragma: no cover - reaped by someone at once
            raise AgentError(f"agent {agent} exited at once; see "
                             f"{log_path(config, agent)}") from exc
        record = PidRecord(child.pid, created, time.time(), restarts=restarts)
        write_pid(config, agent, record)
        return record


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold a Ctrl-C until the block is done, then deliver it. A handler, not a signal
    mask: a mask covers one thread, and a SIGINT that lands on any other thread (a library
    may start one) still interrupts the main one. Off the main thread (where no handler can
    be set, and where Python never runs one) there is nothing to hold."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if held and callable(previous):
            previous(signal.SIGINT, None)
        elif held and previous == signal.SIG_DFL:
            raise KeyboardInterrupt


@dataclass(frozen=True, slots=True)
class StopResult:
    agent: str
    # "stopped" | "killed" | "not running" | "crashed" | "stuck"; with " (unrecorded)" for a
    # process of the agent that no PID record named (found by hive_cli.discovery)
    outcome: str
    pid: int | None

    @property
    def stuck(self) -> bool:
        """Still alive after SIGKILL."""
        return self.outcome.startswith("stuck")


Key = tuple[str, int]  # (agent, pid): an agent may have a recorded and unrecorded process


def _wait_gone(procs: Mapping[Key, psutil.Process], deadline: float) -> set[Key]:
    """Keys whose process is still alive at ``deadline``."""
    alive = set(procs)
    while alive:
        alive = {a for a in alive if not is_gone(procs[a])}
        if not alive or time.monotonic() >= deadline:
            break
        time.sleep(POLL_S)
    return alive


def stop(config: HiveConfig, agents: Sequence[str], timeout: float,
         strays: Mapping[str, Sequence[psutil.Process]] | None = None) -> list[StopResult]:
    """SIGTERM every live agent, wait ``timeout`` s, SIGKILL the rest, verify all are gone.

    ``strays``: processes of these agents that no PID record names; they are stopped the
    same way and reported "(unrecorded)". Stale PID files (process gone or PID reused) are
    removed and reported as ``crashed``; a corrupt one is set aside as ``AGENT.pid.corrupt``.
    """
    results: dict[Key, StopResult] = {}
    live: dict[Key, psutil.Process] = {}
    recorded: set[Key] = set()
    for agent in agents:
        record, corrupt = read_pid_or_none(config, agent)
        if corrupt:
            set_aside(config, agent)
        proc = live_process(record)
        if proc is not None:
            live[(agent, proc.pid)] = proc
            recorded.add((agent, proc.pid))
        elif record is not None:
            clear_pid(config, agent)
            results[(agent, record.pid)] = StopResult(agent, "crashed", record.pid)
        for stray in (strays or {}).get(agent, ()):
            live.setdefault((agent, stray.pid), stray)
        if not any(key[0] == agent for key in (*results, *live)):
            results[(agent, 0)] = StopResult(agent, "not running", None)
    results.update(_terminate(config, live, recorded, timeout))
    order = {a: i for i, a in enumerate(agents)}
    return sorted(results.values(), key=lambda r: (order.get(r.agent, len(order)), r.pid or 0))


def stop_strays(config: HiveConfig, strays: Mapping[str, Sequence[psutil.Process]],
                timeout: float) -> list[StopResult]:
    """Stop only the given unrecorded processes (an agent's recorded process is kept)."""
    live = {(agent, p.pid): p for agent, procs in strays.items() for p in procs}
    return list(_terminate(config, live, set(), timeout).values())


def _terminate(config: HiveConfig, live: Mapping[Key, psutil.Process], recorded: set[Key],
               timeout: float) -> dict[Key, StopResult]:
    """SIGTERM, wait, SIGKILL, wait; clear the PID records of the ``recorded`` that exited."""
    results: dict[Key, StopResult] = {}
    stopping = {agent for agent, _pid in live}
    for agent in stopping:  # an exit we cause is not a crash for the keeper to repair
        stopping_path(config, agent).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        stopping_path(config, agent).touch(mode=0o600)
    for proc in live.values():
        _signal(proc, signal.SIGTERM)
    survivors = _wait_gone(live, time.monotonic() + timeout)
    for key in survivors:
        _signal(live[key], signal.SIGKILL)
    stuck = _wait_gone({k: live[k] for k in survivors}, time.monotonic() + KILL_WAIT_S)
    for key, proc in live.items():
        agent = key[0]
        note = "" if key in recorded else " (unrecorded)"
        if key in stuck:
            results[key] = StopResult(agent, "stuck" + note, proc.pid)
            continue
        if key in recorded:
            clear_pid(config, agent)
        results[key] = StopResult(agent, ("killed" if key in survivors else "stopped") + note,
                                  proc.pid)
    for agent in stopping:
        stopping_path(config, agent).unlink(missing_ok=True)
    return results


def _signal(proc: psutil.Process, sig: signal.Signals) -> None:
    """psutil re-checks the process identity before sending, so a reused PID is safe."""
    with contextlib.suppress(psutil.NoSuchProcess):
        proc.send_signal(sig)
