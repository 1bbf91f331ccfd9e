"""The ``logs`` command: agents' logs, tailed, merged by time, followed."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from hive_cli import lifecycle, supervisor
from hive_cli import logs as hive_logs
from hive_cli.errors import CliFailure
from hive_cli.options import AgentOpt, Hive
from hive_core.hive_config import HiveConfig


def logs_command(
    hive: Hive,
    agent: AgentOpt = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing.")] = False,
    lines: Annotated[int, typer.Option(min=0, help="Lines from the end.")] = 50,
    merge: Annotated[bool, typer.Option(
        "--merge", help="One stream of all agents' lines, in time order.")] = False,
    json_out: Annotated[bool, typer.Option(
        "--json", help="JSON lines: {agent, time, line}.")] = False,
) -> None:
    """Print agents' logs (logs/AGENT.log in the hive); --follow until Ctrl-C.

    \b
    Examples:
      amplihack-hive logs --hive ops --merge --lines 200
      amplihack-hive logs --hive ops --agent agent_2 --follow --json
    """
    config = HiveConfig.load(hive)
    names = lifecycle.select_agents(config, [agent] if agent else None)
    paths = {a: supervisor.log_path(config, a) for a in names}
    if agent and not paths[agent].exists():
        raise CliFailure(f"agent {agent} has no log yet ({paths[agent]})")
    prefix = len(names) > 1
    tails = {a: hive_logs.tail(p, lines) if p.exists() else [] for a, p in paths.items()}
    if merge:
        rows = hive_logs.merged(tails, lines)
    else:
        rows = [(a, t, line) for a, ls in tails.items() for t, line in hive_logs.stamped(ls)]
    for name, stamp, line in rows:
        sys.stdout.write(hive_logs.render(name, line, stamp or None, prefix, json_out))
    sys.stdout.flush()
    if follow:
        try:
            hive_logs.follow(paths, prefix, as_json=json_out)
        except KeyboardInterrupt:
            return
