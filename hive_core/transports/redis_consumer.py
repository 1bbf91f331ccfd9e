"""The serving half of the Redis transport: one agent reading its own stream.

Each agent has its own stream ``{ns}:inbox:{agent}`` and its own consumer group on it, so
senders address an agent explicitly and no two agents ever compete for a message (the
shared-consumer-group routing of the system this follows lost most of its events).

The loop: XREADGROUP (BLOCK bounded, so shutdown is prompt) -> each entry handled on the
transport's worker pool -> the reply XADDed to the sender's reply stream -> XACK. An entry is
acknowledged only after its reply was written, so an agent that dies while handling leaves
it pending; on every (re)start and reconnect the loop XAUTOCLAIMs its stale pending entries
and handles them again. Handling is idempotent (stores merge by fact id), so a redelivered
store never duplicates a fact, and a duplicate reply is ignored by its receiver.

A loop that loses Redis reconnects with backoff (logged at warning) and never dies
silently; if Redis restarted empty, the group is recreated (``NOGROUP``).
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import threading
import time
from typing import Any

import redis

from hive_core.errors import MessageRejected
from hive_core.messages import Envelope, MessageType, decode, encode
from hive_core.transports.base import Handler, reply_bytes
from hive_core.transports.redis_membership import RedisKeys
from hive_core.transports.retry import Backoff, RetryState

log = logging.getLogger("hive_core.transports.redis")

GROUP = "shard"
REPLY_WRITE_DEADLINE = 30.0  # seconds to keep retrying a reply before leaving it pending
RECLAIM_INTERVAL = 30.0  # while connected, also reclaim entries idle this long (seconds)


class StreamConsumer:
    """Serves ``handler`` for ``agent`` from its stream (see module docstring)."""

    def __init__(
        self, client: redis.Redis, keys: RedisKeys, agent: str, handler: Handler,
        pool: cf.ThreadPoolExecutor, *, max_message_bytes: int, block_ms: int,
        max_inflight: int, reply_maxlen: int, reply_ttl_ms: int, drain_timeout: float,
    ) -> None:
        self.client = client
        self.keys = keys
        self.agent = agent
        self.handler = handler
        self.pool = pool
        self.stream = keys.inbox(agent)
        self.max_message_bytes = max_message_bytes
        self.block_ms = block_ms
        self.max_inflight = max_inflight
        self.reply_maxlen = reply_maxlen
        self.reply_ttl_ms = reply_ttl_ms
        self.drain_timeout = drain_timeout
        self.handled = 0  # entries answered and acknowledged
        self.reclaimed = 0  # entries taken over from a previous incarnation or a lost link
        self._inflight: set[bytes] = set()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"redis-inbox-{agent}",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    # -- the receive loop ---------------------------------------------------------------------
    def _run(self) -> None:
        retry = RetryState(Backoff(), self._stop)
        ready = False
        last_reclaim = 0.0
        while not self._stop.is_set():
            try:
                if not ready:
                    self._ensure_group()
                    self._reclaim(min_idle_ms=0)
                    last_reclaim = time.monotonic()
                    if retry.attempts:
                        log.warning("%s: reconnected to Redis after %d failed attempt(s)",
                                    self.agent, retry.attempts)
                    retry.ok()
                    ready = True
                elif time.monotonic() - last_reclaim > RECLAIM_INTERVAL:
                    self._reclaim(min_idle_ms=int(RECLAIM_INTERVAL * 1000))
                    last_reclaim = time.monotonic()
                room = self._room()
                if room == 0:
                    continue
                resp = self.client.xreadgroup(GROUP, self.agent, {self.stream: ">"},
                                              count=room, block=self.block_ms)
                for _stream, entries in resp or []:
                    for entry_id, fields in entries:
                        self._submit(entry_id, fields)
            except redis.ResponseError as exc:
                ready = False
                if "NOGROUP" in str(exc):
                    log.warning("%s: consumer group is gone (Redis restarted empty?); "
                                "recreating it", self.agent)
                    continue
                log.error("%s: Redis refused a command (%s); retrying", self.agent, exc)
                retry.failed()
            except redis.RedisError as exc:
                ready = False
                log.warning("%s: lost Redis (%s: %s); reconnecting with backoff",
                            self.agent, type(exc).__name__, exc)
                retry.failed()
            except Exception:
                ready = False
                log.exception("%s: receive loop error; retrying", self.agent)
                retry.failed()

    def _ensure_group(self) -> None:
        # From id 0: entries written before the group existed (e.g. just after Redis
        # restarted empty) are still delivered.
        try:
            self.client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _reclaim(self, min_idle_ms: int) -> None:
        """Take over pending entries idle at least ``min_idle_ms`` (ours when 0) and handle
        them, except those this process is handling right now."""
        start: Any = "0-0"
        while True:
            out = self.client.xautoclaim(self.stream, GROUP, self.agent, min_idle_ms,
                                         start_id=start, count=100)
            start, entries = out[0], out[1]
            deleted = out[2] if len(out) > 2 else []
            if deleted:
                log.error("%s: %d pending request(s) were trimmed from the stream before "
                          "they were handled (MAXLEN reached); their senders saw a deadline",
                          self.agent, len(deleted))
            for entry_id, fields in entries:
                with self._cond:
                    busy = entry_id in self._inflight
                if not busy and fields:
                    self.reclaimed += 1
                    self._submit(entry_id, fields)
            if start in (b"0-0", "0-0"):
                return

    def _room(self) -> int:
        """How many more entries may be read now (bounded in-flight work is backpressure)."""
        with self._cond:
            if len(self._inflight) >= self.max_inflight:
                self._cond.wait(self.block_ms / 1000)
            return max(0, self.max_inflight - len(self._inflight))

    def _submit(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        with self._cond:
            self._inflight.add(entry_id)
        try:
            self.pool.submit(self._work, entry_id, fields)
        except RuntimeError:  # the pool is shut down: the entry stays pending for next time
            with self._cond:
                self._inflight.discard(entry_id)
                self._cond.notify_all()

    # -- one entry ----------------------------------------------------------------------------
    def _work(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        try:
            reply_to, body = self._answer(fields)
            self._reply_and_ack(entry_id, reply_to, body)
        except Exception:
            log.exception("%s: could not answer entry %s; it stays pending and is retried",
                          self.agent, entry_id)
        finally:
            with self._cond:
                self._inflight.discard(entry_id)
                self._cond.notify_all()

    def _answer(self, fields: dict[bytes, bytes]) -> tuple[str | None, bytes]:
        reply_to = fields.get(b"reply", b"").decode("utf-8", "replace")
        if not reply_to.startswith(self.keys.reply("")):
            log.warning("%s: dropped a request with reply stream %r outside this hive",
                        self.agent, reply_to)
            reply_to = None
        msg_id = fields.get(b"id", b"").decode("utf-8", "replace")
        try:
            env = decode(fields.get(b"env", b""), self.max_message_bytes)
        except MessageRejected as exc:
            log.warning("%s: rejected a message: %s", self.agent, exc)
            refusal = Envelope(MessageType.ERROR, self.keys.hive, self.agent, "",
                               {"error": str(exc)}, correlation_id=msg_id)
            return reply_to, encode(refusal)
        misrouted = None
        if env.target != self.agent or env.hive != self.keys.hive:
            misrouted = f"message for {env.hive}/{env.target} reached {self.keys.hive}/{self.agent}"
        return reply_to, reply_bytes(self.handler, env, self.agent, self.max_message_bytes,
                                     misrouted)

    def _reply_and_ack(self, entry_id: bytes, reply_to: str | None, body: bytes) -> None:
        """Write the reply and acknowledge in one round trip, retrying through outages."""
        retry = RetryState(Backoff())
        deadline = time.monotonic() + REPLY_WRITE_DEADLINE
        while True:
            try:
                pipe = self.client.pipeline(transaction=False)
                if reply_to is not None:
                    pipe.xadd(reply_to, {"r": body}, maxlen=self.reply_maxlen, approximate=True)
                    pipe.pexpire(reply_to, self.reply_ttl_ms)
                pipe.xack(self.stream, GROUP, entry_id)
                pipe.execute()
                self.handled += 1
                return
            except redis.RedisError as exc:
                if not retry.failed(deadline):
                    log.error("%s: could not reply to %s for %.0fs (%s); the request stays "
                              "pending and is handled again after reconnect",
                              self.agent, entry_id, REPLY_WRITE_DEADLINE, exc)
                    return

    # -- shutdown -----------------------------------------------------------------------------
    def close(self) -> None:
        """Stop reading (within one BLOCK), then let entries in flight finish (bounded)."""
        self._stop.set()
        self._thread.join(timeout=self.block_ms / 1000 + 5.0)
        deadline = time.monotonic() + self.drain_timeout
        with self._cond:
            while self._inflight and time.monotonic() < deadline:
                self._cond.wait(max(0.0, deadline - time.monotonic()))
            left = len(self._inflight)
        if left:
            log.error("%s: %d request(s) still running after %.1fs; they stay pending and "
                      "are handled again when the agent restarts",
                      self.agent, left, self.drain_timeout)
