"""``rotate-secret --env``: rotating the key of agents that take it from the environment.

An agent started with ``AMPLIHACK_HIVE_SECRET`` (a container: Container Apps gets it from
deploy/azure/deploy.sh; or a shell that exported it) holds its keys for life: it cannot
follow the secret file as the live rotation of hive_cli.secret_cmd needs. So for such a
hive the same three steps (hive_core.secret_store: introduce, switch, retire) are taken one
per run, with a restart of the agents between runs:

1. the run checks that every running agent already uses the keys of the file's current step
   (:func:`hive_core.secret_store.probe_keys`: an agent still on an older value does not
   answer the probe) -- otherwise it stops with one line and changes nothing, because the
   next step would cut that agent off;
2. it writes the next step to ``secret.json``;
3. it tells the operator to restart (redeploy) the agents with the new value: deploy.sh reads
   it from ``secret.json`` when the variable is unset, and ``--env-file PATH`` writes it as
   ``AMPLIHACK_HIVE_SECRET=...`` to a 0600 file. The value itself is printed only when asked
   with ``--env-file -`` and standard output is a terminal (a pipe or a file may be a log).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hive_cli.agent_link import AgentLink, describe
from hive_cli.errors import CliFailure, UsageProblem
from hive_cli.transport_factory import open_transport
from hive_core import secret_store
from hive_core.atomic import write_private
from hive_core.auth import MessageAuth, StaticKeys
from hive_core.errors import ConnectionLost, MessageRejected
from hive_core.hive_config import HiveConfig
from hive_core.transports import registry

POLL_S = 0.2
STATUS_TIMEOUT_S = 2.0
STDOUT = "-"


@dataclass(slots=True)
class Survey:
    """What the running agents answered to a status request."""

    replies: dict[str, dict[str, Any]] = field(default_factory=dict)
    not_running: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)  # agent -> why it did not answer
    refused: set[str] = field(default_factory=set)  # of ``failed``: refused our signature

    def failures(self) -> str:
        return "; ".join(f"{a}: {w.removeprefix(f'{a}: ')}" for a, w in
                         sorted(self.failed.items()))


def survey(link: AgentLink, agents: list[str], deadline: float) -> Survey:
    """Ask every agent for its status until it answers, is found not running (its socket or
    queue refuses) or ``deadline`` passes. A refused signature is final at once."""
    out = Survey()
    pending = set(agents)
    while pending:
        for agent, reply in link.status(sorted(pending), STATUS_TIMEOUT_S).items():
            if isinstance(reply, dict):
                out.replies[agent] = reply
                out.failed.pop(agent, None)
                pending.discard(agent)
            elif isinstance(reply, ConnectionLost):
                out.not_running.add(agent)
                out.failed.pop(agent, None)
                pending.discard(agent)
            else:
                out.failed[agent] = describe(reply)
                if isinstance(reply, MessageRejected):
                    out.refused.add(agent)
                    pending.discard(agent)
        if pending and time.monotonic() >= deadline:
            break
        if pending:
            time.sleep(POLL_S)
    return out


def check_env_file(env_file: str | None, json_out: bool) -> None:
    """Refuse, before anything is written, an ``--env-file`` that would put the key where a
    log may keep it."""
    if env_file != STDOUT:
        return
    if json_out:
        raise UsageProblem("--env-file - prints the key, which --json output must not carry: "
                           "give --env-file a path instead")
    if not sys.stdout.isatty():
        raise UsageProblem("--env-file - prints the key only to a terminal (standard output "
                           "is a pipe or a file, which may be a log): give --env-file a path")


def env_step(config: HiveConfig, path: Path, timeout: float,
             env_file: str | None) -> dict[str, Any]:
    """Check the running agents follow the file's step, write the next one; the report."""
    if not path.exists():
        raise CliFailure(f"hive {config.name} has no message secret at {path}: --env advances "
                         "that file (rotate-secret without --env creates it; then give the "
                         f"agents its key in {secret_store.ENV_SECRET})")
    secret = secret_store.read(path)
    auth = MessageAuth(StaticKeys(secret_store.probe_keys(secret)),
                       window=registry.spec(config.transport).replay_window)
    link = AgentLink(config.name, open_transport(config, auth))
    try:
        seen = survey(link, config.agent_names(), time.monotonic() + timeout)
    finally:
        link.transport.close()
    if seen.failed:
        raise CliFailure(
            f"nothing was changed: agent(s) {', '.join(sorted(seen.failed))} do not use the "
            f"keys of {path.name}'s step {secret.step!r} (generation {secret.generation}) yet "
            f"({seen.failures()}); restart them with {secret_store.ENV_SECRET} set to that "
            "step's value (deploy.sh reads it from the file) and run this again")
    written = secret_store.rotate_step(path)
    where = None
    if env_file is not None:
        line = f"{secret_store.ENV_SECRET}={secret_store.env_value(written)}\n"
        if env_file == STDOUT:
            sys.stdout.write(line)
            sys.stdout.flush()
        else:
            where = str(Path(env_file).resolve())
            write_private(Path(env_file), line)
    return {"hive": config.name, "mode": "env", "generation": written.generation,
            "step": written.step, "step_number": secret_store.STEPS.index(written.step) + 1,
            "checked": sorted(seen.replies), "not_running": sorted(seen.not_running),
            "env_file": where}


def env_step_message(doc: dict[str, Any], path: Path) -> str:
    """The one line that says what was written and what the operator does next."""
    hive, env = doc["hive"], secret_store.ENV_SECRET
    value = (f"written to {doc['env_file']}" if doc["env_file"] else
             f"deploy.sh reads it from {path} when {env} is unset; --env-file PATH writes it")
    then = (f"then run `amplihack-hive rotate-secret --hive {hive} --env` again"
            if doc["step"] != "retire" else
            "the rotation is done once they run with it: the old key is then refused")
    return (f"hive {hive}: step {doc['step_number']}/3 ({doc['step']}) of the message secret's "
            f"rotation written (generation {doc['generation']}; {len(doc['checked'])} running "
            f"agent(s) checked); restart or redeploy every agent with the new {env} ({value}); "
            f"{then}")
