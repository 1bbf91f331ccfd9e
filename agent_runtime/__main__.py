"""``python -m agent_runtime --hive NAME --agent A``: run one agent until SIGTERM/SIGINT.

Reads ``$AMPLIHACK_HOME/hives/NAME/config.yaml`` with the ``AMPLIHACK_MEMORY_*`` overrides,
plus ``AMPLIHACK_AGENT_NAME`` (when ``--agent`` is not given) and ``AMPLIHACK_AGENT_PROMPT``.
Logs go to stderr with timestamps (the supervisor redirects them to ``logs/AGENT.log``).

In a container everything comes from the environment (agent_runtime.env_config):
``AMPLIHACK_HIVE`` when ``--hive`` is not given, and ``AMPLIHACK_HIVE_CONFIG`` (the config's
YAML text, without its secret) instead of the file. ``AMPLIHACK_HEALTH_PORT`` adds the HTTP
readiness endpoint of agent_runtime.health (ready once the agent started, not while stopping).

Exit codes: 0 after a clean stop; 1 when startup fails (one log line says why: unknown hive
or agent, shard in use, agent already running, ...) or when shutdown could not close cleanly;
2 for bad command-line arguments.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from agent_runtime import health, log_file
from agent_runtime.agent import Agent
from agent_runtime.env_config import HIVE_VARIABLE, load_hive_config
from hive_core.errors import HiveError
from hive_core.redact import redact_log_handlers

log = logging.getLogger("agent_runtime")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m agent_runtime",
                                     description="Run one agent of an amplihack hive.")
    parser.add_argument("--hive", default=os.environ.get(HIVE_VARIABLE),
                        help=f"hive name (default: ${HIVE_VARIABLE})")
    parser.add_argument("--agent", default=os.environ.get("AMPLIHACK_AGENT_NAME"),
                        help="agent name (default: $AMPLIHACK_AGENT_NAME)")
    args = parser.parse_args(argv)
    if not args.hive:
        parser.error(f"--hive is required (or set {HIVE_VARIABLE})")
    if not args.agent:
        parser.error("--agent is required (or set AMPLIHACK_AGENT_NAME)")
    try:
        args.health_port = health.port_from_env()
    except ValueError as exc:
        parser.error(str(exc))
    return args


def setup_logging(hive: str, agent: str) -> None:
    logging.basicConfig(
        stream=sys.stderr, level=os.environ.get("AMPLIHACK_LOG_LEVEL", "INFO").upper(),
        format=f"%(asctime)s %(levelname)s {hive}/{agent} %(name)s: %(message)s")
    redact_log_handlers(logging.getLogger())  # an SDK's exception text may quote a URL
    log_file.install()


def main(argv: list[str] | None = None) -> int:
    # Everything an agent writes -- Kuzu's files under any --storage-path, its state, its
    # socket -- holds the hive's facts: owner-only, whatever umask the caller had.
    os.umask(0o077)
    args = parse_args(argv)
    setup_logging(args.hive, args.agent)
    stop = threading.Event()
    received: list[str] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    agent: Agent | None = None
    probe: health.HealthServer | None = None
    try:
        if args.health_port is not None:  # first: the platform sees "alive, not ready" early
            probe = health.HealthServer(health.HealthState(args.agent), args.health_port).start()
        config = load_hive_config(args.hive)
        prompt = os.environ.get("AMPLIHACK_AGENT_PROMPT") or config.agent(args.agent).prompt
        agent = Agent(config, args.agent, prompt=prompt)
        agent.start()
    except (HiveError, OSError) as exc:
        log.error("startup failed: %s", exc)
        _quiet_stop(agent, probe)
        return 1
    except Exception:
        log.exception("startup failed with an unexpected error")
        _quiet_stop(agent, probe)
        return 1

    if probe is not None:
        probe.state.set_ready(True)

    log.info("ready: pid %d, %d peer(s), shard backend %s, transport %s, extractor %s",
             os.getpid(), len(config.agents) - 1, config.shard_backend, config.transport,
             type(agent.extractor).__name__)
    while not stop.wait(0.5):
        pass
    log.info("stopping on %s: finishing requests in flight", received[0] if received else "?")
    if probe is not None:  # not ready from now on: the platform stops routing here
        probe.state.set_ready(False)
    try:
        agent.stop()
    except HiveError as exc:  # e.g. DiskFull: the shard closed, its checkpoint not written
        log.error("shutdown did not complete cleanly: %s", exc)
        return 1
    except Exception:
        log.exception("shutdown did not complete cleanly")
        return 1
    finally:
        if probe is not None:
            probe.stop()
    log.info("stopped cleanly")
    return 0


def _quiet_stop(agent: Agent | None, probe: health.HealthServer | None = None) -> None:
    if probe is not None:
        probe.stop()
    if agent is not None:
        try:
            agent.stop()
        except Exception as exc:  # the startup error is the one worth reporting
            log.error("cleanup after failed startup also failed: %s", exc)


if __name__ == "__main__":
    sys.exit(main())
