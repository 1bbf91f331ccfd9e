"""The CLI's side of a living ring: ask an agent to leave, wait for moves, summarise.

The agents do the moving (:mod:`agent_runtime.ring_keeper`); the CLI only changes the view
(:mod:`hive_core.membership.view`) through the hive's view store and watches it settle. A
wait has a deadline; one that runs out leaves the move under way (``status`` shows it) and
says so in one line, never blocking reads, which keep using the old owners meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Any

from hive_cli.errors import CliFailure
from hive_cli.lifecycle import AgentState
from hive_cli.operations import live_agents
from hive_core.errors import ConfigError
from hive_core.hive_config import HiveConfig
from hive_core.membership.store import ViewStore, open_view_store, update
from hive_core.membership.view import RingView, leave

POLL_S = 0.2


@contextmanager
def view_store(config: HiveConfig):
    store = open_view_store(config)
    try:
        yield store
    finally:
        store.close()


def request_leave(store: ViewStore, config: HiveConfig, agent: str) -> RingView | None:
    """Take ``agent`` out of the target ring (ConfigError below the replication factor).

    Returns the view in force afterwards; None when the hive has no view yet (never
    started: the config alone says who is in it).
    """
    rf = config.replication_factor
    return update(store, lambda v: leave(v, agent, rf) if v is not None else None)


def wait_out(store: ViewStore, agents: Sequence[str], timeout: float,
             tick: Callable[[RingView], None] = lambda v: None) -> RingView:
    """Wait until no agent of ``agents`` is in the current ring (their ranges moved)."""
    deadline = time.monotonic() + timeout
    while True:
        view = store.load()
        if view is None:
            raise CliFailure("the hive's ring view disappeared while waiting")
        tick(view)
        if not any(a in view.current or a in view.target for a in agents):
            return view
        if time.monotonic() >= deadline:
            raise CliFailure(
                f"hand-off of {', '.join(agents)} not finished after {timeout:g}s; the agents "
                "keep serving their ranges until it is (watch it with status; waiting on: "
                f"{_waiting(view)})")
        time.sleep(POLL_S)


def wait_settled(store: ViewStore, timeout: float) -> RingView:
    """Wait until the view is settled (no member joining, leaving or being restored)."""
    deadline = time.monotonic() + timeout
    while True:
        view = store.load()
        if view is not None and view.settled:
            return view
        if time.monotonic() >= deadline:
            raise CliFailure(f"the ring did not settle within {timeout:g}s; the move goes on "
                             f"in the background (waiting on: {_waiting(view)})")
        time.sleep(POLL_S)


def _waiting(view: RingView | None) -> str:
    if view is None:
        return "no ring view yet"
    joining = sorted(set(view.target) - set(view.current))
    out = sorted(set(view.current) - set(view.target))
    unsynced = sorted(a for a in view.target if a in joining and not view.is_synced(a))
    parts = []
    if joining:
        parts.append(f"joining {', '.join(joining)}")
    if out:
        parts.append(f"moving out {', '.join(out)}")
    if unsynced:
        parts.append(f"not yet synced {', '.join(unsynced)}")
    return "; ".join(parts) or "nothing"


def ring_summary(view: RingView | None, states: Sequence[AgentState]) -> dict[str, Any]:
    """The hive's ring for ``status``: epoch, settled, and under-replicated facts.

    *settled* means the view has no move under way **and** every running agent reports
    that epoch (so none still routes by an older one). ``under_replicated`` adds up what the
    running agents count (each fact counted once, by its first live owner); ``None`` when no
    agent runs, since nobody could count.
    """
    running = [s for s in states if s.status == "running"]
    epochs = {int((s.reply.get("ring") or {}).get("epoch") or 0) for s in running}
    counts = [(s.reply.get("ring") or {}).get("under_replicated") for s in running]
    under = sum(int(c) for c in counts if c is not None) if running else None
    if view is None:
        return {"epoch": 0, "settled": False, "under_replicated": under, "members": []}
    return {"epoch": view.epoch,
            "settled": view.settled and epochs <= {view.epoch},
            "under_replicated": under,
            "waiting_on": None if view.settled else _waiting(view),
            "members": list(view.members)}


def ring_state(view: RingView | None, agent: str) -> str:
    return view.state(agent) if view is not None else "absent"


def decommission(config: HiveConfig, agents: list[str], timeout: float) -> str:
    """Take ``agents`` out of the ring; wait for their ranges to move if any agent runs.

    Returns "moved", "pending" (nothing runs: the move happens at the next start) or
    "none" (the hive has no ring view yet, or they are not in it).
    """
    with view_store(config) as store:
        view = store.load()
        if view is None or not any(a in view.members for a in agents):
            return "none"
        for agent in agents:
            try:
                request_leave(store, config, agent)
            except ConfigError as exc:
                raise CliFailure(str(exc)) from exc
        if not live_agents(config):
            return "pending"
        wait_out(store, agents, timeout)
        return "moved"
