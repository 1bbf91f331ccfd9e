"""The ``start``, ``stop`` and ``restart`` commands: agent processes, under the hive's lock.

Each holds the hive's lifecycle lock (hive_cli.hive_lock) from reading the config to the last
process it touches, so overlapping commands on one hive run one after the other. ``stop``
also reaches processes no PID record names (hive_cli.discovery), and works on a hive whose
config.yaml is gone: it finds the hive's processes by name and stops them.
"""

from __future__ import annotations

from typing import Annotated

import typer

from hive_cli import discovery, hive_lock, keeper, lifecycle, operations, ring_ops, supervisor
from hive_cli.errors import CliFailure, UsageProblem
from hive_cli.options import AgentsOpt, Hive, Json, agent_list
from hive_cli.render import Renderer
from hive_cli.supervisor import StopResult
from hive_cli.transport_factory import check_available
from hive_core.errors import HiveNotFound
from hive_core.hive_config import HiveConfig


def start_command(
    hive: Hive,
    target: Annotated[str, typer.Option(help="Where agents run: local | azure.")] = "local",
    agents: AgentsOpt = None,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait for ready.")] = 60.0,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="azure: only render the deployment parameters (offline).")] = False,
    agents_per_app: Annotated[int, typer.Option(
        min=1, help="azure: agents (containers) per Container App.")] = 5,
    image: Annotated[str, typer.Option(help="azure: the agents' container image.")] =
        "amplihack-hive:0.1.0",
    resource_group: Annotated[str | None, typer.Option(
        help="azure: resource group (default: amplihack-HIVE).")] = None,
    location: Annotated[str | None, typer.Option(help="azure: Azure region.")] = None,
    restart: Annotated[str, typer.Option(
        "--restart", help="no | on-failure: a keeper process restarts crashed agents.")] = "no",
    max_restarts: Annotated[int, typer.Option(
        min=1, max=1000, help="on-failure: crashes in a row before the keeper gives up.")] = 5,
    json_out: Json = False,
) -> int | None:
    """Start one process per agent and wait until each reports ready.

    --target azure renders <hive dir>/deploy/azure/parameters.json (no secrets) and runs
    deploy/azure/deploy.sh with it unless --dry-run (README: "A hive in Azure").

    \b
    Examples:
      amplihack-hive start --hive ops
      amplihack-hive start --hive ops --restart on-failure --max-restarts 5
      amplihack-hive start --hive ops --target azure --dry-run
    """
    if target == "azure":
        from hive_cli import azure_deploy

        if agents is not None:
            raise UsageProblem("--agents cannot be used with --target azure: the deployment "
                               "runs every agent of the hive")
        return azure_deploy.start(
            HiveConfig.load(hive), Renderer(json_out), dry_run=dry_run,
            agents_per_app=agents_per_app, image=image, resource_group=resource_group,
            location=location)
    if target != "local":
        raise UsageProblem(f"unknown --target {target!r}: choose local or azure")
    if dry_run:
        raise UsageProblem("--dry-run is for --target azure")
    if restart not in ("no", "on-failure"):
        raise UsageProblem(f"unknown --restart {restart!r}: choose no or on-failure")
    wanted = agent_list(agents)
    out = Renderer(json_out)
    with hive_lock.hold(hive, "start", on_wait=out.note):
        config = HiveConfig.load(hive)
        check_available(config)
        names = lifecycle.select_agents(config, wanted)
        with operations.connected(config) as link, \
                out.progress("agents ready", len(names)) as bar:
            results = lifecycle.start(config, link, names, timeout, progress=bar)
        if restart == "on-failure":
            pid = keeper.launch(config, config.agent_names(), max_restarts)
            out.note(f"keeper (pid {pid}) restarts crashed agents of hive {hive} "
                     f"(gives up after {max_restarts} crashes in a row)")
    if all(r.outcome == "already running" for r in results):
        # Like `docker compose up` and pm2: the wanted state holds, so this succeeds.
        if json_out:
            return out.started(hive, results)
        return out.message(f"hive {hive}: all {len(results)} agent(s) already running; "
                           "nothing to start")
    out.started(hive, results)
    failed = [r.agent for r in results if not r.ok]
    if failed:
        raise CliFailure(f"{len(failed)} agent(s) failed to start: {', '.join(failed)} "
                         f"(see {config.logs_dir})")
    return None


def stop_command(
    hive: Hive,
    agents: AgentsOpt = None,
    timeout: Annotated[float, typer.Option(min=0, help="Seconds before SIGKILL.")] = 10.0,
    decommission: Annotated[bool, typer.Option(
        help="Leave the ring for good first: their ranges move to the other agents.")] = False,
    handoff_timeout: Annotated[float, typer.Option(
        min=1, help="Seconds to wait for --decommission's hand-off.")] = 300.0,
    json_out: Json = False,
) -> None:
    """Stop agents: SIGTERM, wait, SIGKILL after --timeout, verify they are gone.

    A plain stop is a pause: the agents keep their place in the ring (after
    rereplicate_after seconds the others restore their replicas). --decommission moves their
    ranges to the other agents first. Processes of the hive that no PID record names are
    stopped too (shown as "unrecorded"), even when the hive's config.yaml is gone.

    \b
    Examples:
      amplihack-hive stop --hive ops
      amplihack-hive stop --hive ops --agents agent_3 --decommission
    """
    wanted = agent_list(agents)
    if decommission and not wanted:
        raise UsageProblem("--decommission needs --agents (the agents that leave the ring)")
    out = Renderer(json_out)
    with hive_lock.hold(hive, "stop", on_wait=out.note):
        try:
            config = HiveConfig.load(hive)
        except HiveNotFound:
            results = _stop_without_config(hive, wanted, timeout, out)
        else:
            names = lifecycle.select_agents(config, wanted)
            if decommission:
                ring_ops.decommission(config, names, handoff_timeout)
            if not wanted and keeper.stop(config):  # first, so it restarts none of them
                out.note(f"stopped the keeper of hive {hive}")
            results = lifecycle.stop_agents(config, names, timeout)
    if all(r.outcome == "not running" for r in results):
        if json_out:
            return out.stopped(hive, results)
        return out.message(f"hive {hive} is not running: nothing to stop")
    out.stopped(hive, results)
    stuck = [r.agent for r in results if r.stuck]
    if stuck:
        raise CliFailure(f"agent(s) {', '.join(stuck)} did not exit after SIGKILL")
    return None


def _stop_without_config(hive: str, wanted: list[str] | None, timeout: float,
                         out: Renderer) -> list[StopResult]:
    """The hive's config is gone, but its processes may not be: find them by name."""
    found = discovery.hive_processes(hive, wanted or ())
    if wanted:
        found = {a: procs for a, procs in found.items() if a in wanted or a == "keeper"}
    if not found:
        raise HiveNotFound(f"no hive named {hive!r} and no process of one is running")
    out.note(f"hive {hive} has no config.yaml; stopping the {sum(map(len, found.values()))} "
             "process(es) of it found running")
    stub = HiveConfig(name=hive)  # only its folders are used: run/ for PID records
    keepers = found.pop("keeper", [])
    if keepers:
        supervisor.stop_strays(stub, {"keeper": keepers}, timeout)
    return supervisor.stop(stub, sorted(found), timeout, strays=found)


def restart_command(
    hive: Hive,
    agents: AgentsOpt = None,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait for ready.")] = 60.0,
    stop_timeout: Annotated[float, typer.Option(
        min=0, help="Seconds before SIGKILL when stopping.")] = 10.0,
    json_out: Json = False,
) -> None:
    """Stop agents (all, or --agents) and start them again; a stopped agent is started.

    They keep their place in the ring (as a plain stop does).

    \b
    Example:
      amplihack-hive restart --hive ops --agents agent_2
    """
    out = Renderer(json_out)
    with hive_lock.hold(hive, "restart", on_wait=out.note):
        config = HiveConfig.load(hive)
        check_available(config)
        names = lifecycle.select_agents(config, agent_list(agents))
        stopped = lifecycle.stop_agents(config, names, stop_timeout)
        stuck = [r.agent for r in stopped if r.stuck]
        if stuck:
            raise CliFailure(f"agent(s) {', '.join(stuck)} did not exit after SIGKILL; "
                             "nothing was started")
        with operations.connected(config) as link, \
                out.progress("agents ready", len(names)) as bar:
            results = lifecycle.start(config, link, names, timeout, progress=bar)
    out.started(hive, results)
    failed = [r.agent for r in results if not r.ok]
    if failed:
        raise CliFailure(f"{len(failed)} agent(s) failed to start again: {', '.join(failed)} "
                         f"(see {config.logs_dir})")
