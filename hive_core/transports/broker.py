"""BrokerTransport: the ShardTransport of every message broker, over a few primitives.

As in kombu, a broker (Redis Streams, Event Hubs, Service Bus) implements only what differs
between brokers -- the :class:`Broker` protocol: claim and release an agent's inbox, send a
batch to agents' inboxes, receive a batch from an inbox with a timeout, acknowledge (with the
reply to the asker, in one round trip where the broker can), receive replies, say who is
live, close. Everything a
request/reply hive needs on top is written once, here:

* **correlation**: a reply finds the request waiting for it by ``correlation_id``; a late or
  duplicate reply is dropped (its request already reported);
* **one deadline per request**: every item of a scatter/gather shares it; unanswered items
  become ``DeadlineExceeded``, items the broker could not deliver ``ConnectionLost`` at once;
* **ack after handling**: a delivery is acknowledged only after its reply was sent, so an
  agent that dies mid-request leaves it to be redelivered (handling is idempotent: stores
  merge by fact id, a duplicate reply is ignored);
* **redelivery**: a delivery the broker hands out again while it is still being handled is
  not started twice; a reply that cannot be sent within :data:`REPLY_WRITE_DEADLINE` is
  abandoned to the broker's redelivery;
* **authentication** (hive_core.auth): every request and reply is signed and verified
  before it is parsed; a delivery that fails is acknowledged without an answer (dropped and
  counted, never handled). What an agent handled is recorded before it is acknowledged
  (hive_core.transports.handled_journal, on disk when the transport has a ``replay_dir``),
  so a copy of it is refused as replayed in this incarnation and the next; the same broker
  entry handed out again is acknowledged without running. A delivery whose handling did not
  complete releases its nonce, so the broker's redelivery -- minutes later, maybe to a new
  process -- is accepted. The broker's own marks of a redelivery (a delivery count, a
  reclaim) decide nothing: a broker writer can set them;
* **drain on close**: unbinding stops receiving, then lets requests in flight finish
  (bounded), the rest stay with the broker for the next incarnation;
* **bounded work**: at most ``max_inflight`` deliveries per agent are read ahead;
* **reconnects**: a receive loop that loses its broker backs off (hive_core.transports.retry)
  and keeps going, logged at warning, never dying silently.

Unix sockets do not fit this shape: a socket connection *is* the correlation (the reply comes
back on it) and there is no broker to hold a message for redelivery, so
:mod:`hive_core.transports.unix` keeps its own connection-based request loop.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import threading
import time
import uuid
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from hive_core.auth import BROKER_WINDOW, AuthRejected, MessageAuth, Redelivered, ephemeral
from hive_core.config import MAX_MESSAGE_BYTES
from hive_core.errors import (
    ConfigError,
    ConnectionLost,
    DeadlineExceeded,
    MessageRejected,
    TransportError,
)
from hive_core.messages import Envelope, MessageType, decode
from hive_core.transports.base import Handler, Reply, check_request, reply_bytes, seal, unseal
from hive_core.transports.handled_journal import HandledJournal, Stamp, key_digest, stamp
from hive_core.transports.notices import Notices
from hive_core.transports.retry import Backoff, RetryState

log = logging.getLogger("hive_core.transports.broker")

RECEIVE_TIMEOUT = 0.25  # seconds per receive call: a closing transport stops within this
REPLY_WRITE_DEADLINE = 30.0  # seconds to keep retrying a reply before abandoning it
DRAIN_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One request on its way to an agent's inbox.

    ``resigned`` gives the same request signed afresh (a new nonce). A broker that sends
    again after a failure that may have come after the message was stored (a connection
    lost while waiting for the broker's answer) sends that instead: the same bytes twice
    would reach the agent as a replay of the first -- refused, and counted as an attack in
    its status. Signed afresh, the agent may run it twice (handling is idempotent; the
    second reply finds no one waiting and is dropped).
    """

    target: str
    msg_id: str
    body: bytes  # the encoded envelope
    reply_to: str  # the asker's reply address (Broker.reply_address)
    resigned: Callable[[], bytes] | None = None

    def again(self) -> bytes:
        """The body for a send after an uncertain failure (see the class docstring)."""
        return self.body if self.resigned is None else self.resigned()


@dataclass(slots=True)
class Delivery:
    """One message received from an inbox; ``key`` identifies it across redeliveries."""

    key: Hashable
    body: bytes
    reply_to: str | None  # None: the broker refused the address (logged by the broker)
    msg_id: str = ""
    handle: Any = None  # what the broker needs to ack or abandon it
    attempt: int = 1  # how many times the broker says it delivered it (counters only)
    verified: bool = False  # its signature was accepted (its nonce claimed) here
    fetched_at: float = 0.0  # monotonic time the receive call that got it started
    stamp: Stamp | None = None  # what the agent's record keeps of it (signed ones)


class Broker(Protocol):
    """The primitives a message broker implements (see the module docstring)."""

    hive: str
    where: str  # the broker's location for messages, secrets redacted
    # True: when ``ack`` returns, the broker will not hand the delivery out again by itself
    # (Redis XACK); a later copy of the same entry was put back by hand.
    acks_are_final: bool

    def claim(self, agent: str) -> None:
        """Make ``agent``'s inbox ready and mark it live. AgentError if another live
        process serves that name; TransportError if the broker cannot be reached."""
        ...

    def release(self, agent: str) -> None:
        """Mark ``agent`` gone (senders get ConnectionLost from now on)."""
        ...

    def reply_address(self) -> str:
        """This transport instance's reply address (created on first use)."""
        ...

    def send(self, items: Sequence[Outgoing], deadline: float) -> list[TransportError | None]:
        """Put each item in its target's inbox; per item None (sent) or why it was not
        (ConnectionLost for a target that is not live). Retries until ``deadline``."""
        ...

    def receive(self, agent: str, max_count: int, timeout: float) -> list[Delivery]:
        """Up to ``max_count`` deliveries for ``agent``, waiting at most ``timeout`` s.
        Redeliveries (of a previous incarnation, or after a lost connection) come here too.
        Raises TransportError when the broker is unreachable (the caller backs off)."""
        ...

    def ack(self, agent: str, delivery: Delivery, reply: bytes | None) -> None:
        """The delivery is handled: send ``reply`` (an encoded envelope) to its reply
        address when it has one, then never deliver it again -- in one round trip where the
        broker can. Raises TransportError when either step failed (the caller retries; a
        reply sent twice is dropped by its asker)."""
        ...

    def abandon(self, agent: str, delivery: Delivery) -> None:
        """Handling failed: let the broker deliver it again (or dead-letter it)."""
        ...

    def receive_replies(self, max_count: int, timeout: float) -> list[bytes]:
        """Encoded reply envelopes sent to this instance's reply address."""
        ...

    def live_members(self, candidates: Iterable[str] | None = None) -> set[str]: ...

    def close(self) -> None: ...


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


@dataclass(slots=True)
class InboxCounters:
    """What one agent's inbox has done (tests and benchmarks read these)."""

    handled: int = 0  # deliveries answered and acknowledged
    redelivered: int = 0  # deliveries the broker handed out more than once
    abandoned: int = 0  # deliveries left to the broker after a failure
    inflight: set[Hashable] = field(default_factory=set)


class Inbox:
    """One bound agent: its receive loop, its requests in flight (see module docstring)."""

    def __init__(self, transport: BrokerTransport, agent: str, handler: Handler) -> None:
        self.t = transport
        self.broker = transport.broker
        self.agent = agent
        self.handler = handler
        self.counters = InboxCounters()
        self.journal = transport.open_journal(agent)
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"inbox-{agent}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        retry = RetryState(self.t.backoff, self._stop)
        while not self._stop.is_set():
            room = self._room()
            if room == 0:
                continue
            fetched_at = time.monotonic()
            try:
                deliveries = self.broker.receive(self.agent, room, self.t.receive_timeout)
                if retry.attempts:
                    log.warning("%s: reconnected to %s after %d failure(s)", self.agent,
                                self.broker.where, retry.attempts)
                    retry.ok()
            except Exception as exc:  # a lost broker: back off and try again
                log.warning("%s: receiving from %s failed (%s: %s); retrying with backoff",
                            self.agent, self.broker.where, type(exc).__name__, exc)
                retry.failed()
                continue
            for delivery in deliveries:
                delivery.fetched_at = fetched_at
                self._submit(delivery)

    def _room(self) -> int:
        """How many more deliveries may be read now (bounded in-flight work)."""
        with self._cond:
            if len(self.counters.inflight) >= self.t.max_inflight:
                self._cond.wait(self.t.receive_timeout)
            return max(0, self.t.max_inflight - len(self.counters.inflight))

    def _submit(self, delivery: Delivery) -> None:
        with self._cond:
            if delivery.key in self.counters.inflight:  # redelivered while still handled
                return
            self.counters.inflight.add(delivery.key)
            if delivery.attempt > 1:
                self.counters.redelivered += 1
        try:
            self.t.pool.submit(self._work, delivery)
        except RuntimeError:  # the pool is shut down: the broker keeps it for next time
            self._done(delivery)

    def _done(self, delivery: Delivery) -> None:
        with self._cond:
            self.counters.inflight.discard(delivery.key)
            self._cond.notify_all()

    def _work(self, delivery: Delivery) -> None:
        try:
            body = self._answer(delivery)
            if delivery.verified:  # on record before the broker may forget it
                self.journal.handled(delivery.stamp)
            if self._ack(delivery, body):
                if delivery.verified and self.broker.acks_are_final:
                    self.journal.confirmed(delivery.stamp)
                if body is not None:  # None: dropped unanswered, not handled
                    with self._cond:
                        self.counters.handled += 1
            else:
                self._abandon(delivery)
        except Exception:
            log.exception("%s: could not answer %s; left to the broker's redelivery",
                          self.agent, delivery.key)
            self._abandon(delivery)
        finally:
            self._done(delivery)

    def _answer(self, delivery: Delivery) -> bytes | None:
        """The signed reply to ``delivery``; None drops it unanswered (too large to verify,
        or it failed authentication: nothing it says, its reply address included, is
        trusted)."""
        limit = self.t.max_message_bytes
        auth = self.t.auth
        try:
            if len(delivery.body) > limit:
                raise MessageRejected(f"message of {len(delivery.body)} bytes exceeds the "
                                      f"{limit}-byte limit")
            plain, nonce, sent_ms = auth.open(delivery.body, lambda: self.journal.is_redelivery(
                stamp(delivery.key, delivery.body), delivery.fetched_at))
        except Redelivered:
            log.info("%s: %s was handled here already; acknowledged without running it "
                     "again", self.agent, delivery.key)
            return None
        except MessageRejected as exc:  # anyone who can write to the broker can flood this
            reason = exc.reason if isinstance(exc, AuthRejected) else "oversize"
            self.t.notices.warn(f"dropped:{reason}", "%s: dropped a message (%s): %s",
                                self.agent, reason, exc)
            return None
        delivery.verified = True
        if nonce:  # empty: a policy that does not sign (a benchmark's), nothing to record
            delivery.stamp = Stamp(key_digest(delivery.key), nonce, sent_ms / 1000)
        try:
            env = decode(plain, limit)
        except MessageRejected as exc:  # authentic but malformed: say so to its sender
            log.warning("%s: rejected a message: %s", self.agent, exc)
            refusal = Envelope(MessageType.ERROR, self.broker.hive, self.agent, "",
                               {"error": str(exc)}, correlation_id=delivery.msg_id)
            return seal(auth, refusal, limit)
        misrouted = None
        if env.target != self.agent or env.hive != self.broker.hive:
            misrouted = (f"message for {env.hive}/{env.target} reached "
                         f"{self.broker.hive}/{self.agent}")
        return reply_bytes(self.handler, env, self.agent, limit, auth, misrouted)

    def _ack(self, delivery: Delivery, body: bytes | None) -> bool:
        """Reply and acknowledge, retrying through outages up to REPLY_WRITE_DEADLINE."""
        reply = body if delivery.reply_to is not None else None  # None: refused address
        retry = RetryState(self.t.backoff, self._stop)
        deadline = time.monotonic() + REPLY_WRITE_DEADLINE
        while True:
            try:
                self.broker.ack(self.agent, delivery, reply)
                return True
            except Exception as exc:
                if not retry.failed(deadline):
                    log.error("%s: could not reply to %s for %.0fs (%s: %s); left to the "
                              "broker's redelivery", self.agent, delivery.key,
                              REPLY_WRITE_DEADLINE, type(exc).__name__, exc)
                    return False

    def _abandon(self, delivery: Delivery) -> None:
        with self._cond:
            self.counters.abandoned += 1
        if delivery.verified:  # its redelivery is not a replay
            self.journal.released(delivery.stamp)
            self.t.auth.release(delivery.body)
        try:
            self.broker.abandon(self.agent, delivery)
        except Exception as exc:  # redelivered after its lock/visibility expires anyway
            log.warning("%s: could not abandon %s (%s); the broker redelivers it later",
                        self.agent, delivery.key, exc)

    def close(self) -> None:
        """Stop receiving (within one receive timeout), then drain (bounded)."""
        self._stop.set()
        self._thread.join(timeout=self.t.receive_timeout + 5.0)
        deadline = time.monotonic() + self.t.drain_timeout
        with self._cond:
            while self.counters.inflight and time.monotonic() < deadline:
                self._cond.wait(max(0.0, deadline - time.monotonic()))
            left = len(self.counters.inflight)
        if left:
            log.error("%s: %d request(s) still running after %.1fs; the broker redelivers "
                      "them when the agent restarts", self.agent, left, self.t.drain_timeout)
        self.journal.close()  # a request finishing later is not acknowledged (not recorded)


class BrokerTransport:
    """ShardTransport over a :class:`Broker` (see the module docstring)."""

    def __init__(
        self, broker: Broker, *, max_message_bytes: int = MAX_MESSAGE_BYTES,
        max_workers: int = 16, receive_timeout: float = RECEIVE_TIMEOUT,
        drain_timeout: float = DRAIN_TIMEOUT, backoff: Backoff | None = None,
        auth: MessageAuth | None = None, replay_dir: Path | None = None,
    ) -> None:
        self.broker = broker
        # Where each bound agent records what it handled (None: in memory, this process only).
        self.replay_dir = replay_dir
        # The hive's policy (registry.open_transport); without one, this process's own key.
        self.auth = auth if auth is not None else ephemeral(BROKER_WINDOW)
        self.max_message_bytes = max_message_bytes
        self.max_inflight = max_workers * 2
        self.receive_timeout = receive_timeout
        self.drain_timeout = drain_timeout
        self.backoff = backoff or Backoff()
        # Warnings a stranger can provoke (forged or malformed messages), rate-limited.
        self.notices = Notices(log)
        self.client_id = uuid.uuid4().hex[:16]
        self.pool = cf.ThreadPoolExecutor(max_workers=max_workers,
                                          thread_name_prefix="broker-handler")
        self._inboxes: dict[str, Inbox] = {}
        self._waiters: dict[str, tuple[_Batch, int]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reader: threading.Thread | None = None
        self._link_error = ""
        self._closed = False

    @property
    def hive(self) -> str:
        return self.broker.hive

    # -- serving ------------------------------------------------------------------------------
    def bind(self, agent_id: str, handler: Handler) -> None:
        with self._lock:
            if self._closed:
                raise ConnectionLost("the transport is closed")
            if agent_id in self._inboxes:
                raise ConfigError(f"{agent_id!r} is already bound on this transport")
        self.broker.claim(agent_id)
        try:  # after the claim: no other live process writes this agent's record
            inbox = Inbox(self, agent_id, handler)
        except BaseException:
            self.broker.release(agent_id)
            raise
        with self._lock:
            self._inboxes[agent_id] = inbox
        inbox.start()

    def unbind(self, agent_id: str) -> None:
        """Leave (senders get ConnectionLost from now on), then finish requests in flight."""
        with self._lock:
            inbox = self._inboxes.pop(agent_id, None)
        if inbox is None:
            return
        try:
            self.broker.release(agent_id)
        except Exception as exc:
            log.warning("%s: could not leave cleanly (%s); its liveness expires on its own",
                        agent_id, exc)
        inbox.close()

    def open_journal(self, agent_id: str) -> HandledJournal:
        """``agent_id``'s record of handled deliveries, its nonces given to this policy."""
        journal = HandledJournal(self.replay_dir, agent_id, self.auth.window,
                                 clock=self.auth.clock, max_entries=self.auth.guard.max_nonces)
        journal.seed(self.auth.guard)
        return journal

    def inbox(self, agent_id: str) -> InboxCounters:
        """The counters of ``agent_id``'s inbox here (tests and benchmarks)."""
        with self._lock:
            return self._inboxes[agent_id].counters

    def live_members(self, candidates: Iterable[str] | None = None) -> set[str]:
        """Agents (of ``candidates``) that are live now: the Liveness protocol of
        hive_core.membership.liveness."""
        return self.broker.live_members(candidates)

    # -- requesting ---------------------------------------------------------------------------
    def request(self, envelopes: Sequence[Envelope], timeout: float) -> list[Reply]:
        deadline = check_request(self._closed, timeout)
        self._start_reader()
        reply_to = self.broker.reply_address()
        batch = _Batch(len(envelopes))
        outgoing: list[tuple[int, Outgoing]] = []
        for i, env in enumerate(envelopes):
            try:
                body = seal(self.auth, env, self.max_message_bytes)
            except MessageRejected as exc:
                batch.set(i, exc)
                continue
            outgoing.append((i, Outgoing(env.target, env.msg_id, body, reply_to,
                                         partial(seal, self.auth, env,
                                                 self.max_message_bytes))))
        with self._lock:  # registered before sending, so a fast reply is never missed
            for i, item in outgoing:
                self._waiters[item.msg_id] = (batch, i)
        try:
            if outgoing:
                sent = self.broker.send([item for _, item in outgoing], deadline)
                for (i, _), error in zip(outgoing, sent, strict=True):
                    if error is not None:
                        batch.set(i, error)
            batch.wait(deadline)
        finally:
            with self._lock:
                for _, item in outgoing:
                    self._waiters.pop(item.msg_id, None)
        link = f" (replies: {self._link_error})" if self._link_error else ""
        return [
            r if r is not None else DeadlineExceeded(
                f"{env.target} did not answer within {timeout:g}s{link}")
            for r, env in zip(batch.results, envelopes, strict=True)
        ]

    # -- replies ------------------------------------------------------------------------------
    def _start_reader(self) -> None:
        with self._lock:
            if self._reader is None:
                self._reader = threading.Thread(target=self._read_replies, daemon=True,
                                                name=f"replies-{self.client_id}")
                self._reader.start()

    def _read_replies(self) -> None:
        """The one reader of this instance's replies; reconnects with backoff."""
        retry = RetryState(self.backoff, self._stop)
        while not self._stop.is_set():
            try:
                bodies = self.broker.receive_replies(256, self.receive_timeout)
                if retry.attempts:
                    log.warning("replies from %s flow again after %d failure(s)",
                                self.broker.where, retry.attempts)
                    retry.ok()
                    self._link_error = ""
            except Exception as exc:
                self._link_error = f"{type(exc).__name__}"
                log.warning("reading replies from %s failed (%s: %s); retrying with backoff",
                            self.broker.where, type(exc).__name__, exc)
                retry.failed()
                continue
            for body in bodies:
                self._deliver(body)

    def _deliver(self, body: bytes) -> None:
        try:
            reply = unseal(self.auth, body, self.max_message_bytes, reply=True)
        except MessageRejected as exc:  # an unauthenticated one is counted by the policy
            reason = exc.reason if isinstance(exc, AuthRejected) else "malformed"
            self.notices.warn(f"reply:{reason}", "rejected a reply (%s): %s", reason, exc)
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
        """Leave and drain every bound agent, stop the reply reader, close the broker."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            agents = list(self._inboxes)
        for agent_id in agents:
            self.unbind(agent_id)
        self._stop.set()
        if self._reader is not None:
            self._reader.join(timeout=self.receive_timeout + 2.0)
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.broker.close()
