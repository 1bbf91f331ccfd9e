"""The ``status`` command: each agent's state, once or redrawn (``--watch``)."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from hive_cli import lifecycle, operations, ring_ops
from hive_cli.errors import EXIT_NOT_RUNNING, UsageProblem
from hive_cli.federate_cmd import position
from hive_cli.options import Hive, Json
from hive_cli.render import Renderer
from hive_core.hive_config import HiveConfig


def status_command(
    hive: Hive,
    watch: Annotated[bool, typer.Option(
        "--watch", "-w", help="Redraw every --interval seconds until Ctrl-C.")] = False,
    interval: Annotated[float, typer.Option(min=0.2, help="Seconds between redraws.")] = 2.0,
    json_out: Json = False,
) -> None:
    """Each agent's state, PID, uptime, facts in its shard and RSS (exit 3 if not all run).

    Also where the hive is in a federation tree: its parent and children (see `federate`).

    \b
    Examples:
      amplihack-hive status --hive ops
      amplihack-hive status --hive ops --watch --interval 1
    """
    if watch and json_out:
        raise UsageProblem("--watch redraws a table; use --json without it (or poll)")
    config = HiveConfig.load(hive)
    out = Renderer(json_out)
    with operations.connected(config) as link, ring_ops.view_store(config) as views:
        if watch:
            return _watch(config, link, views, out, interval)
        states, ring = _status_once(config, link, views)
    out.status(hive, config.transport, states, ring, position(hive))
    if any(s.status != "running" for s in states):
        raise typer.Exit(EXIT_NOT_RUNNING)


def _status_once(config: HiveConfig, link, views) -> tuple[list, dict]:
    view = views.load()
    # Agents still owning ranges but no longer configured (a removal pending) too.
    owning = (*view.current, *view.target) if view is not None else ()
    names = config.agent_names() + sorted({a for a in owning if a not in config.agent_names()})
    states = lifecycle.probe(config, link, names)
    for s in states:
        s.ring_state = ring_ops.ring_state(view, s.name)
    return states, ring_ops.ring_summary(view, states)


def _watch(config: HiveConfig, link, views, out: Renderer, interval: float) -> None:
    """``status --watch``: the same probe every ``interval`` seconds; Ctrl-C ends it (0)."""
    try:
        with out.live() as show:
            while True:
                states, ring = _status_once(config, link, views)
                show(out.status_view(config.name, config.transport, states, ring,
                                     position(config.name)))
                time.sleep(interval)
    except KeyboardInterrupt:
        return
