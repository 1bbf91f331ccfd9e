"""What the commands do, minus argument parsing and printing (those live in app/render).

Each function takes a loaded :class:`~hive_core.hive_config.HiveConfig` (or a name), performs
one operation and returns plain data for the renderer, raising a :mod:`hive_cli.errors` or
:mod:`hive_core.errors` exception with a one-line message when it cannot.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hive_cli import discovery, learn_run, supervisor
from hive_cli.agent_link import AgentLink, describe
from hive_cli.errors import CliFailure
from hive_cli.lifecycle import AgentState, probe, select_agents
from hive_cli.transport_factory import open_transport
from hive_core import secret_store
from hive_core.errors import HiveError, MessageRejected, TransportError
from hive_core.failover import tries
from hive_core.federation_tree import Tree
from hive_core.hive_config import HiveConfig, hive_dir, hive_names
from hive_core.membership.store import FileViewStore, open_view_store
from hive_core.transports import registry

ASK_TRY_MIN = 5.0  # seconds an agent gets to answer before the next one is asked
LEARN_BATCH = learn_run.LEARN_BATCH
LEARN_PARALLEL = learn_run.LEARN_PARALLEL


@contextmanager
def connected(config: HiveConfig) -> Iterator[AgentLink]:
    transport = open_transport(config)
    try:
        yield AgentLink(config.name, transport)
    finally:
        transport.close()


def live_agents(config: HiveConfig) -> list[str]:
    """Agents with a live process: a recorded one (PID and start time match) or one that no
    record names (hive_cli.discovery); no messages sent."""
    found = discovery.hive_processes(config.name, config.agent_names())
    return [a for a in config.agent_names()
            if a in found
            or supervisor.live_process(supervisor.read_pid_or_none(config, a)[0]) is not None]


def require_stopped(config: HiveConfig, agents: Sequence[str], action: str) -> None:
    live = [a for a in agents if a in live_agents(config)]
    if live:
        raise CliFailure(f"cannot {action}: agent(s) {', '.join(live)} of hive {config.name!r} "
                         "are running; stop them first")


def running_states(config: HiveConfig, link: AgentLink, agents: Sequence[str]
                   ) -> list[AgentState]:
    return [s for s in probe(config, link, agents) if s.status == "running"]


# -- list / delete ---------------------------------------------------------------------------
def list_hives() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name in hive_names():
        try:
            cfg = HiveConfig.load(name)
        except HiveError as exc:
            rows.append({"name": name, "transport": None, "agents": None,
                         "running": None, "parent": None, "error": describe(exc)})
            continue
        rows.append({"name": cfg.name, "transport": cfg.transport, "agents": len(cfg.agents),
                     "running": len(live_agents(cfg)), "parent": cfg.parent, "error": None})
    return rows


def delete_hive(config: HiveConfig, purge_data: bool) -> dict[str, Any]:
    """Remove config, logs and run files; shard data too with ``purge_data``."""
    require_no_children(config.name)
    require_stopped(config, config.agent_names(), f"delete hive {config.name!r}")
    others = sorted(set(discovery.hive_processes(config.name)) - set(config.agent_names()))
    if others:  # e.g. an agent removed from the config while it ran, or the keeper
        raise CliFailure(f"cannot delete hive {config.name!r}: its process(es) "
                         f"{', '.join(others)} are running; `stop --hive {config.name}` "
                         "stops them")
    removed: list[str] = []
    if purge_data:
        removed.extend(registry.purge(config.with_env_overrides()))
        if not registry.spec(config.transport).state_in_broker:  # else purged above
            view = open_view_store(config)
            if isinstance(view, FileViewStore) and view.path.exists():
                removed.append(str(view.path))
            view.clear()
            view.close()
        for agent in config.agent_names():
            removed.extend(_remove_shard(config.shard_path(agent)))
        if config.storage_path is None:
            removed.extend(_remove_tree(config.data_dir))
    for path in (config.logs_dir, config.run_dir):
        removed.extend(_remove_tree(path))
    config.config_path.unlink()
    removed.append(str(config.config_path))
    secret = secret_store.secret_path(config.directory)  # a hive made again gets a new one
    if secret.exists():
        secret.unlink()
        removed.append(str(secret))
    folder = hive_dir(config.name)
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
    kept = None if purge_data else str(config.data_dir)
    return {"hive": config.name, "deleted": True, "purged_data": purge_data,
            "kept_data": kept, "removed": removed}


def require_no_children(hive: str) -> None:
    """A deleted parent would leave its groups naming a hive that is gone (their `parent`
    key is the link: hive_core.federation_tree), so they are detached first, by the user."""
    children = Tree.read().children(hive)
    if children:
        raise CliFailure(
            f"cannot delete hive {hive!r}: it is the parent of {', '.join(children)}; detach "
            f"them first (amplihack-hive federate --hive {children[0]} --detach)")


def _remove_tree(path: Path) -> list[str]:
    if path.is_dir():
        shutil.rmtree(path)
        return [str(path)]
    return []


def _remove_shard(path: Path) -> list[str]:
    """A shard is a Kuzu database file or folder plus its sidecar files (``.wal`` ...)."""
    out = _remove_tree(path)
    if path.is_file():
        path.unlink()
        out.append(str(path))
    for sidecar in path.parent.glob(path.name + ".*") if path.parent.is_dir() else ():
        if sidecar.is_file():
            sidecar.unlink()
            out.append(str(sidecar))
    return out


# -- learn / ask -----------------------------------------------------------------------------
def learn(
    link: AgentLink,
    per_agent: dict[str, list[Any]],
    timeout: float,
    advance: Callable[[int], None],
    batch: int = LEARN_BATCH,
    parallel: int = LEARN_PARALLEL,
) -> dict[str, Any]:
    """LEARN turns already dealt out per agent (``inputs.round_robin``), as ``learn`` of a
    file does (hive_cli.learn_run: batch ids, re-sends done once, failover)."""
    agents = list(per_agent)
    longest = max((len(t) for t in per_agent.values()), default=0)
    stream = (per_agent[a][i] for i in range(longest) for a in agents if i < len(per_agent[a]))
    total = sum(len(t) for t in per_agent.values())
    return learn_run.learn(link, stream, total, agents, timeout, advance, batch, parallel)


def _transient(result: Any) -> bool:
    return isinstance(result, TransportError) and not isinstance(result, MessageRejected)


def ask(link: AgentLink, agent: str, question: str, limit: int, timeout: float,
        federated: bool = False) -> dict[str, Any]:
    reply = link.ask(agent, question, limit, timeout, federated)
    keys = ("question", "agent", "answer", "sources", "facts", "shards_queried", "shards_failed",
            "partial")
    missing = [k for k in keys if k not in reply]
    if missing:
        raise CliFailure(f"agent {agent} sent an incomplete answer (missing {', '.join(missing)})")
    doc = {k: reply[k] for k in keys}
    doc["shards_rerouted"] = list(reply.get("shards_rerouted") or [])
    doc["shards_searched"] = list(reply.get("shards_searched") or [])
    doc["hives_asked"] = list(reply.get("hives_asked") or [])
    doc["hives_failed"] = list(reply.get("hives_failed") or [])
    # learned_from: who sent the LEARN that taught it (kept by the agent as provenance).
    doc["facts"] = [{k: f.get(k) for k in ("fact_id", "content", "source_agent", "learned_from",
                                           "score", "hive", "federated_from")}
                    for f in reply["facts"]]
    return doc


def ask_first(link: AgentLink, agents: Sequence[str], question: str, limit: int,
              timeout: float, federated: bool = False) -> dict[str, Any]:
    """Ask the first of ``agents`` (processes known alive) that answers, all within one
    ``timeout``: no status round first (a hung agent cost every ask its 2 s probe), and an
    agent that cannot be reached hands the question to the next one. An agent's own refusal
    (a bad question) is the answer and ends it."""
    deadline = time.monotonic() + timeout
    misses: list[str] = []
    for agent, wait in tries(agents, deadline, ASK_TRY_MIN):
        try:
            return ask(link, agent, question, limit, wait, federated)
        except TransportError as exc:
            if not _transient(exc):
                raise
            misses.append(f"{agent}: {describe(exc)}")
    raise CliFailure(f"no agent answered within {timeout:g}s ({'; '.join(misses) or 'none'})")


def require_live(config: HiveConfig, wanted: str | None) -> list[str]:
    """The selected agents whose process is alive; fails (before any message) if none is."""
    agents = select_agents(config, [wanted] if wanted else None)
    live = [a for a in agents if a in live_agents(config)]
    if not live:
        raise not_running(config, wanted)
    return live


def require_all_live(config: HiveConfig, action: str) -> None:
    """Fail unless every agent of the hive runs: a restore must reach every shard, or the
    one left out spreads its tombstones back (agent_runtime.forgetting.restore)."""
    live = set(live_agents(config))
    down = [a for a in config.agent_names() if a not in live]
    if down:
        raise CliFailure(f"{action} needs every agent of hive {config.name!r} running (a "
                         f"stopped one keeps its tombstones and would retract the facts "
                         f"again): {', '.join(down)} not running")


def not_running(config: HiveConfig, wanted: str | None) -> CliFailure:
    who = f"agent {wanted!r}" if wanted else f"hive {config.name!r}"
    return CliFailure(f"{who} is not running; start it with: amplihack-hive start "
                      f"--hive {config.name}")


def running_among(config: HiveConfig, link: AgentLink, agents: Sequence[str],
                  wanted: str | None) -> list[str]:
    """Of ``agents``, those that answer status as ready; fails if none does."""
    running = [s.name for s in running_states(config, link, agents)]
    if not running:
        raise not_running(config, wanted)
    return running


# -- logs ------------------------------------------------------------------------------------
