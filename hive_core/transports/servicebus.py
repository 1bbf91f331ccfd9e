"""Azure Service Bus as a :class:`~hive_core.transports.broker.Broker`.

* **Inboxes** -- one topic (``hive-graph``, or ``transport_options.topic`` / AMPLIHACK_SB_TOPIC)
  with one subscription per agent, :func:`subscription_name` ``HIVE.AGENT`` (two hives on one
  topic usually both have an ``agent_0``), created by ``claim`` if missing with a correlation
  rule on the application properties ``hive`` and ``target`` and the catch-all ``$Default``
  rule removed (:mod:`.servicebus_entities`): it sees only its agent's messages, never
  another hive's.
* **Requests** -- each envelope is compressed and split under the message limit (:mod:`.chunks`,
  parts sized to the sender's batch limit: 256 KB on Standard, 1 MB on Premium), the parts
  put on the topic in as few batch sends as fit. A target that is not live is
  ``ConnectionLost`` at once, unsent; a failed send is retried with backoff until the deadline.
* **Receiving** -- peek-lock from the agent's subscription; parts are reassembled and a
  :class:`~hive_core.transports.broker.Delivery` is handed out only for a complete body,
  holding the locked messages of all its parts. ``ack`` completes them, ``abandon`` abandons
  them (the service redelivers, and dead-letters after ``max_delivery_count``, default 10).
  Settlements are queued and done by the thread that owns the agent's receiver (the SDK's
  handlers are not thread-safe), at the latest before its next receive. A completion whose
  lock expired meanwhile (``MessageLockLostError``) is logged at warning: the message comes
  again and handling is idempotent (a duplicate reply is dropped by the asker).
* **Replies** -- a session-enabled queue (``hive-graph-replies``, ``transport_options.
  reply_queue``), created if missing; each transport instance reads the session named by its
  reply address ``HIVE.CLIENT_ID`` in receive-and-delete mode. Replies are split like requests.
* **Reconnects** -- the SDK's own retries are off (``retry_total=0``): a failed receive
  raises ``ConnectionLost`` (the BrokerTransport backs off as for Redis), and the receiver is
  recreated on the next call.
* **Liveness** comes from the hive's state store (:mod:`.azure_state`); ``claim`` holds it.

The SDK is azure.servicebus for ``sb://`` and :mod:`.azurefake.servicebus_sdk` (same calls,
same exceptions) for ``fake://`` endpoints. The connection string is never logged unredacted.
"""

from __future__ import annotations

import importlib
import logging
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, TypeVar

from azure.core.exceptions import AzureError
from azure.servicebus.exceptions import (
    MessageLockLostError,
    MessageSizeExceededError,
    MessagingEntityNotFoundError,
)

from hive_core.auth import MessageAuth
from hive_core.config import MAX_MESSAGE_BYTES
from hive_core.errors import ConfigError, ConnectionLost, MessageRejected, TransportError
from hive_core.hive_config import HiveConfig
from hive_core.redact import redact_secret
from hive_core.transports import azure_sdk, chunks
from hive_core.transports.azure_names import (
    DEFAULT_REPLY_QUEUE,
    DEFAULT_TOPIC,
    subscription_name,
)
from hive_core.transports.azure_sdk import str_properties
from hive_core.transports.azure_state import Presence, open_presence
from hive_core.transports.broker import BrokerTransport, Delivery, Outgoing
from hive_core.transports.handled_journal import journal_dir
from hive_core.transports.retry import Backoff, RetryState
from hive_core.transports.servicebus_entities import SDK_ERRORS, ServiceBusEntities
from hive_core.transports.servicebus_entities import purge as purge  # the registry's entry

log = logging.getLogger("hive_core.transports.servicebus")

DEFAULT_MAX_DELIVERY_COUNT = 10
DEFAULT_LOCK_DURATION = 60.0  # seconds a received request stays locked to its agent
PART_ROOM = 4096  # bytes of a message kept for its properties when sizing parts
SEND_BACKOFF = Backoff(base=0.02, cap=0.5)
_ENDPOINT = re.compile(r"Endpoint\s*=\s*[a-z]+://([^/;]+)", re.I)
T = TypeVar("T")


def load_sdk(connection_string: str) -> Any:
    """azure.servicebus (the few classes used), or the fake of its calls for a ``fake://``
    endpoint (azure_sdk)."""
    return azure_sdk.load_sdk(
        connection_string, "azure_service_bus",
        lambda: importlib.import_module("hive_core.transports.azurefake.servicebus_sdk"),
        _real_sdk)


def _real_sdk() -> SimpleNamespace:
    import azure.servicebus as sb
    import azure.servicebus.management as mgmt

    return SimpleNamespace(
        ServiceBusClient=sb.ServiceBusClient, ServiceBusMessage=sb.ServiceBusMessage,
        ServiceBusReceiveMode=sb.ServiceBusReceiveMode,
        ServiceBusAdministrationClient=mgmt.ServiceBusAdministrationClient,
        CorrelationRuleFilter=mgmt.CorrelationRuleFilter)


def _part(parts: chunks.Reassembler, message: Any) -> tuple[dict[str, str], int, bytes | None]:
    """A received part: its properties, its index, and the whole body once complete
    (MessageRejected or ValueError for a malformed or oversize one)."""
    props = str_properties(message.application_properties)
    raw = message.body
    index = int(props.get("part", "0"))
    body = parts.add(props.get("msg_id", ""), index, int(props.get("parts", "1")),
                     raw if isinstance(raw, bytes) else b"".join(raw))
    return props, index, body


def _close(handler: Any, what: str) -> None:
    """Close an SDK handler that may be broken already (logged, never raised)."""
    if handler is not None:
        try:
            handler.close()
        except SDK_ERRORS as exc:
            log.warning("closing a Service Bus %s failed (%s)", what, type(exc).__name__)


@dataclass(slots=True)
class _Inbox:
    """One agent's receiver, its queued settlements and its bodies being reassembled."""

    agent: str
    subscription: str
    reassembler: chunks.Reassembler
    lock: threading.Lock = field(default_factory=threading.Lock)
    receiver: Any = None
    claimed: bool = False
    # (action, receiver, message): done by whoever holds ``lock`` (see _settle_soon)
    settle: deque[tuple[str, Any, Any]] = field(default_factory=deque)
    parts: dict[str, dict[int, tuple[Any, Any]]] = field(default_factory=dict)


class ServiceBusBroker:
    """The Broker primitives over Service Bus (see the module docstring)."""

    acks_are_final = False  # a completion is queued, and may find its lock expired

    def __init__(
        self, connection_string: str, hive: str, *, presence: Presence,
        topic: str = DEFAULT_TOPIC, reply_queue: str = DEFAULT_REPLY_QUEUE,
        max_delivery_count: int = DEFAULT_MAX_DELIVERY_COUNT,
        lock_duration: float = DEFAULT_LOCK_DURATION,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        known_agents: Callable[[], Iterable[str]] | None = None,
        owns_presence: bool = False,
    ) -> None:
        self.hive = hive
        self.topic = topic
        self.reply_queue = reply_queue
        self.max_delivery_count = max_delivery_count
        self.lock_duration = lock_duration
        self.max_message_bytes = max_message_bytes
        self.presence = presence
        self._owns_presence = owns_presence
        self._known_agents = known_agents
        endpoint = _ENDPOINT.search(connection_string)
        host = endpoint.group(1) if endpoint else "?"
        self.where = redact_secret(f"Service Bus {host}/{topic}")
        self._conn = connection_string
        self.sdk = load_sdk(connection_string)
        try:
            self._client = self.sdk.ServiceBusClient.from_connection_string(
                connection_string, retry_total=0)
        except (*SDK_ERRORS, ConfigError) as exc:
            raise ConfigError(f"cannot use the Service Bus connection string "
                              f"{redact_secret(connection_string)!r}: {type(exc).__name__}: "
                              f"{redact_secret(str(exc))}") from None
        self.client_id = uuid.uuid4().hex[:16]
        self.session = f"{hive}.{self.client_id}"
        self.entities = ServiceBusEntities(
            self.sdk, connection_string, hive, topic=topic, reply_queue=reply_queue,
            max_delivery_count=max_delivery_count, lock_duration=lock_duration,
            where=self.where)
        self._inboxes: dict[str, _Inbox] = {}
        self._lock = threading.Lock()
        self._senders: dict[str, Any] = {}
        self._sender_locks = {"topic": threading.Lock(), "replies": threading.Lock()}
        self._part_bytes = chunks.DEFAULT_PART_BYTES
        self._part_sized = False
        self._reply_receiver: Any = None
        self._reply_lock = threading.Lock()
        self._reply_parts = chunks.Reassembler(max_message_bytes)

    def _lost(self, what: str, exc: BaseException) -> ConnectionLost:
        return ConnectionLost(f"{what} on {self.where} failed: {type(exc).__name__}: "
                              f"{redact_secret(str(exc))}")

    # -- membership -----------------------------------------------------------------------------
    def _inbox(self, agent: str) -> _Inbox:
        with self._lock:
            box = self._inboxes.get(agent)
            if box is None:
                box = _Inbox(agent, subscription_name(self.hive, agent),
                             chunks.Reassembler(self.max_message_bytes))
                self._inboxes[agent] = box
            return box

    def claim(self, agent: str) -> None:
        self.presence.hold(agent)  # AgentError if another live process is that agent
        box = self._inbox(agent)
        try:
            self.entities.ensure_subscription(box.subscription, agent)
        except SDK_ERRORS as exc:
            self.presence.release(agent)
            raise self._lost(f"preparing the subscription of {agent!r}", exc) from exc
        box.claimed = True

    def release(self, agent: str) -> None:
        self._inbox(agent).claimed = False
        self.presence.release(agent)
        self._settle_soon(self._inbox(agent))

    def live_members(self, candidates: Iterable[str] | None = None) -> set[str]:
        if candidates is None:
            if self._known_agents is None:
                raise ConfigError("live_members() of a Service Bus transport without the "
                                  "hive's agent list needs candidates")
            candidates = self._known_agents()
        try:
            return set(self.presence.live_members(list(candidates)))
        except (OSError, AzureError) as exc:
            raise self._lost("reading liveness", exc) from exc

    # -- sending --------------------------------------------------------------------------------
    def reply_address(self) -> str:
        try:
            self.entities.ensure_reply_queue()
        except SDK_ERRORS as exc:  # replies are retried by the answering agent
            log.warning("could not prepare the reply queue %s on %s (%s: %s)",
                        self.reply_queue, self.where, type(exc).__name__,
                        redact_secret(str(exc)))
        return self.session

    def _sender(self, which: str) -> Any:
        sender = self._senders.get(which)
        if sender is None:
            if which == "topic":
                sender = self._client.get_topic_sender(topic_name=self.topic)
            else:
                sender = self._client.get_queue_sender(queue_name=self.reply_queue)
            self._senders[which] = sender
        return sender

    def _drop_sender(self, which: str) -> None:
        _close(self._senders.pop(which, None), "sender")

    def _with_sender(self, which: str, call: Callable[[Any], T], deadline: float) -> T:
        """``call(sender)``, retried on a fresh sender with backoff until ``deadline``."""
        retry = RetryState(SEND_BACKOFF)
        while True:
            try:
                with self._sender_locks[which]:
                    return call(self._sender(which))
            except MessageSizeExceededError:
                raise  # retrying cannot help
            except MessagingEntityNotFoundError as exc:
                raise TransportError(f"{self.where}: the {which} entity is missing: "
                                     f"{redact_secret(str(exc))}") from None
            except SDK_ERRORS as exc:
                with self._sender_locks[which]:
                    self._drop_sender(which)
                if not retry.failed(deadline):
                    raise self._lost(f"sending to {which}", exc) from exc

    def _send_batches(self, which: str, messages: Sequence[tuple[int, Any]], deadline: float,
                      errors: dict[int, TransportError]) -> None:
        """Send ``(owner, message)`` pairs in as few batches as fit; failures by owner."""
        def new_batch() -> Any:
            return self._with_sender(which, lambda s: s.create_message_batch(), deadline)

        batch: Any = None
        owners: list[int] = []
        for pos, (owner, message) in enumerate(messages):
            if owner in errors:
                continue
            try:
                batch = batch if batch is not None else new_batch()
                try:
                    batch.add_message(message)
                except MessageSizeExceededError:  # full: send it, start the next one
                    self._send_batch(which, batch, owners, deadline, errors)
                    batch, owners = new_batch(), []
                    batch.add_message(message)
            except MessageSizeExceededError:  # too large even alone
                errors[owner] = MessageRejected("a message part does not fit a "
                                                f"{batch.max_size_in_bytes}-byte batch")
                continue
            except TransportError as exc:  # no batch could be made: the rest is not sent
                for later, _ in messages[pos:]:
                    errors.setdefault(later, exc)
                return
            owners.append(owner)
        if batch is not None:
            self._send_batch(which, batch, owners, deadline, errors)

    def _send_batch(self, which: str, batch: Any, owners: list[int], deadline: float,
                    errors: dict[int, TransportError]) -> None:
        if owners:
            try:
                self._with_sender(which, lambda s: s.send_messages(batch), deadline)
            except TransportError as exc:
                for owner in owners:
                    errors.setdefault(owner, exc)

    def _split(self, body: bytes, deadline: float) -> list[bytes]:
        """Parts sized to the sender's batch limit (known after its first batch)."""
        if not self._part_sized:
            limit = self._with_sender("topic", lambda s: s.create_message_batch(),
                                      deadline).max_size_in_bytes
            self._part_bytes = max(1024, min(chunks.DEFAULT_PART_BYTES, limit - PART_ROOM))
            self._part_sized = True
        return chunks.split(body, self._part_bytes)

    def _messages(self, owner: int, body: bytes, props: dict[str, Any], msg_id: str,
                  session_id: str | None, deadline: float) -> list[tuple[int, Any]]:
        parts = self._split(body, deadline)
        return [(owner, self.sdk.ServiceBusMessage(
            data, application_properties={**props, "msg_id": msg_id, "part": n,
                                          "parts": len(parts)},
            session_id=session_id, message_id=f"{msg_id}.{n}"))
            for n, data in enumerate(parts)]

    def send(self, items: Sequence[Outgoing], deadline: float) -> list[TransportError | None]:
        errors: dict[int, TransportError] = {}
        try:
            live = self.live_members({item.target for item in items})
        except ConnectionLost as exc:
            return [exc] * len(items)
        messages: list[tuple[int, Any]] = []
        try:
            for i, item in enumerate(items):
                if item.target not in live:
                    errors[i] = ConnectionLost(f"no live agent {item.target!r} in hive "
                                               f"{self.hive!r} on {self.where}")
                    continue
                props = {"hive": self.hive, "target": item.target, "reply_to": item.reply_to}
                messages += self._messages(i, item.body, props, item.msg_id, None, deadline)
        except TransportError as exc:
            return [errors.get(i, exc) for i in range(len(items))]
        self._send_batches("topic", messages, deadline, errors)
        return [errors.get(i) for i in range(len(items))]

    def _send_reply(self, reply_to: str, body: bytes) -> None:
        """One attempt (the answering Inbox retries through outages)."""
        now = time.monotonic()
        messages = self._messages(0, body, {"hive": self.hive}, uuid.uuid4().hex, reply_to,
                                  now)
        errors: dict[int, TransportError] = {}
        self._send_batches("replies", messages, now, errors)
        if 0 in errors:
            raise errors[0]

    # -- receiving ------------------------------------------------------------------------------
    def receive(self, agent: str, max_count: int, timeout: float) -> list[Delivery]:
        box = self._inbox(agent)
        if not box.claimed:  # released: its messages wait for the next incarnation
            with box.lock:
                self._flush(box)
            time.sleep(timeout)
            return []
        with box.lock:
            self._flush(box)
            try:
                if box.receiver is None:
                    box.receiver = self._client.get_subscription_receiver(
                        self.topic, box.subscription,
                        receive_mode=self.sdk.ServiceBusReceiveMode.PEEK_LOCK,
                        max_wait_time=timeout)
                receiver = box.receiver
                messages = receiver.receive_messages(max_message_count=max_count,
                                                     max_wait_time=timeout)
            except SDK_ERRORS as exc:
                _close(box.receiver, "receiver")
                box.receiver = None
                raise self._lost(f"receiving for {agent!r}", exc) from exc
            return self._deliveries(box, receiver, messages)

    def _deliveries(self, box: _Inbox, receiver: Any, messages: list[Any]) -> list[Delivery]:
        out: list[Delivery] = []
        for message in messages:
            try:
                props, index, body = _part(box.reassembler, message)
            except (MessageRejected, ValueError) as exc:
                msg_id = str_properties(message.application_properties).get("msg_id", "")
                log.error("%s: dead-lettering message %r: %s", box.agent, msg_id, exc)
                held = box.parts.pop(msg_id, {})
                for rcv, msg in [*held.values(), (receiver, message)]:
                    box.settle.append(("dead_letter", rcv, msg))
                continue
            msg_id = props.get("msg_id", "")
            box.parts.setdefault(msg_id, {})[index] = (receiver, message)
            if body is None:
                continue  # more parts to come
            handle = list(box.parts.pop(msg_id).values())
            attempt = max(max(1, int(m.delivery_count or 0)) for _, m in handle)
            # The key is the service's sequence numbers, which no sender chooses: a copy of a
            # request is a new key, its redelivery the same (hive_core.transports.broker).
            key = tuple(sorted(int(m.sequence_number) for _, m in handle))
            out.append(Delivery(key=key, body=body, msg_id=msg_id, handle=handle,
                                reply_to=self._reply_to(box.agent, props.get("reply_to")),
                                attempt=attempt))
        return out

    def _reply_to(self, agent: str, reply_to: str | None) -> str | None:
        if reply_to and reply_to.startswith(f"{self.hive}."):
            return reply_to
        log.warning("%s: dropped the reply address %r of a request: outside this hive",
                    agent, reply_to)
        return None

    def ack(self, agent: str, delivery: Delivery, reply: bytes | None) -> None:
        """Send the reply to the asker's session, then complete the request's messages."""
        if reply is not None and delivery.reply_to is not None:
            self._send_reply(delivery.reply_to, reply)
        self._settle_soon(self._inbox(agent), "complete", [delivery])

    def abandon(self, agent: str, delivery: Delivery) -> None:
        self._settle_soon(self._inbox(agent), "abandon", [delivery])

    def _settle_soon(self, box: _Inbox, action: str = "",
                     deliveries: Sequence[Delivery] = ()) -> None:
        """Queue ``action`` for the deliveries' messages; settle now if the receiver is free,
        else its receive loop does it next (once released, the loop is stopping: wait)."""
        box.settle.extend((action, rcv, msg) for d in deliveries for rcv, msg in d.handle)
        got = box.lock.acquire(blocking=False) if box.claimed else box.lock.acquire(timeout=5.0)
        if got:
            try:
                self._flush(box)
            finally:
                box.lock.release()
        elif not box.claimed:
            log.warning("%s: its receiver stayed busy after release; %d settlement(s) wait "
                        "for close or lock expiry", box.agent, len(box.settle))

    def _flush(self, box: _Inbox) -> None:
        """Do the queued settlements (the caller holds ``box.lock``)."""
        while box.settle:
            action, receiver, message = box.settle.popleft()
            try:
                if action == "dead_letter":
                    receiver.dead_letter_message(message, reason="rejected",
                                                 error_description="malformed or oversize")
                else:
                    getattr(receiver, f"{action}_message")(message)
            except MessageLockLostError:
                log.warning("%s: the lock of a message expired before it could be %sd; it is "
                            "delivered again (handling is idempotent)", box.agent, action)
            except SDK_ERRORS as exc:
                log.warning("%s: could not %s a message (%s: %s); it is delivered again "
                            "after its lock expires", box.agent, action, type(exc).__name__,
                            redact_secret(str(exc)))

    def receive_replies(self, max_count: int, timeout: float) -> list[bytes]:
        with self._reply_lock:
            try:
                if self._reply_receiver is None:
                    self.entities.ensure_reply_queue()
                    self._reply_receiver = self._client.get_queue_receiver(
                        self.reply_queue, session_id=self.session,
                        receive_mode=self.sdk.ServiceBusReceiveMode.RECEIVE_AND_DELETE,
                        max_wait_time=timeout)
                messages = self._reply_receiver.receive_messages(max_message_count=max_count,
                                                                 max_wait_time=timeout)
            except SDK_ERRORS as exc:
                _close(self._reply_receiver, "receiver")
                self._reply_receiver = None
                raise self._lost("receiving replies", exc) from exc
            bodies: list[bytes] = []
            for message in messages:
                try:
                    body = _part(self._reply_parts, message)[2]
                except (MessageRejected, ValueError) as exc:
                    log.warning("dropped a reply part: %s", exc)
                    continue
                if body is not None:
                    bodies.append(body)
            return bodies

    # -- lifecycle ------------------------------------------------------------------------------
    def close(self) -> None:
        """Settle what is queued, release the agents served here, close every handler."""
        with self._lock:
            boxes = list(self._inboxes.values())
        for box in boxes:
            if box.claimed:
                self.release(box.agent)  # settles what is queued
            with box.lock:  # its receive loop has stopped (BrokerTransport unbound it)
                self._flush(box)
                _close(box.receiver, "receiver")
                box.receiver = None
        with self._reply_lock:
            _close(self._reply_receiver, "receiver")
            self._reply_receiver = None
        for which, lock in self._sender_locks.items():
            with lock:
                self._drop_sender(which)
        self.entities.close()
        _close(self._client, "client")
        if self._owns_presence:
            self.presence.close()


def open_transport(config: HiveConfig, auth: MessageAuth | None = None) -> BrokerTransport:
    """The ``azure_service_bus`` entry of hive_core.transports.registry."""
    if not config.connection_string:
        raise ConfigError("transport 'azure_service_bus' needs a connection string")
    opts = config.transport_options
    presence = open_presence(config)
    try:
        broker = ServiceBusBroker(
            config.connection_string, config.name, presence=presence, owns_presence=True,
            topic=opts.get("topic") or DEFAULT_TOPIC,
            reply_queue=opts.get("reply_queue") or DEFAULT_REPLY_QUEUE,
            max_delivery_count=int(opts.get("max_delivery_count")
                                   or DEFAULT_MAX_DELIVERY_COUNT),
            known_agents=config.agent_names)
    except BaseException:
        presence.close()
        raise
    return BrokerTransport(broker, auth=auth, replay_dir=journal_dir(config))
