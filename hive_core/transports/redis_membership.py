"""Who is in a hive on Redis: key names, a member registry, and heartbeats.

Keys of one hive all start with ``{prefix}:{hive}:`` (:class:`RedisKeys`), so two hives (or
two deployments with different prefixes) share one Redis without seeing each other.

Two facts are kept per agent:

* ``{ns}:alive:{agent}`` -- a string holding the serving instance's token, with a TTL of a
  few heartbeats. It exists exactly while the agent is live: a clean leave deletes it, a crash
  lets it expire. Senders check it atomically with their XADD (see the send script in
  :mod:`hive_core.transports.redis`), so a request to a dead agent fails at once instead of
  waiting for its deadline.
* ``{ns}:members`` -- a sorted set, agent -> time of its last heartbeat (Redis clock, ms). It
  is the hive's *registry*: an agent stays in it after leaving, because its shard (on its
  disk) still holds facts and it will come back. Agent processes build their ring from it.

A name is claimed with the same script that heartbeats it, which refuses when another live
instance holds it: two processes can never serve one agent (the second one gets
:class:`~hive_core.errors.AgentError` after waiting out a crashed holder's TTL).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import redis

from hive_core.errors import AgentError
from hive_core.transports.retry import Backoff, RetryState

log = logging.getLogger("hive_core.transports.redis")

HEARTBEAT_INTERVAL = 1.0
ALIVE_TTL = 4.0  # seconds: a crashed agent counts as live at most this long

# KEYS: alive, members. ARGV: token, ttl_ms, agent. 1 = ours now, 0 = another instance holds it.
_CLAIM = """
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local t = redis.call('TIME')
redis.call('ZADD', KEYS[2], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), ARGV[3])
return 1
"""
# KEYS: alive. ARGV: token. Deletes the liveness key only if it is still ours.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True, slots=True)
class RedisKeys:
    """Every key of one hive, under ``{prefix}:{hive}``."""

    prefix: str
    hive: str

    @property
    def namespace(self) -> str:
        return f"{self.prefix}:{self.hive}"

    def inbox(self, agent: str) -> str:
        return f"{self.namespace}:inbox:{agent}"

    def reply(self, client_id: str) -> str:
        return f"{self.namespace}:reply:{client_id}"

    def alive(self, agent: str) -> str:
        return f"{self.namespace}:alive:{agent}"

    @property
    def members(self) -> str:
        return f"{self.namespace}:members"

    @property
    def ring(self) -> str:
        """The hive's ring view (hive_core.membership.redis_store)."""
        return f"{self.namespace}:ring"


class RedisMembership:
    """Claims, heartbeats and releases agent names of one hive (see module docstring)."""

    def __init__(
        self, client: redis.Redis, keys: RedisKeys, token: str, *,
        heartbeat_interval: float = HEARTBEAT_INTERVAL, alive_ttl: float = ALIVE_TTL,
    ) -> None:
        if alive_ttl <= 2 * heartbeat_interval:
            raise ValueError("alive_ttl must exceed two heartbeat intervals")
        self.client = client
        self.keys = keys
        self.token = token
        self.heartbeat_interval = heartbeat_interval
        self.alive_ttl = alive_ttl
        self._claim = client.register_script(_CLAIM)
        self._release = client.register_script(_RELEASE)
        self._agents: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one agent ----------------------------------------------------------------------------
    def _beat(self, agent: str) -> bool:
        ttl_ms = int(self.alive_ttl * 1000)
        keys = [self.keys.alive(agent), self.keys.members]
        return bool(self._claim(keys=keys, args=[self.token, ttl_ms, agent]))

    def join(self, agent: str, wait: float | None = None) -> None:
        """Claim ``agent`` and heartbeat it from now on.

        Waits up to ``wait`` seconds (default: the TTL) for a crashed holder's key to expire;
        raises AgentError if a live instance keeps it. Redis errors propagate to the caller.
        """
        deadline = time.monotonic() + (self.alive_ttl + 0.5 if wait is None else wait)
        while not self._beat(agent):
            if time.monotonic() >= deadline:
                raise AgentError(
                    f"agent {agent!r} is already running in hive {self.keys.hive!r} "
                    "(another process holds its name in Redis)")
            time.sleep(min(0.2, self.heartbeat_interval))
        with self._lock:
            self._agents.add(agent)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._heartbeat_loop, name="redis-heartbeat", daemon=True)
                self._thread.start()

    def leave(self, agent: str) -> None:
        """Stop heartbeating ``agent`` and delete its liveness key (it stays registered)."""
        with self._lock:
            self._agents.discard(agent)
        self._release(keys=[self.keys.alive(agent)], args=[self.token])

    # -- the hive -----------------------------------------------------------------------------
    def registered(self) -> set[str]:
        """Every agent that ever joined this hive (the registry)."""
        return {m.decode() for m in self.client.zrange(self.keys.members, 0, -1)}

    def live(self, candidates: set[str] | None = None) -> set[str]:
        """Agents whose liveness key exists (among ``candidates``, default: the registry)."""
        names = sorted(self.registered() if candidates is None else candidates)
        if not names:
            return set()
        holders = self.client.mget([self.keys.alive(a) for a in names])
        return {a for a, h in zip(names, holders, strict=True) if h is not None}

    # -- heartbeats ---------------------------------------------------------------------------
    def _heartbeat_loop(self) -> None:
        """Beat every bound agent each interval; survive Redis outages (logged, retried)."""
        retry = RetryState(Backoff(base=0.1, cap=self.heartbeat_interval), self._stop)
        while not self._stop.wait(self.heartbeat_interval if retry.attempts == 0 else 0):
            with self._lock:
                agents = sorted(self._agents)
            try:
                for agent in agents:
                    if not self._beat(agent):
                        log.error("agent %r: another instance holds its name in Redis; "
                                  "this one keeps serving but is not counted live", agent)
                if retry.attempts:
                    log.warning("heartbeats to Redis restored after %d failure(s)",
                                retry.attempts)
                retry.ok()
            except redis.RedisError as exc:
                log.warning("heartbeat to Redis failed (%s: %s); retrying",
                            type(exc).__name__, exc)
                retry.failed()

    def close(self) -> None:
        """Leave every agent still joined, then stop the heartbeat thread."""
        with self._lock:
            agents = sorted(self._agents)
        try:
            for agent in agents:
                self.leave(agent)
        except redis.RedisError as exc:  # their keys expire within the TTL anyway
            log.warning("could not leave %s cleanly (%s); their liveness expires in %.0fs",
                        ", ".join(agents), exc, self.alive_ttl)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.heartbeat_interval + 2.0)
