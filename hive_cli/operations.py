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

from hive_cli import supervisor
from hive_cli.agent_link import AgentLink, describe
from hive_cli.errors import CliFailure, Interrupted
from hive_cli.lifecycle import AgentState, probe, select_agents
from hive_cli.transport_factory import open_transport
from hive_core.errors import HiveError, MessageRejected, TransportError
from hive_core.hive_config import HiveConfig, hive_dir, hive_names
from hive_core.membership.store import FileViewStore, open_view_store
from hive_core.transports import registry
from hive_core.transports.retry import Backoff, RetryState

ASK_TRY_MIN = 5.0  # seconds an agent gets to answer before the next one is asked
LEARN_BATCH = 50
LEARN_PARALLEL = 4
LEARN_RETRIES = 3  # per batch, for transport failures only (LEARN is idempotent)


@contextmanager
def connected(config: HiveConfig) -> Iterator[AgentLink]:
    transport = open_transport(config)
    try:
        yield AgentLink(config.name, transport)
    finally:
        transport.close()


def live_agents(config: HiveConfig) -> list[str]:
    """Agents whose process is alive (PID and start time match); no messages sent."""
    return [a for a in config.agent_names()
            if supervisor.live_process(supervisor.read_pid(config, a)) is not None]


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
                         "running": None, "error": describe(exc)})
            continue
        rows.append({"name": cfg.name, "transport": cfg.transport, "agents": len(cfg.agents),
                     "running": len(live_agents(cfg)), "error": None})
    return rows


def delete_hive(config: HiveConfig, purge_data: bool) -> dict[str, Any]:
    """Remove config, logs and run files; shard data too with ``purge_data``."""
    require_stopped(config, config.agent_names(), f"delete hive {config.name!r}")
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
    folder = hive_dir(config.name)
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
    kept = None if purge_data else str(config.data_dir)
    return {"hive": config.name, "deleted": True, "purged_data": purge_data,
            "kept_data": kept, "removed": removed}


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
    per_agent: dict[str, list[str]],
    timeout: float,
    advance: Callable[[int], None],
    batch: int = LEARN_BATCH,
    parallel: int = LEARN_PARALLEL,
) -> dict[str, Any]:
    """Send each agent its turns, ``batch`` per LEARN message, ``parallel`` agents at a time.

    Each learning agent fans its facts out to RF owners and to its terms' owners, so a
    hive where every agent learns at once on a small machine misses its store deadlines;
    ``parallel`` bounds that load. ``facts`` counts what the agents extracted;
    ``unique_facts`` counts distinct fact ids (one sentence learned twice is one fact).
    """
    t0 = time.monotonic()
    total = sum(len(t) for t in per_agent.values())
    facts: dict[str, int] = dict.fromkeys(per_agent, 0)
    failed: set[str] = set()
    fact_ids: set[str] = set()
    done = [0]  # turns whose batch an agent answered, as the rounds go
    try:
        _learn_rounds(link, per_agent, timeout, advance, batch, parallel, facts, fact_ids,
                      failed, done)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted: {done[0]:,} of {total:,} turns learned; re-running "
                          "the same learn is safe (a fact learned twice is one fact)") from None
    return {"hive": link.hive, "turns": total, "facts": sum(facts.values()),
            "unique_facts": len(fact_ids), "per_agent": facts, "failed_shards": sorted(failed),
            "seconds": round(time.monotonic() - t0, 3)}


def _learn_rounds(link: AgentLink, per_agent: dict[str, list[Any]], timeout: float,
                  advance: Callable[[int], None], batch: int, parallel: int,
                  facts: dict[str, int], fact_ids: set[str], failed: set[str],
                  done_box: list[int]) -> None:
    """The rounds of :func:`learn`; counts what is done in ``done_box`` as it goes."""
    total = sum(len(t) for t in per_agent.values())
    longest = max((len(t) for t in per_agent.values()), default=0)
    done = 0
    for offset in range(0, longest, batch):
        jobs = [(a, t[offset:offset + batch]) for a, t in per_agent.items()
                if t[offset:offset + batch]]
        for i in range(0, len(jobs), parallel):
            group = dict(jobs[i:i + parallel])
            for agent, result in _learn_with_retry(link, group, timeout).items():
                if isinstance(result, HiveError):
                    reason = describe(result)
                    reason = reason if reason.startswith(agent) else f"{agent}: {reason}"
                    raise CliFailure(f"learning stopped after {done} of {total} turns: "
                                     f"{reason}")
                facts[agent] += int(result["facts"])
                fact_ids.update(str(f) for f in result.get("fact_ids") or ())
                failed.update(str(s) for s in result.get("failed_shards") or ())
                done += len(group[agent])
                done_box[0] = done
                advance(len(group[agent]))


def _learn_with_retry(
    link: AgentLink, group: dict[str, list[str]], timeout: float
) -> dict[str, Any]:
    """LEARN a group; batches that met a transport failure (a broker restarting, an agent
    busy past the deadline) are sent again with backoff. Facts are content-addressed, so a
    batch that did arrive the first time is stored once however often it is sent. A batch the
    agent itself rejected is not retried: that error is the answer."""
    results: dict[str, Any] = link.learn(group, timeout)
    retry = RetryState(Backoff(base=0.2, cap=2.0))
    for _ in range(LEARN_RETRIES):
        again = {a: group[a] for a, r in results.items() if _transient(r)}
        if not again:
            break
        retry.failed()
        results.update(link.learn(again, timeout))
    return results


def _transient(result: Any) -> bool:
    return isinstance(result, TransportError) and not isinstance(result, MessageRejected)


def ask(link: AgentLink, agent: str, question: str, limit: int, timeout: float
        ) -> dict[str, Any]:
    reply = link.ask(agent, question, limit, timeout)
    keys = ("question", "agent", "answer", "sources", "facts", "shards_queried", "shards_failed",
            "partial")
    missing = [k for k in keys if k not in reply]
    if missing:
        raise CliFailure(f"agent {agent} sent an incomplete answer (missing {', '.join(missing)})")
    doc = {k: reply[k] for k in keys}
    doc["shards_rerouted"] = list(reply.get("shards_rerouted") or [])
    doc["shards_searched"] = list(reply.get("shards_searched") or [])
    doc["facts"] = [{k: f.get(k) for k in ("fact_id", "content", "source_agent", "score")}
                    for f in reply["facts"]]
    return doc


def ask_first(link: AgentLink, agents: Sequence[str], question: str, limit: int,
              timeout: float) -> dict[str, Any]:
    """Ask the first of ``agents`` (processes known alive) that answers, all within one
    ``timeout``: no status round first (a hung agent cost every ask its 2 s probe), and an
    agent that cannot be reached hands the question to the next one. An agent's own refusal
    (a bad question) is the answer and ends it."""
    deadline = time.monotonic() + timeout
    misses: list[str] = []
    for i, agent in enumerate(agents):
        left = deadline - time.monotonic()
        if left <= 0.05:
            break
        # A hung agent must not take all the time: unless it is the last one to try, it
        # gets half of what is left (at least ASK_TRY_MIN seconds).
        wait = left if i == len(agents) - 1 else min(left, max(ASK_TRY_MIN, left / 2))
        try:
            return ask(link, agent, question, limit, wait)
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
