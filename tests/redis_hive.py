"""Agent processes of a Redis hive for tests: real ``python -m agent_runtime`` children.

One :class:`RedisHive` is one "machine": its own AMPLIHACK_HOME (holding a copy of the
hive's config) and its own working directory; its agents run in their own process groups.
Several of them with the same config and Redis form one hive: they share its message secret
through ``AMPLIHACK_HIVE_SECRET``, as containers do. Children are killed by PID.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from agent_runtime.learning import RuleBasedExtractor
from hive_core.auth import BROKER_WINDOW, with_key
from hive_core.errors import TransportError
from hive_core.hive_config import AgentConfig, HiveConfig
from hive_core.messages import Envelope, MessageType
from hive_core.placement import place
from hive_core.ring import HashRing
from hive_core.secret_store import ENV_SECRET
from hive_core.transports.base import check_reply
from hive_core.transports.redis import RedisShardTransport

START_DEADLINE = 60.0
REPO = Path(__file__).resolve().parents[1]


def redis_config(hive: str, names: list[str], url: str, prefix: str, rf: int = 3) -> HiveConfig:
    return HiveConfig(name=hive, transport="redis", connection_string=url, key_prefix=prefix,
                      shard_backend="memory", replication_factor=rf,
                      agents=tuple(AgentConfig(n) for n in names))


def placed_counts(config: HiveConfig, turns: list[str]) -> dict[str, int]:
    """Facts each shard must hold: the primary replicas the ring gives it."""
    ring = HashRing(config.agent_names(), replication_factor=config.replication_factor)
    per = {a: len(b.primary) for a, b in place(expected_facts(turns).values(), ring).items()}
    return {n: per.get(n, 0) for n in config.agent_names()}


def expected_facts(turns: list[str]) -> dict[str, object]:
    facts: dict[str, object] = {}
    for turn in turns:
        for fact in RuleBasedExtractor().extract(turn):
            facts.setdefault(fact.fact_id, fact)
    return facts


class RedisHive:
    """Agents of ``config`` started from ``home`` (a private AMPLIHACK_HOME) and ``cwd``."""

    def __init__(self, config: HiveConfig, home: Path, cwd: Path | None = None) -> None:
        self.config = config
        self.home = home
        self.cwd = cwd or home
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "AMPLIHACK_HOME": str(home),
                    "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.env.pop("ANTHROPIC_API_KEY", None)
        # One secret per hive (name and prefix), the same on every "machine" of it.
        self.secret = hashlib.sha256(
            f"redis-hive test\0{config.key_prefix}\0{config.name}".encode()).digest()
        self.env[ENV_SECRET] = self.secret.hex()
        path = home / "hives" / config.name / "config.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        path.chmod(0o600)
        self.logs = home / "test-logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen] = {}
        assert config.connection_string is not None
        self.client = RedisShardTransport(config.connection_string, config.name,
                                          key_prefix=config.key_prefix,
                                          auth=with_key(self.secret, BROKER_WINDOW))

    def spawn(self, name: str) -> subprocess.Popen:
        with open(self.logs / f"{name}.log", "a") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "agent_runtime", "--hive", self.config.name,
                 "--agent", name],
                env=self.env, cwd=self.cwd, stdout=log, stderr=log, start_new_session=True)
        self.procs[name] = proc
        return proc

    def log_of(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text()

    def send(self, kind: MessageType, target: str, payload: dict, timeout: float = 15.0):
        env = Envelope(kind, self.config.name, "test", target, payload)
        [reply] = self.client.request([env], timeout)
        return check_reply(reply).payload

    def status(self, name: str) -> dict:
        return self.send(MessageType.SHARD_QUERY, name, {"op": "status"}, timeout=5.0)

    def wait_ready(self, names: list[str], live_peers: int | None = None) -> None:
        """Until each agent answers status (and, if given, sees ``live_peers`` live peers)."""
        deadline = time.monotonic() + START_DEADLINE
        waiting = set(names)
        while waiting and time.monotonic() < deadline:
            for name in sorted(waiting):
                try:
                    st = self.status(name)
                except TransportError:
                    continue
                if live_peers is None or len(st["live_peers"]) >= live_peers:
                    waiting.discard(name)
            for name in waiting:
                proc = self.procs.get(name)
                if proc is not None:
                    assert proc.poll() is None, f"{name} exited early:\n{self.log_of(name)}"
            time.sleep(0.1)
        assert not waiting, f"not ready within {START_DEADLINE}s: {sorted(waiting)}"

    def stop_all(self) -> None:
        self.client.close()
        for proc in self.procs.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
