"""The keeper: a small per-hive process that restarts crashed agents (``start --restart
on-failure``), as pm2 or supervisord would.

``start`` spawns and records the agents as always, then launches the keeper (recorded in
``run/keeper.pid``, logging to ``logs/keeper.log``). Every ``POLL_S`` the keeper reads each
agent's PID record: a record whose process is gone is a crash (``stop`` removes the record,
and marks the agent ``.stopping`` while it works, so a stop is never taken for a crash). A
crashed agent is spawned again after an exponential backoff (1 s doubling to 30 s), and its
new record counts the restarts (``status`` shows them). After ``max_restarts`` restarts
without ``STABLE_S`` seconds of uptime in between, the keeper gives up on that agent and
says so in its log; the agent then shows as crashed. ``stop`` of the whole hive stops the
keeper first. The keeper exits by itself once no agent it watches has a record.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence

from agent_runtime import log_file
from hive_cli import hive_lock, supervisor
from hive_core.hive_config import HiveConfig, amplihack_home
from hive_core.redact import redact_log_handlers
from hive_core.transports.retry import Backoff

POLL_S = 0.5
STABLE_S = 60.0  # uptime after which an agent's restart count starts over
BACKOFF = Backoff(base=1.0, cap=30.0)
KEEPER = "keeper"
log = logging.getLogger("hive_cli.keeper")


def keeper_record(config: HiveConfig) -> supervisor.PidRecord | None:
    return supervisor.read_pid(config, KEEPER)


def running(config: HiveConfig) -> supervisor.PidRecord | None:
    """The hive's keeper, if one is alive."""
    record = keeper_record(config)
    return record if supervisor.live_process(record) is not None else None


def launch(config: HiveConfig, agents: Sequence[str], max_restarts: int) -> int:
    """Start the hive's keeper (or keep the one that runs); returns its PID."""
    record = running(config)
    if record is not None:
        return record.pid
    cmd = [sys.executable, "-m", "hive_cli.keeper", "--hive", config.name,
           "--agents", ",".join(agents), "--max-restarts", str(max_restarts)]
    env = {**os.environ, "AMPLIHACK_HOME": str(amplihack_home())}
    return supervisor.spawn(config, KEEPER, cmd, env=env).pid


def stop(config: HiveConfig, timeout: float = supervisor.STOP_TIMEOUT_S) -> bool:
    """Stop the keeper (before the agents, so it restarts none of them); True if it ran."""
    if running(config) is None:
        supervisor.clear_pid(config, KEEPER)
        return False
    supervisor.stop(config, [KEEPER], timeout)
    return True


class Keeper:
    def __init__(self, config: HiveConfig, agents: Sequence[str], max_restarts: int) -> None:
        self.config, self.agents, self.max_restarts = config, list(agents), max_restarts
        self.attempts = dict.fromkeys(self.agents, 0)
        self.due: dict[str, float] = {}  # crashed agent -> when to restart it
        self.given_up: set[str] = set()
        self.corrupt: set[str] = set()  # agents whose PID file is corrupt (reported once)
        self.done = threading.Event()

    def check(self, now: float) -> bool:
        """One pass over the agents; False when none of them has a record any more."""
        watched = False
        for agent in self.agents:
            record, corrupt = supervisor.read_pid_or_none(self.config, agent)
            if corrupt and agent not in self.corrupt:
                log.error("%s; not watching %s until a command rewrites it", corrupt, agent)
            self.corrupt.discard(agent)
            if corrupt:
                self.corrupt.add(agent)
            if record is None or agent in self.given_up:
                continue
            watched = True
            if supervisor.stopping_path(self.config, agent).exists():
                continue
            if supervisor.live_process(record) is not None:
                if now - record.started_at > STABLE_S:
                    self.attempts[agent] = 0
                continue
            self._crashed(agent, record, now)
        return watched

    def _crashed(self, agent: str, record: supervisor.PidRecord, now: float) -> None:
        if self.attempts[agent] >= self.max_restarts:
            self.given_up.add(agent)
            log.error("%s crashed %d times in a row; giving up (start it by hand)", agent,
                      self.attempts[agent] + 1)
            return
        if agent not in self.due:
            self.due[agent] = now + BACKOFF.delay(self.attempts[agent])
            log.warning("%s (pid %d) exited; restarting in %.1f s", agent, record.pid,
                        self.due[agent] - now)
        if now < self.due[agent]:
            return
        # Never race a command that is starting or stopping agents of this hive: it holds
        # the lifecycle lock; try again next round and look afresh under the lock.
        with hive_lock.attempt(self.config.name, "keeper restart") as held:
            if not held:
                return
            now_record = supervisor.read_pid_or_none(self.config, agent)[0]
            if now_record is None or now_record.pid != record.pid \
                    or supervisor.stopping_path(self.config, agent).exists():
                self.due.pop(agent, None)  # a command stopped or started it meanwhile
                return
            del self.due[agent]
            new = supervisor.spawn(self.config, agent, restarts=record.restarts + 1)
        self.attempts[agent] += 1
        log.warning("%s restarted as pid %d (restart %d)", agent, new.pid, new.restarts)

    def run(self) -> int:
        log.info("keeping %s (max %d restarts in a row)", ", ".join(self.agents),
                 self.max_restarts)
        while not self.done.is_set():
            if not self.check(time.time()):
                log.info("no agent left to keep; exiting")
                break
            self.done.wait(POLL_S)
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hive_cli.keeper")
    parser.add_argument("--hive", required=True)
    parser.add_argument("--agents", required=True)
    parser.add_argument("--max-restarts", type=int, default=5)
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format=f"%(asctime)s %(levelname)s {args.hive}/keeper: %(message)s")
    redact_log_handlers(logging.getLogger())  # an error's text may quote a connection URL
    log_file.install()  # logs/keeper.log is rotated by size like the agents' logs
    keeper = Keeper(HiveConfig.load(args.hive), args.agents.split(","), args.max_restarts)
    signal.signal(signal.SIGTERM, lambda *_: keeper.done.set())
    signal.signal(signal.SIGINT, lambda *_: keeper.done.set())
    return keeper.run()


if __name__ == "__main__":
    sys.exit(main())
