"""Redis Streams as a :class:`~hive_core.transports.broker.Broker`: one hive across machines.

Addressing is explicit: every agent reads only its own stream ``{prefix}:{hive}:inbox:{agent}``
through its own consumer group, so no two agents ever compete for a message (the shared
consumer group of the system this follows lost most of its events). Every transport instance
has a private reply stream ``{prefix}:{hive}:reply:{client_id}`` that expires after use.

The primitives, as :mod:`hive_core.transports.broker` asks for them:

* ``send``: a whole batch with ONE script call that, per envelope, checks the target's
  liveness key and XADDs (``MAXLEN ~`` bounded) only if it is live, atomically -- an unknown,
  stopped or crashed agent is a ``ConnectionLost`` at once. An unreachable Redis is retried
  with backoff until the request's deadline.
* ``receive``: XREADGROUP with a bounded BLOCK. After every (re)connect, and every
  :data:`RECLAIM_INTERVAL` while connected, it first XAUTOCLAIMs stale pending entries (a
  previous incarnation died holding them, or a reply could not be written): that is the
  redelivery. A consumer group lost with a Redis restart is recreated (``NOGROUP``). Anyone
  who can write to Redis can put an entry on the pending list too (XREADGROUP as any
  consumer, XCLAIM ... RETRYCOUNT), so being reclaimed proves nothing: the entry id and the
  agent's own record decide (hive_core.transports.handled_journal).
* ``ack``: the reply XADDed to the asker's stream and the XACK, in one pipeline.
  ``abandon`` leaves the entry pending (reclaimed later).
* liveness and name claims: :mod:`hive_core.transports.redis_membership` (heartbeats).

The connection string is never logged or put into an error unredacted.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from hive_core.auth import MessageAuth
from hive_core.config import MAX_MESSAGE_BYTES
from hive_core.errors import ConfigError, ConnectionLost, TransportError
from hive_core.hive_config import HiveConfig
from hive_core.redact import redact_secret
from hive_core.transports.broker import DRAIN_TIMEOUT, BrokerTransport, Delivery, Outgoing
from hive_core.transports.handled_journal import journal_dir
from hive_core.transports.redis_membership import (
    ALIVE_TTL,
    HEARTBEAT_INTERVAL,
    RedisKeys,
    RedisMembership,
)
from hive_core.transports.retry import Backoff, RetryState

log = logging.getLogger("hive_core.transports.redis")

DEFAULT_KEY_PREFIX = "amplihack"
BLOCK_MS = 250  # bounded blocking reads: a closing transport stops within this
STREAM_MAXLEN = 10_000  # per inbox and reply stream, approximate (MAXLEN ~)
REPLY_TTL_MS = 120_000  # an abandoned reply stream disappears after this
SEND_CHUNK = 256  # envelopes per send script call
GROUP = "shard"
RECLAIM_INTERVAL = 30.0  # while connected, also reclaim entries idle this long (seconds)

# KEYS: alive_1..alive_n, inbox_1..inbox_n. ARGV: n, maxlen, reply_to, (msg_id, body)*n.
_SEND = """
local n = tonumber(ARGV[1])
local out = {}
for i = 1, n do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('XADD', KEYS[n + i], 'MAXLEN', '~', ARGV[2], '*',
               'env', ARGV[3 + 2 * i], 'id', ARGV[2 + 2 * i], 'reply', ARGV[3])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"""


def connect(url: str, *, socket_timeout: float) -> redis.Redis:
    """A client for ``redis://`` or ``rediss://`` (TLS) URLs; ConfigError for anything else."""
    if not url.startswith(("redis://", "rediss://")):
        raise ConfigError(
            f"invalid Redis connection string {redact_secret(url)!r}: "
            "use redis://[:password@]host:port/db or rediss:// for TLS")
    try:
        return redis.Redis.from_url(
            url, socket_timeout=socket_timeout, socket_connect_timeout=2.0,
            retry=Retry(NoBackoff(), 0),  # our own policy (retry.py) owns every retry
            health_check_interval=30)
    except ValueError as exc:
        raise ConfigError(f"invalid Redis connection string {redact_secret(url)!r}: "
                          f"{redact_secret(str(exc))}") from exc


def purge_hive_keys(url: str, hive: str, key_prefix: str = DEFAULT_KEY_PREFIX) -> int:
    """Delete every key of one hive (inboxes, reply streams, membership); returns how many.

    Only keys under ``{key_prefix}:{hive}:`` are touched, so other hives on the same Redis
    keep theirs. Used by ``amplihack-hive delete --purge-data``.
    """
    client = connect(url, socket_timeout=5.0)
    pattern = f"{RedisKeys(key_prefix, hive).namespace}:*"
    deleted = 0
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=pattern, count=500):
            batch.append(key)
            if len(batch) >= 500:
                deleted += int(client.delete(*batch))
                batch = []
        if batch:
            deleted += int(client.delete(*batch))
    except redis.RedisError as exc:
        raise ConnectionLost(f"could not purge hive {hive!r} from Redis: "
                             f"{redact_secret(str(exc))}") from exc
    finally:
        client.close()
    return deleted


class RedisBroker:
    """The Broker primitives over Redis Streams (see the module docstring)."""

    acks_are_final = True  # XACK took the entry off the pending list: never reclaimed again

    def __init__(
        self, url: str, hive: str, *, key_prefix: str = DEFAULT_KEY_PREFIX,
        block_ms: int = BLOCK_MS, stream_maxlen: int = STREAM_MAXLEN,
        heartbeat_interval: float = HEARTBEAT_INTERVAL, alive_ttl: float = ALIVE_TTL,
    ) -> None:
        self.where = f"Redis at {redact_secret(url)}"
        self.keys = RedisKeys(key_prefix, hive)
        self.hive = hive
        self.client = connect(url, socket_timeout=block_ms / 1000 + 1.0)
        self.block_ms = block_ms
        self.stream_maxlen = stream_maxlen
        self.client_id = uuid.uuid4().hex[:16]
        self.reply_key = self.keys.reply(self.client_id)
        token = f"{socket.gethostname()}:{os.getpid()}:{self.client_id}"
        self.membership = RedisMembership(self.client, self.keys, token,
                                          heartbeat_interval=heartbeat_interval,
                                          alive_ttl=alive_ttl)
        self._send_script = self.client.register_script(_SEND)
        self._last_reply_id: bytes | str = "0-0"
        self._ready: dict[str, float] = {}  # agent -> when its pending entries were reclaimed
        self._lock = threading.Lock()

    def _lost(self, exc: Exception) -> ConnectionLost:
        return ConnectionLost(f"{self.where} is unreachable: {type(exc).__name__}: "
                              f"{redact_secret(str(exc))}")

    # -- membership ---------------------------------------------------------------------------
    def claim(self, agent: str) -> None:
        try:
            self.membership.join(agent)
        except redis.RedisError as exc:
            raise self._lost(exc) from exc

    def release(self, agent: str) -> None:
        with self._lock:
            self._ready.pop(agent, None)
        self.membership.leave(agent)

    def live_members(self, candidates: Iterable[str] | None = None) -> set[str]:
        try:
            return self.membership.live(None if candidates is None else set(candidates))
        except redis.RedisError as exc:
            raise self._lost(exc) from exc

    def registered_members(self) -> set[str]:
        """Agents that ever joined this hive (the registry)."""
        try:
            return self.membership.registered()
        except redis.RedisError as exc:
            raise self._lost(exc) from exc

    # -- requests -----------------------------------------------------------------------------
    def reply_address(self) -> str:
        return self.reply_key

    def send(self, items: Sequence[Outgoing], deadline: float) -> list[TransportError | None]:
        out: list[TransportError | None] = []
        for start in range(0, len(items), SEND_CHUNK):
            out += self._send_chunk(items[start:start + SEND_CHUNK], deadline)
        return out

    def _send_chunk(self, chunk: Sequence[Outgoing], deadline: float
                    ) -> list[TransportError | None]:
        n = len(chunk)
        keys = [self.keys.alive(item.target) for item in chunk]
        keys += [self.keys.inbox(item.target) for item in chunk]
        head: list[str | bytes | int] = [n, self.stream_maxlen, chunk[0].reply_to]
        args = head + [x for item in chunk for x in (item.msg_id, item.body)]
        retry = RetryState(Backoff(base=0.02, cap=0.5))
        while True:
            try:
                sent = self._send_script(keys=keys, args=args)
                break
            except redis.ResponseError as exc:  # e.g. OOM: retrying would not help
                return [TransportError(f"Redis refused the send: {exc}")] * n
            except redis.RedisError as exc:
                if not retry.failed(deadline):
                    return [self._lost(exc)] * n
                # The script may have run before the connection failed: signed afresh, a
                # second copy is not a replay of the first (Outgoing.again).
                args = head + [x for item in chunk for x in (item.msg_id, item.again())]
        return [
            None if ok else ConnectionLost(
                f"no live agent {item.target!r} in hive {self.hive!r} on Redis")
            for item, ok in zip(chunk, sent, strict=True)
        ]

    # -- serving ------------------------------------------------------------------------------
    def receive(self, agent: str, max_count: int, timeout: float) -> list[Delivery]:
        try:
            reclaimed = self._reclaim_if_due(agent)
            if reclaimed:
                return reclaimed
            resp = self.client.xreadgroup(GROUP, agent, {self.keys.inbox(agent): ">"},
                                          count=max_count, block=int(timeout * 1000))
        except redis.ResponseError as exc:
            with self._lock:
                self._ready.pop(agent, None)
            if "NOGROUP" in str(exc):
                log.warning("%s: consumer group is gone (Redis restarted empty?); "
                            "recreating it", agent)
                return []
            raise TransportError(f"Redis refused a command: {exc}") from exc
        except redis.RedisError as exc:
            with self._lock:
                self._ready.pop(agent, None)
            raise self._lost(exc) from exc
        return [self._delivery(agent, entry_id, fields, 1)
                for _stream, entries in resp or [] for entry_id, fields in entries]

    def _reclaim_if_due(self, agent: str) -> list[Delivery]:
        """After a (re)connect: recreate the group and take over every pending entry (ours
        from a previous incarnation); while connected, every RECLAIM_INTERVAL, entries idle
        that long (a reply that could not be written)."""
        with self._lock:
            since = self._ready.get(agent)
        now = time.monotonic()
        if since is not None and now - since < RECLAIM_INTERVAL:
            return []
        if since is None:
            try:  # from id 0: entries written before the group existed are delivered too
                self.client.xgroup_create(self.keys.inbox(agent), GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        min_idle = 0 if since is None else int(RECLAIM_INTERVAL * 1000)
        out: list[Delivery] = []
        start: Any = "0-0"
        while True:
            got = self.client.xautoclaim(self.keys.inbox(agent), GROUP, agent, min_idle,
                                         start_id=start, count=100)
            start, entries = got[0], got[1]
            if len(got) > 2 and got[2]:
                log.error("%s: %d pending request(s) were trimmed from the stream before "
                          "they were handled (MAXLEN reached); their senders saw a deadline",
                          agent, len(got[2]))
            out += [self._delivery(agent, entry_id, fields, 2)
                    for entry_id, fields in entries if fields]
            if start in (b"0-0", "0-0"):
                break
        with self._lock:
            self._ready[agent] = now
        return out

    def _delivery(self, agent: str, entry_id: bytes, fields: dict[bytes, bytes],
                  attempt: int) -> Delivery:
        reply_to: str | None = fields.get(b"reply", b"").decode("utf-8", "replace")
        if not str(reply_to).startswith(self.keys.reply("")):
            log.warning("%s: dropped the reply address %r of a request: outside this hive",
                        agent, reply_to)
            reply_to = None
        return Delivery(key=entry_id, body=fields.get(b"env", b""), reply_to=reply_to,
                        msg_id=fields.get(b"id", b"").decode("utf-8", "replace"),
                        handle=entry_id, attempt=attempt)

    def ack(self, agent: str, delivery: Delivery, reply: bytes | None) -> None:
        """XADD the reply to the asker's stream and XACK, in one pipeline."""
        try:
            pipe = self.client.pipeline(transaction=False)
            if reply is not None and delivery.reply_to is not None:
                pipe.xadd(delivery.reply_to, {"r": reply}, maxlen=self.stream_maxlen,
                          approximate=True)
                pipe.pexpire(delivery.reply_to, REPLY_TTL_MS)
            pipe.xack(self.keys.inbox(agent), GROUP, delivery.handle)
            pipe.execute()
        except redis.RedisError as exc:
            raise self._lost(exc) from exc

    def abandon(self, agent: str, delivery: Delivery) -> None:
        """Nothing to do: the entry stays pending and is reclaimed after RECLAIM_INTERVAL."""

    def receive_replies(self, max_count: int, timeout: float) -> list[bytes]:
        try:
            resp = self.client.xread({self.reply_key: self._last_reply_id}, count=max_count,
                                     block=int(timeout * 1000))
            seen: list[bytes] = []
            bodies: list[bytes] = []
            for _stream, entries in resp or []:
                for entry_id, fields in entries:
                    self._last_reply_id = entry_id
                    seen.append(entry_id)
                    bodies.append(fields.get(b"r", b""))
            if seen:
                self.client.xdel(self.reply_key, *seen)
            return bodies
        except redis.RedisError as exc:
            raise self._lost(exc) from exc

    def close(self) -> None:
        self.membership.close()
        self.client.close()


class RedisShardTransport(BrokerTransport):
    """The ShardTransport of a hive on Redis: a BrokerTransport over a RedisBroker."""

    def __init__(
        self, url: str, hive: str, *, key_prefix: str = DEFAULT_KEY_PREFIX,
        max_message_bytes: int = MAX_MESSAGE_BYTES, max_workers: int = 16,
        block_ms: int = BLOCK_MS, stream_maxlen: int = STREAM_MAXLEN,
        heartbeat_interval: float = HEARTBEAT_INTERVAL, alive_ttl: float = ALIVE_TTL,
        drain_timeout: float = DRAIN_TIMEOUT, auth: MessageAuth | None = None,
        replay_dir: Path | None = None,
    ) -> None:
        self.redis = RedisBroker(url, hive, key_prefix=key_prefix, block_ms=block_ms,
                                 stream_maxlen=stream_maxlen,
                                 heartbeat_interval=heartbeat_interval, alive_ttl=alive_ttl)
        super().__init__(self.redis, max_message_bytes=max_message_bytes,
                         max_workers=max_workers, receive_timeout=block_ms / 1000,
                         drain_timeout=drain_timeout, auth=auth, replay_dir=replay_dir)

    @property
    def where(self) -> str:
        return self.redis.where

    def registered_members(self) -> set[str]:
        return self.redis.registered_members()


def open_transport(config: HiveConfig, auth: MessageAuth | None = None
                   ) -> RedisShardTransport:
    """The ``redis`` entry of hive_core.transports.registry."""
    assert config.connection_string is not None  # checked by the registry
    return RedisShardTransport(config.connection_string, config.name,
                               key_prefix=config.key_prefix, auth=auth,
                               replay_dir=journal_dir(config))


def purge(config: HiveConfig) -> list[str]:
    """``delete --purge-data``: every key under the hive's prefix (its ring view too)."""
    assert config.connection_string is not None
    count = purge_hive_keys(config.connection_string, config.name, config.key_prefix)
    return [f"{count} Redis key(s) under {config.key_prefix}:{config.name}:"]
