"""The ``rotate-secret`` command: a new message key for a hive, while it keeps answering.

A rotation is the three steps of hive_core.secret_store (introduce, switch, retire). After
each step is written, every running agent must report the new generation in its status (it
re-reads the file on its next message) before the next step is written, and at least
:data:`~hive_core.secret_store.RELOAD_INTERVAL` passes, so other processes on this machine
(a ``learn`` running meanwhile) have re-read it too. An agent that is not running is skipped:
it reads the file when it starts. A step that times out stops the rotation with one line; the
file stays at that step and running the command again finishes it.
"""

from __future__ import annotations

import os
import time
from typing import Annotated, Any

import typer

from hive_cli.agent_link import AgentLink
from hive_cli.errors import CliFailure, UsageProblem
from hive_cli.options import Hive, Json
from hive_cli.render import Renderer
from hive_cli.transport_factory import open_transport
from hive_core import secret_store
from hive_core.auth import MessageAuth
from hive_core.errors import ConnectionLost
from hive_core.hive_config import HiveConfig
from hive_core.transports import registry

POLL_S = 0.2
STATUS_TIMEOUT_S = 2.0


def rotate_secret_command(
    hive: Hive,
    timeout: Annotated[float, typer.Option(
        "--timeout", min=1, help="Seconds each step waits for the running agents.")] = 30.0,
    json_out: Json = False,
) -> None:
    """Replace the hive's message secret; a running hive keeps answering throughout, and the
    old secret is refused once the command succeeds. The secret is never printed.

    \b
    Examples:
      amplihack-hive rotate-secret --hive ops
      amplihack-hive rotate-secret --hive ops --timeout 60 --json
    """
    config = HiveConfig.load(hive)
    if os.environ.get(secret_store.ENV_SECRET):
        raise UsageProblem(f"{secret_store.ENV_SECRET} is set, so this hive's key comes from "
                           "the environment: rotate it there (KEY,PREVIOUS while agents "
                           "restart), or unset it to rotate the secret file")
    out = Renderer(json_out)
    path = secret_store.secret_path(config.directory)
    if secret_store.ensure(config.directory):
        doc = {"hive": hive, "generation": 1, "steps": [], "created": True}
        return out.json(doc) if json_out else out.message(
            f"hive {hive} had no message secret; generated {path}")
    doc = _rotate(config, path, timeout)
    if json_out:
        return out.json(doc)
    skipped = f"; not running (they read it at start): {', '.join(doc['not_running'])}" \
        if doc["not_running"] else ""
    out.message(f"rotated the message secret of hive {hive} (generation "
                f"{doc['generation']}); {len(doc['updated'])} running agent(s) follow"
                f"{skipped}")


def _rotate(config: HiveConfig, path: Any, timeout: float) -> dict[str, Any]:
    keys = secret_store.FileKeys(path)
    auth = MessageAuth(keys, window=registry.spec(config.transport).replay_window)
    link = AgentLink(config.name, open_transport(config, auth))
    first = secret_store.read(path).step
    steps = secret_store.STEPS  # a rotation that stopped half-way is finished first
    todo = steps if first == "retire" else steps[steps.index(first) + 1:]
    updated: set[str] = set()
    not_running: set[str] = set()
    try:
        for step in todo:
            secret = secret_store.rotate_step(path)
            written = time.monotonic()
            keys.refresh()
            done, gone = _wait_for(link, config.agent_names(), secret.generation,
                                   time.monotonic() + timeout, step)
            updated |= done
            not_running |= gone
            time.sleep(max(0.0, written + secret_store.RELOAD_INTERVAL + 0.25
                           - time.monotonic()))
    finally:
        link.transport.close()
    return {"hive": config.name, "generation": secret.generation, "steps": list(todo),
            "resumed": first != "retire", "updated": sorted(updated - not_running),
            "not_running": sorted(not_running - updated)}


def _wait_for(link: AgentLink, agents: list[str], generation: int, deadline: float,
              step: str) -> tuple[set[str], set[str]]:
    """Until every running agent reports ``generation``: (agents that did, not running)."""
    pending, done, gone = set(agents), set(), set()
    why: dict[str, str] = {}
    while pending:
        for agent, reply in link.status(sorted(pending), STATUS_TIMEOUT_S).items():
            if isinstance(reply, ConnectionLost):
                pending.discard(agent)
                gone.add(agent)
                continue
            if not isinstance(reply, dict):
                why[agent] = str(reply)
                continue
            info = reply.get("auth") or {}
            if info.get("source") == "env":
                raise CliFailure(f"agent {agent} takes its key from {secret_store.ENV_SECRET}, "
                                 f"not {secret_store.SECRET_FILE}; rotate it there")
            if int(info.get("generation") or 0) >= generation:
                pending.discard(agent)
                done.add(agent)
            else:
                why[agent] = f"still at generation {info.get('generation')}"
        if pending and time.monotonic() >= deadline:
            detail = "; ".join(f"{a}: {why.get(a, 'no answer')}" for a in sorted(pending))
            raise CliFailure(f"rotation stopped at step {step!r}: {detail}; run rotate-secret "
                             "again to finish it")
        if pending:
            time.sleep(POLL_S)
    return done, gone
