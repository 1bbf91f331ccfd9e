"""The life cycle of a hive's agents: what state each is in, start them, stop them.

States (one rule each, checked in this order)::

    stopped   no PID file: never started, or stopped cleanly by ``stop``
    crashed   a PID file, but its process is gone (or the PID now belongs to another
              program)
    unresponsive  the process is alive but has not answered a status request for longer
              than STARTUP_GRACE_S since it was started (hung, or busy past the deadline)
    running   the process is alive (PID and start time match) and answered ``status``
              with ``ready: true``
    starting  the process is alive, started less than STARTUP_GRACE_S ago, and has not
              answered (yet) or answered ``ready: false``

``start`` leaves running and starting agents alone, restarts crashed and unresponsive
ones, and waits until each agent *itself* reports ready, with one deadline for all. Before
it stops an agent that is alive but silent, it asks once more with a long deadline
(HUNG_CONFIRM_S), so an agent that is merely busy (a large learn in flight) is never killed
by a second ``start``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from hive_cli import supervisor
from hive_cli.agent_link import AgentLink, describe
from hive_cli.errors import Interrupted
from hive_core.errors import AgentError, HiveError
from hive_core.hive_config import HiveConfig, did_you_mean

STARTUP_GRACE_S = 60.0
STATUS_TIMEOUT_S = 2.0
HUNG_CONFIRM_S = 10.0
READY_POLL_S = 0.1

Progress = Callable[[int], None]


@dataclass(slots=True)
class AgentState:
    name: str
    status: str  # running | starting | stopped | crashed | unresponsive
    pid: int | None = None
    uptime_s: float | None = None
    facts: int | None = None
    rss_mb: float | None = None
    detail: str = ""
    reply: dict[str, Any] = field(default_factory=dict)
    alive: bool = False  # the process exists (running, starting, unresponsive)
    restarts: int = 0  # restarts by the keeper after crashes (start --restart on-failure)
    ring_state: str = ""  # normal | joining | leaving | down | absent (the ring view's word)

    def to_json(self) -> dict[str, Any]:
        ring = self.reply.get("ring") or {}
        # "agent" as in every other command's JSON; "name" kept for existing readers.
        return {"agent": self.name, "name": self.name, "status": self.status, "pid": self.pid,
                "restarts": self.restarts,
                "facts": self.facts, "rss_mb": self.rss_mb,
                "uptime_s": None if self.uptime_s is None else round(self.uptime_s, 1),
                "detail": self.detail, "ring_state": self.ring_state,
                "epoch": ring.get("epoch"), "under_replicated": ring.get("under_replicated")}


def select_agents(config: HiveConfig, wanted: Sequence[str] | None) -> list[str]:
    """The agents a command acts on: all (config order) or the named ones, each checked."""
    if not wanted:
        if not config.agents:
            raise AgentError(f"hive {config.name!r} has no agents (add one with add-agent)")
        return config.agent_names()
    for name in wanted:
        if name not in config.agent_names():
            raise AgentError(f"hive {config.name!r} has no agent {name!r}"
                             + did_you_mean(name, config.agent_names()))
    return list(dict.fromkeys(wanted))


def probe(config: HiveConfig, link: AgentLink | None, agents: Sequence[str],
          timeout: float = STATUS_TIMEOUT_S) -> list[AgentState]:
    """The state of each agent, asking live ones for their status (one concurrent round)."""
    now = time.time()
    states: dict[str, AgentState] = {}
    live: dict[str, Any] = {}
    for name in agents:
        record = supervisor.read_pid(config, name)
        proc = supervisor.live_process(record)
        if record is None:
            states[name] = AgentState(name, "stopped")
        elif proc is None:
            states[name] = AgentState(name, "crashed", pid=record.pid,
                                      detail=f"process {record.pid} is gone",
                                      restarts=record.restarts)
        else:
            live[name] = (record, proc)
            states[name] = AgentState(name, "starting", pid=record.pid,
                                      uptime_s=now - proc.create_time(),
                                      rss_mb=supervisor.rss_mb(proc), restarts=record.restarts)
    replies = link.status(list(live), timeout) if link is not None and live else {}
    for name, (record, _proc) in live.items():
        state = states[name]
        reply = replies.get(name)
        if isinstance(reply, dict) and reply.get("ready") is True:
            state.status = "running"
            state.facts = int(reply["facts"])
            state.reply = reply
        elif record.ready_at is not None or now - record.started_at > STARTUP_GRACE_S:
            # Alive, not answering: hung (or busy past the deadline), not crashed. Once an
            # agent has been ready, silence is no longer "starting".
            state.status = "unresponsive"
            state.alive = True
            why = describe(reply) if isinstance(reply, HiveError) else "not ready"
            state.detail = (f"process alive but no ready status "
                            f"{'since it was ready' if record.ready_at else 'after start'}: "
                            f"{why}")
        elif isinstance(reply, HiveError):
            state.detail = describe(reply)
    return [states[a] for a in agents]


@dataclass(slots=True)
class StartResult:
    agent: str
    outcome: str  # started | restarted | already running | failed
    pid: int | None = None
    ready_s: float | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome != "failed"

    def to_json(self) -> dict[str, Any]:
        return {"agent": self.agent, "outcome": self.outcome, "pid": self.pid,
                "ready_s": None if self.ready_s is None else round(self.ready_s, 2),
                "detail": self.detail}


def start(
    config: HiveConfig,
    link: AgentLink,
    agents: Sequence[str],
    timeout: float,
    progress: Progress = lambda n: None,
    command: Callable[[str], list[str]] | None = None,
) -> list[StartResult]:
    """Spawn the agents that are not up and wait (<= ``timeout`` s) until each is ready.

    Agents that do not report ready by the deadline, or exit while starting, are stopped
    (their PID files removed) and reported ``failed`` with the reason and their log file.
    """
    results: dict[str, StartResult] = {}
    try:
        return _start(config, link, agents, timeout, progress, command, results)
    except KeyboardInterrupt:
        spawned = [r for r in results.values() if r.outcome in ("started", "restarted")]
        ready = sum(r.ready_s is not None for r in spawned)
        raise Interrupted(
            f"interrupted: {len(spawned)} of {len(agents)} agent(s) spawned ({ready} ready); "
            "every spawned agent is recorded and keeps running -- `status` shows them, "
            f"`stop --hive {config.name}` stops them") from None


def _start(config: HiveConfig, link: AgentLink, agents: Sequence[str], timeout: float,
           progress: Progress, command: Callable[[str], list[str]] | None,
           results: dict[str, StartResult]) -> list[StartResult]:
    t0 = time.monotonic()
    deadline = t0 + timeout
    pending: dict[str, StartResult] = {}
    for state in probe(config, link, agents):
        if state.status == "unresponsive":
            state = probe(config, link, [state.name], timeout=HUNG_CONFIRM_S)[0]
        if state.status == "running":
            results[state.name] = StartResult(state.name, "already running", state.pid)
            progress(1)
            continue
        if state.status == "starting":
            pending[state.name] = results[state.name] = StartResult(
                state.name, "already starting", state.pid)
            continue
        if state.status in ("crashed", "unresponsive"):
            supervisor.stop(config, [state.name], timeout=supervisor.KILL_WAIT_S)
        cmd = command(state.name) if command is not None else None
        record = supervisor.spawn(config, state.name, cmd)
        outcome = "restarted" if state.status in ("crashed", "unresponsive") else "started"
        pending[state.name] = results[state.name] = StartResult(state.name, outcome, record.pid)
    while pending:
        _poll_ready(config, link, pending, deadline, t0, progress)
        if pending and time.monotonic() >= deadline:
            for res in pending.values():
                res.detail = (f"not ready within {timeout:g}s; see "
                              f"{supervisor.log_path(config, res.agent)}")
                res.outcome = "failed"
            supervisor.stop(config, list(pending), timeout=supervisor.KILL_WAIT_S)
            break
        if pending:
            time.sleep(READY_POLL_S)
    return [results[a] for a in agents]


def _poll_ready(config: HiveConfig, link: AgentLink, pending: dict[str, StartResult],
                deadline: float, t0: float, progress: Progress) -> None:
    """One round: drop agents that exited, ask the others for status, settle the ready."""
    for name in list(pending):
        if supervisor.live_process(supervisor.read_pid(config, name)) is None:
            res = pending.pop(name)
            res.outcome = "failed"
            res.detail = f"exited while starting; see {supervisor.log_path(config, name)}"
            supervisor.clear_pid(config, name)
            progress(1)
    if not pending:
        return
    wait = max(0.05, min(STATUS_TIMEOUT_S, deadline - time.monotonic()))
    for name, reply in link.status(list(pending), wait).items():
        if isinstance(reply, dict) and reply.get("ready") is True:
            res = pending.pop(name)
            res.ready_s = time.monotonic() - t0
            record = supervisor.read_pid(config, name)
            if record is not None and record.pid == res.pid:
                supervisor.write_pid(config, name, replace(record, ready_at=time.time()))
            progress(1)

