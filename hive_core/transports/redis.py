"""RedisShardTransport: one hive across machines over Redis Streams.

Addressing is explicit, as with Event Hubs ``partition_id = agent index``: every agent reads
only its own stream ``{prefix}:{hive}:inbox:{agent}`` through its own consumer group
(:mod:`hive_core.transports.redis_consumer`); there is no shared channel that consumers
compete on. Every transport instance has a private reply stream
``{prefix}:{hive}:reply:{client_id}``, read by one thread that hands each reply to the
request waiting for its ``correlation_id``.

``request`` sends a whole batch with ONE script call: for each envelope it checks the
target's liveness key and XADDs to its stream (``MAXLEN ~`` bounded) only if the target is
live, atomically (:mod:`hive_core.transports.redis_membership`). So an unknown, stopped or
crashed agent is a ``ConnectionLost`` at once; a live agent that does not answer in time is a
``DeadlineExceeded``; all items share one deadline. If Redis itself is unreachable the send
is retried with backoff until the deadline, then every item is ``ConnectionLost``.

Delivery is at least once (a request whose handler died, or whose reply could not be
written, is handled again after the agent reconnects or restarts) and handling is
idempotent, so nothing is lost and nothing doubles. The connection string is never logged or
put into an error unredacted.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Sequence

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from hive_core.config import MAX_MESSAGE_BYTES
from hive_core.errors import (
    ConfigError,
    ConnectionLost,
    DeadlineExceeded,
    MessageRejected,
    TransportError,
)
from hive_core.hive_config import redact_secret
from hive_core.messages import Envelope, decode, encode
from hive_core.transports.base import Handler, Reply, check_request
from hive_core.transports.redis_consumer import StreamConsumer
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
DRAIN_TIMEOUT = 5.0

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


class _Batch:
    """Results of one ``request`` call, filled by the sender and the reply thread."""

    __slots__ = ("cond", "missing", "results")

    def __init__(self, size: int) -> None:
        self.results: list[Reply | None] = [None] * size
        self.missing = size
        self.cond = threading.Condition()

    def set(self, index: int, result: Reply) -> None:
        with self.cond:
            if self.results[index] is None:
                self.results[index] = result
                self.missing -= 1
                if self.missing == 0:
                    self.cond.notify_all()

    def wait(self, deadline: float) -> None:
        with self.cond:
            while self.missing and (left := deadline - time.monotonic()) > 0:
                self.cond.wait(left)


class RedisShardTransport:
    """ShardTransport over Redis Streams for one hive (see module docstring)."""

    def __init__(
        self, url: str, hive: str, *, key_prefix: str = DEFAULT_KEY_PREFIX,
        max_message_bytes: int = MAX_MESSAGE_BYTES, max_workers: int = 16,
        block_ms: int = BLOCK_MS, stream_maxlen: int = STREAM_MAXLEN,
        heartbeat_interval: float = HEARTBEAT_INTERVAL, alive_ttl: float = ALIVE_TTL,
        drain_timeout: float = DRAIN_TIMEOUT,
    ) -> None:
        self.where = redact_secret(url)
        self.keys = RedisKeys(key_prefix, hive)
        self.client = connect(url, socket_timeout=block_ms / 1000 + 1.0)
        self.max_message_bytes = max_message_bytes
        self.max_workers = max_workers
        self.block_ms = block_ms
        self.stream_maxlen = stream_maxlen
        self.drain_timeout = drain_timeout
        self.client_id = uuid.uuid4().hex[:16]
        self.reply_key = self.keys.reply(self.client_id)
        token = f"{socket.gethostname()}:{os.getpid()}:{self.client_id}"
        self.membership = RedisMembership(self.client, self.keys, token,
                                          heartbeat_interval=heartbeat_interval,
                                          alive_ttl=alive_ttl)
        self._send_script = self.client.register_script(_SEND)
        self._pool = cf.ThreadPoolExecutor(max_workers=max_workers,
                                           thread_name_prefix="redis-handler")
        self._consumers: dict[str, StreamConsumer] = {}
        self._waiters: dict[str, tuple[_Batch, int]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reader: threading.Thread | None = None
        self._last_reply_id: bytes | str = "0-0"
        self._link_error = ""
        self._closed = False

    @property
    def hive(self) -> str:
        return self.keys.hive

    def _lost(self, exc: Exception) -> ConnectionLost:
        return ConnectionLost(f"Redis at {self.where} is unreachable: {type(exc).__name__}: "
                              f"{redact_secret(str(exc))}")

    # -- serving ------------------------------------------------------------------------------
    def bind(self, agent_id: str, handler: Handler) -> None:
        """Join the hive as ``agent_id`` and serve its stream.

        AgentError if another live process serves that name; ConnectionLost if Redis is down.
        """
        with self._lock:
            if self._closed:
                raise ConnectionLost("the transport is closed")
            if agent_id in self._consumers:
                raise ConfigError(f"{agent_id!r} is already bound on this transport")
        try:
            self.membership.join(agent_id)
        except redis.RedisError as exc:
            raise self._lost(exc) from exc
        consumer = StreamConsumer(
            self.client, self.keys, agent_id, handler, self._pool,
            max_message_bytes=self.max_message_bytes, block_ms=self.block_ms,
            max_inflight=self.max_workers * 2, reply_maxlen=self.stream_maxlen,
            reply_ttl_ms=REPLY_TTL_MS, drain_timeout=self.drain_timeout)
        with self._lock:
            self._consumers[agent_id] = consumer
        consumer.start()

    def unbind(self, agent_id: str) -> None:
        """Leave (senders get ConnectionLost from now on), then finish requests in flight."""
        with self._lock:
            consumer = self._consumers.pop(agent_id, None)
        if consumer is None:
            return
        try:
            self.membership.leave(agent_id)
        except redis.RedisError as exc:
            log.warning("%s: could not leave cleanly (%s); liveness expires within %.0fs",
                        agent_id, exc, self.membership.alive_ttl)
        consumer.close()

    def consumer(self, agent_id: str) -> StreamConsumer:
        """The consumer serving ``agent_id`` here (counters for tests and benchmarks)."""
        with self._lock:
            return self._consumers[agent_id]

    # -- membership ---------------------------------------------------------------------------
    def live_members(self, candidates: Iterable[str] | None = None) -> set[str]:
        """Agents of this hive (of ``candidates``, default: all registered) that are live now
        (heartbeating): the Liveness protocol of hive_core.membership.liveness."""
        try:
            return self.membership.live(None if candidates is None else set(candidates))
        except redis.RedisError as exc:
            raise self._lost(exc) from exc

    def registered_members(self) -> set[str]:
        """Agents that ever joined this hive (the registry agent processes build rings from)."""
        try:
            return self.membership.registered()
        except redis.RedisError as exc:
            raise self._lost(exc) from exc

    # -- requesting ---------------------------------------------------------------------------
    def request(self, envelopes: Sequence[Envelope], timeout: float) -> list[Reply]:
        deadline = check_request(self._closed, timeout)
        self._start_reader()
        batch = _Batch(len(envelopes))
        outgoing: list[tuple[int, Envelope, bytes]] = []
        for i, env in enumerate(envelopes):
            try:
                outgoing.append((i, env, encode(env, self.max_message_bytes)))
            except MessageRejected as exc:
                batch.set(i, exc)
        with self._lock:  # registered before sending, so a fast reply is never missed
            for i, env, _ in outgoing:
                self._waiters[env.msg_id] = (batch, i)
        try:
            for start in range(0, len(outgoing), SEND_CHUNK):
                chunk = outgoing[start:start + SEND_CHUNK]
                for (i, _env, _), result in zip(chunk, self._send(chunk, deadline), strict=True):
                    if result is not None:
                        batch.set(i, result)
            batch.wait(deadline)
        finally:
            with self._lock:
                for _, env, _ in outgoing:
                    self._waiters.pop(env.msg_id, None)
        link = f" (reply stream: {self._link_error})" if self._link_error else ""
        return [
            r if r is not None else DeadlineExceeded(
                f"{env.target} did not answer within {timeout:g}s{link}")
            for r, env in zip(batch.results, envelopes, strict=True)
        ]

    def _send(
        self, chunk: Sequence[tuple[int, Envelope, bytes]], deadline: float
    ) -> list[TransportError | None]:
        """XADD each envelope to its live target; an error per item that could not go."""
        n = len(chunk)
        keys = [self.keys.alive(env.target) for _, env, _ in chunk]
        keys += [self.keys.inbox(env.target) for _, env, _ in chunk]
        args: list[str | bytes | int] = [n, self.stream_maxlen, self.reply_key]
        for _, env, body in chunk:
            args += [env.msg_id, body]
        retry = RetryState(Backoff(base=0.02, cap=0.5))
        while True:
            try:
                sent = self._send_script(keys=keys, args=args)
                break
            except redis.ResponseError as exc:  # e.g. OOM: retrying would not help
                return [TransportError(f"Redis refused the send: {exc}")] * n
            except redis.RedisError as exc:
                if not retry.failed(deadline):
                    lost = self._lost(exc)
                    return [lost] * n
        return [
            None if ok else ConnectionLost(
                f"no live agent {env.target!r} in hive {self.hive!r} on Redis")
            for (_, env, _), ok in zip(chunk, sent, strict=True)
        ]

    # -- replies ------------------------------------------------------------------------------
    def _start_reader(self) -> None:
        with self._lock:
            if self._reader is None:
                self._reader = threading.Thread(target=self._read_replies, daemon=True,
                                                name=f"redis-replies-{self.client_id}")
                self._reader.start()

    def _read_replies(self) -> None:
        """The one reader of this transport's reply stream; reconnects with backoff."""
        retry = RetryState(Backoff(), self._stop)
        while not self._stop.is_set():
            try:
                resp = self.client.xread({self.reply_key: self._last_reply_id},
                                         count=256, block=self.block_ms)
                if retry.attempts:
                    log.warning("reply stream reconnected to Redis after %d failure(s)",
                                retry.attempts)
                    retry.ok()
                    self._link_error = ""
                seen: list[bytes] = []
                for _stream, entries in resp or []:
                    for entry_id, fields in entries:
                        self._last_reply_id = entry_id
                        seen.append(entry_id)
                        self._deliver(fields.get(b"r", b""))
                if seen:
                    self.client.xdel(self.reply_key, *seen)
            except redis.RedisError as exc:
                self._link_error = f"Redis unreachable: {type(exc).__name__}"
                log.warning("reply stream lost Redis (%s: %s); reconnecting with backoff",
                            type(exc).__name__, exc)
                retry.failed()
            except Exception:
                log.exception("reply reader error; continuing")
                retry.failed()

    def _deliver(self, body: bytes) -> None:
        try:
            reply = decode(body, self.max_message_bytes)
        except MessageRejected as exc:
            log.warning("rejected a reply: %s", exc)
            return
        with self._lock:
            waiter = self._waiters.pop(reply.correlation_id, None)
        if waiter is None:  # its request already reported DeadlineExceeded, or a duplicate
            log.debug("late or duplicate reply to %s from %s", reply.correlation_id,
                      reply.sender)
            return
        batch, index = waiter
        batch.set(index, reply)

    # -- lifecycle ----------------------------------------------------------------------------
    def close(self) -> None:
        """Leave and drain every bound agent, stop the threads, close the connections."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            agents = list(self._consumers)
        for agent_id in agents:
            self.unbind(agent_id)
        self.membership.close()
        self._stop.set()
        if self._reader is not None:
            self._reader.join(timeout=self.block_ms / 1000 + 2.0)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()
