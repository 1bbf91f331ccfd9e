"""The life cycle of a hive's agents: what state each is in, start them, stop them.

States (one rule each, checked in this order)::

    stopped   no PID file and no process of the agent: never started, or stopped by ``stop``
    orphaned  no live recorded process, but a process of the agent runs (found by
              hive_cli.discovery in the process table or behind its socket): ``stop``
              stops it, ``start`` adopts it when it answers as the agent
    crashed   a PID file, but its process is gone (or the PID now belongs to another
              program)
    unresponsive  the process is alive but has not answered a status request for longer
              than STARTUP_GRACE_S since it was started (hung, or busy past the deadline)
    running   the process is alive (PID and start time match) and answered ``status``
              with ``ready: true`` and its own PID (not another process on its socket)
    starting  the process is alive, started less than STARTUP_GRACE_S ago, and has not
              answered (yet) or answered ``ready: false``

``start`` leaves running and starting agents alone, restarts crashed and unresponsive
ones, and waits until each agent *itself* reports ready, with one deadline for all. Before
it stops an agent that is alive but silent, it asks once more with a long deadline
(HUNG_CONFIRM_S), so an agent that is merely busy (a large learn in flight) is never killed
by a second ``start``. Commands that change processes hold the hive's lock
(hive_cli.hive_lock), so two of them never act on one hive at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import psutil

from hive_cli import discovery, supervisor
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
    strays: list[int] = field(default_factory=list)  # its processes no PID record names
    answered_by: int | None = None  # the PID its status reply came from

    def to_json(self) -> dict[str, Any]:
        ring = self.reply.get("ring") or {}
        # "agent" as in every other command's JSON; "name" kept for existing readers.
        return {"agent": self.name, "name": self.name, "status": self.status, "pid": self.pid,
                "restarts": self.restarts,
                "facts": self.facts, "rss_mb": self.rss_mb,
                "uptime_s": None if self.uptime_s is None else round(self.uptime_s, 1),
                "detail": self.detail, "ring_state": self.ring_state,
                "epoch": ring.get("epoch"), "under_replicated": ring.get("under_replicated"),
                # Messages it dropped unauthenticated, by reason (hive_core.auth).
                "auth_rejected": self.reply.get("auth_rejected"),
                # Its deliveries to other hives of a federation (agent_runtime.federation):
                # escalated, broadcast, received, outbox (waiting, per hive), last_error.
                "federation": self.reply.get("federation")}


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
          timeout: float = STATUS_TIMEOUT_S,
          found: Mapping[str, Sequence[psutil.Process]] | None = None) -> list[AgentState]:
    """The state of each agent, asking live ones for their status (one concurrent round).

    ``found``: the hive's processes by agent (default: hive_cli.discovery looks); one that no
    PID record names makes its agent "orphaned", or is listed as a stray beside a recorded
    one. A status reply counts only when its PID is the process we know as that agent.
    """
    now = time.time()
    if found is None:
        found = discovery.hive_processes(config.name, agents)
    states: dict[str, AgentState] = {}
    live: dict[str, int] = {}  # agent -> the PID whose status reply counts
    started: dict[str, float] = {}
    for name in agents:
        record, corrupt = supervisor.read_pid_or_none(config, name)
        proc = supervisor.live_process(record)
        strays = [p for p in found.get(name, ()) if proc is None or p.pid != proc.pid]
        state = states[name] = AgentState(name, "stopped", detail=corrupt,
                                          strays=[p.pid for p in strays])
        if proc is None and strays:
            stray = strays[0]
            gone = f"recorded process {record.pid} is gone; " if record else ""
            state.status, state.alive, state.pid = "orphaned", True, stray.pid
            state.uptime_s, state.rss_mb = now - stray.create_time(), supervisor.rss_mb(stray)
            state.detail = (f"{gone}pid {stray.pid} runs as {name} without a PID record; "
                            "`stop` stops it, `start` adopts it")
            live[name] = stray.pid
        elif proc is None and record is not None:
            state.status, state.pid, state.restarts = "crashed", record.pid, record.restarts
            state.detail = f"process {record.pid} is gone"
        elif proc is not None and record is not None:
            state.status, state.pid, state.restarts = "starting", record.pid, record.restarts
            state.uptime_s, state.rss_mb = now - proc.create_time(), supervisor.rss_mb(proc)
            live[name] = record.pid
            started[name] = record.started_at
            if record.ready_at is not None:
                started[name] = -1.0  # once ready, silence is no longer "starting"
    replies = link.status(list(live), timeout) if link is not None and live else {}
    for name, pid in live.items():
        state = states[name]
        reply = replies.get(name)
        if isinstance(reply, dict):
            state.answered_by = _int_or_none(reply.get("pid"))
        ready = isinstance(reply, dict) and reply.get("ready") is True
        if ready and state.answered_by == pid:
            if state.status != "orphaned":
                state.status = "running"
            state.facts = int(reply["facts"])
            state.reply = reply
        elif state.status == "orphaned":
            continue
        elif started[name] < 0 or now - started[name] > STARTUP_GRACE_S:
            state.status = "unresponsive"
            state.alive = True
            state.detail = f"process alive but no ready status " \
                f"{'since it was ready' if started[name] < 0 else 'after start'}: " \
                f"{_why(reply, pid)}"
        elif reply is not None:
            state.detail = _why(reply, pid)
        if state.strays and state.status != "orphaned":
            extra = ", ".join(str(p) for p in state.strays)
            state.detail = "; ".join(filter(None, [
                state.detail, f"also pid {extra} without a PID record (`stop` stops it)"]))
    return [states[a] for a in agents]


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _why(reply: Any, pid: int) -> str:
    """Why a status reply does not count as the agent's own "ready"."""
    if isinstance(reply, HiveError):
        return describe(reply)
    if isinstance(reply, dict) and _int_or_none(reply.get("pid")) not in (None, pid):
        return (f"its socket is answered by pid {reply.get('pid')}, not by pid {pid} "
                "(another process of this agent)")
    return "not ready"


def stop_agents(config: HiveConfig, agents: Sequence[str], timeout: float
                ) -> list[supervisor.StopResult]:
    """Stop ``agents``: their recorded processes and any process of theirs no record names."""
    found = discovery.hive_processes(config.name, agents)
    return supervisor.stop(config, agents, timeout, strays=found)


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
    found = discovery.hive_processes(config.name, agents)
    for state in probe(config, link, agents, found=found):
        if state.status == "unresponsive":
            state = probe(config, link, [state.name], timeout=HUNG_CONFIRM_S, found=found)[0]
        adopted = _settle_strays(config, state, found)
        if adopted is not None:
            pending[state.name] = results[state.name] = StartResult(
                state.name, "adopted", adopted.pid,
                detail="was running without a PID record; now recorded")
            continue
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


def _settle_strays(config: HiveConfig, state: AgentState,
                   found: Mapping[str, Sequence[psutil.Process]]) -> supervisor.PidRecord | None:
    """Leave one process per agent: an orphan that answers as the agent is adopted (returns
    its new record); every other unrecorded process of the agent is stopped."""
    if not state.strays:
        return None
    procs = {p.pid: p for p in found.get(state.name, ())}
    keep = state.answered_by if state.status == "orphaned" else None
    extra = {state.name: [procs[pid] for pid in state.strays if pid != keep and pid in procs]}
    if extra[state.name]:
        supervisor.stop_strays(config, extra, supervisor.KILL_WAIT_S)
    if keep is None or keep not in procs:
        if state.status == "orphaned":
            state.status = "stopped"
        return None
    return supervisor.adopt(config, state.name, procs[keep])


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
        # Ready counts only from the process we spawned (or adopted): another process that
        # answers on the agent's socket is not this start's agent.
        if isinstance(reply, dict) and reply.get("ready") is True \
                and _int_or_none(reply.get("pid")) == pending[name].pid:
            res = pending.pop(name)
            res.ready_s = time.monotonic() - t0
            record = supervisor.read_pid(config, name)
            if record is not None and record.pid == res.pid:
                supervisor.write_pid(config, name, replace(record, ready_at=time.time()))
            progress(1)

