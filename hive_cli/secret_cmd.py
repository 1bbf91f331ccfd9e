"""The ``rotate-secret`` command: a new message key for a hive, while it keeps answering.

A rotation is the three steps of hive_core.secret_store (introduce, switch, retire). After
each step is written, every running agent must report the new generation in its status (it
re-reads the file on its next message) before the next step is written, and at least
:data:`~hive_core.secret_store.RELOAD_INTERVAL` passes, so other processes on this machine
(a ``learn`` running meanwhile) have re-read it too. An agent that is not running is skipped:
it reads the file when it starts. A step that times out stops the rotation with one line; the
file stays at that step and running the command again finishes it. Before the first step is
written, every running agent must answer under the file's keys and take them from the file:
agents keyed from ``AMPLIHACK_HIVE_SECRET`` are rotated with ``--env`` instead
(hive_cli.secret_env), one step per run.
"""

from __future__ import annotations

import os
import time
from typing import Annotated, Any

import typer

from hive_cli import secret_env
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

POLL_S = secret_env.POLL_S
STATUS_TIMEOUT_S = secret_env.STATUS_TIMEOUT_S


def rotate_secret_command(
    hive: Hive,
    timeout: Annotated[float, typer.Option(
        "--timeout", min=1, help="Seconds each step waits for the running agents.")] = 30.0,
    env: Annotated[bool, typer.Option(
        "--env", help="The agents take their key from AMPLIHACK_HIVE_SECRET: take one step "
        "per run, to be followed by a restart of the agents with the new value.")] = False,
    env_file: Annotated[str | None, typer.Option(
        "--env-file", metavar="PATH", help="With --env: write AMPLIHACK_HIVE_SECRET=VALUE "
        "to PATH (mode 0600); '-' prints it, to a terminal only.")] = None,
    json_out: Json = False,
) -> None:
    """Replace the hive's message secret; a running hive keeps answering throughout, and the
    old secret is refused once the command succeeds. The secret is never printed (unless
    asked with --env-file - on a terminal).

    \b
    Examples:
      amplihack-hive rotate-secret --hive ops
      amplihack-hive rotate-secret --hive ops --timeout 60 --json
      amplihack-hive rotate-secret --hive ops --env --env-file ~/.ops-secret.env
    """
    config = HiveConfig.load(hive)
    if env_file is not None and not env:
        raise UsageProblem("--env-file goes with --env (agents keyed from "
                           f"{secret_store.ENV_SECRET})")
    if os.environ.get(secret_store.ENV_SECRET):
        raise UsageProblem(f"{secret_store.ENV_SECRET} is set here, so this shell's commands "
                           f"(and deploy.sh) take the key from it, not from "
                           f"{secret_store.SECRET_FILE}: unset it and run rotate-secret again "
                           "(add --env if the agents take their key from it too)")
    out = Renderer(json_out)
    path = secret_store.secret_path(config.directory)
    if env:
        secret_env.check_env_file(env_file, json_out)
        doc = secret_env.env_step(config, path, timeout, env_file)
        return out.json(doc) if json_out else out.message(
            secret_env.env_step_message(doc, path))
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


def _preflight(link: AgentLink, config: HiveConfig, timeout: float) -> None:
    """Before any step is written: every running agent answers under the file's keys and
    follows the file. An agent keyed from the environment cannot re-read it, and one keyed
    with another secret cannot be reached; writing a step would leave the rotation half-way
    with nobody to finish it, so the command stops with one line and changes nothing."""
    seen = secret_env.survey(link, config.agent_names(), time.monotonic() + timeout)
    env_keyed = sorted(a for a, r in seen.replies.items()
                       if (r.get("auth") or {}).get("source") == "env")
    if env_keyed:
        raise CliFailure(f"nothing was changed: agent(s) {', '.join(env_keyed)} take their key "
                         f"from {secret_store.ENV_SECRET}, which a running process does not "
                         f"re-read; rotate with `amplihack-hive rotate-secret --hive "
                         f"{config.name} --env` (one step per run, restarting the agents with "
                         "the new value between runs)")
    if seen.failed:
        hint = (f" (keyed with another {secret_store.ENV_SECRET} than "
                f"{secret_store.SECRET_FILE}?)" if seen.refused else "")
        raise CliFailure(f"nothing was changed: agent(s) {', '.join(sorted(seen.failed))} did "
                         f"not answer under the hive's secret{hint}: {seen.failures()}")


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
        _preflight(link, config, timeout)
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
