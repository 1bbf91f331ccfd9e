"""A fake of the azure-servicebus 7.x sync calls the Service Bus transport makes.

Same class names and call signatures as ``azure.servicebus`` (and its ``management``
module), so :mod:`hive_core.transports.servicebus` runs the same code against the fake and
against Azure; failures raise the *real* SDK's exception classes (``ServiceBusConnectionError``,
``MessageLockLostError``, ``MessagingEntityNotFoundError``, ``MessageSizeExceededError``,
azure.core's ``ResourceNotFoundError``/``ResourceExistsError`` from the administration
client), so the transport catches the same exceptions in both cases. The real
``ServiceBusMessage``, ``ServiceBusReceiveMode`` and ``CorrelationRuleFilter`` are reused.

What the fake reproduces on purpose (see :mod:`.namespace`): peek-lock with expiring locks
and a delivery count, dead-lettering after the max delivery count, the 1 MB batch limit
(``add_message`` raises ``MessageSizeExceededError`` like the real batch), a receiver broken
by a dropped link (it stays broken: a new receiver is needed, and settling a message through
the broken one fails with ``MessageLockLostError``), and received application properties
with *bytes* keys and string values, as the real AMQP client delivers them.

Known limits of the fake: a subscription takes one correlation rule, fixed once created
(``create_subscription`` is completed by ``create_rule``; ``delete_rule("$Default")`` is
then a no-op); queue options other than sessions (time to live, ...) are accepted and
ignored; topics are implicit (one exists once it has a subscription; sending to a topic
without one fails with ``MessagingEntityNotFoundError``); deleting a subscription deletes
its messages with it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.servicebus import ServiceBusMessage, ServiceBusReceiveMode
from azure.servicebus.exceptions import (
    MessageLockLostError,
    MessageSizeExceededError,
    MessagingEntityNotFoundError,
    ServiceBusConnectionError,
    ServiceBusError,
)
from azure.servicebus.management import CorrelationRuleFilter

from hive_core.transports.azurefake.namespace import (
    MAX_BATCH_BYTES,
    FakeServiceError,
    event_size,
)
from hive_core.transports.azurefake.server import namespace

__all__ = ["CorrelationRuleFilter", "ServiceBusAdministrationClient", "ServiceBusClient",
           "ServiceBusMessage", "ServiceBusMessageBatch", "ServiceBusReceiveMode"]

_MESSAGE_ID = "x-fake-message-id"  # carries message_id through the namespace (stripped)
_LOCAL = threading.local()


def _raise(exc: FakeServiceError) -> None:
    """The real SDK exception for a refusal of the fake service."""
    message = str(exc)
    if exc.kind == "connection_lost":
        raise ServiceBusConnectionError(message=message) from None
    if exc.kind == "lock_lost":
        raise MessageLockLostError(message=message) from None
    if exc.kind == "entity_not_found":
        raise MessagingEntityNotFoundError(message=message) from None
    if exc.kind == "message_size":
        raise MessageSizeExceededError(message=message) from None
    raise ServiceBusError(message) from None


@contextmanager
def _mapped() -> Iterator[None]:
    """Fake refusals and a lost fake server as the real SDK's exceptions."""
    try:
        yield
    except FakeServiceError as exc:
        _raise(exc)
    except (EOFError, ConnectionError, BrokenPipeError) as exc:  # the fake server went away
        raise ServiceBusConnectionError(message=f"fake namespace unreachable: {exc}") from None


def _ns(conn_str: str) -> Any:
    """The namespace (or this thread's proxy of it: manager proxies are per thread)."""
    cache: dict[str, Any] = _LOCAL.__dict__.setdefault("namespaces", {})
    if conn_str not in cache:
        with _mapped():
            cache[conn_str] = namespace(conn_str)
    return cache[conn_str]


def _body(message: ServiceBusMessage) -> bytes:
    body = message.body
    return body if isinstance(body, bytes) else b"".join(body)


def _wire(message: ServiceBusMessage) -> tuple[bytes, dict[str, Any], str | None]:
    props = {(k.decode() if isinstance(k, bytes) else str(k)): v
             for k, v in (message.application_properties or {}).items()}
    if message.message_id is not None:
        props[_MESSAGE_ID] = str(message.message_id)
    return _body(message), props, message.session_id


class ServiceBusMessageBatch:
    """Messages for one send, refused past the size limit as the real batch does."""

    def __init__(self, max_size_in_bytes: int) -> None:
        self.max_size_in_bytes = max_size_in_bytes
        self.messages: list[tuple[bytes, dict[str, Any], str | None]] = []
        self.size_in_bytes = 0

    def add_message(self, message: ServiceBusMessage) -> None:
        wire = _wire(message)
        size = event_size(wire[0], wire[1])
        if self.size_in_bytes + size > self.max_size_in_bytes:
            raise MessageSizeExceededError(
                message=f"ServiceBusMessageBatch has reached its size limit: "
                        f"{self.max_size_in_bytes}")
        self.messages.append(wire)
        self.size_in_bytes += size

    def __len__(self) -> int:
        return len(self.messages)


class ServiceBusSender:
    """A sender to a topic or a queue."""

    def __init__(self, conn_str: str, entity: str) -> None:
        self._conn = conn_str
        self.entity_name = entity
        self._closed = False

    def create_message_batch(self, max_size_in_bytes: int | None = None
                             ) -> ServiceBusMessageBatch:
        if max_size_in_bytes and max_size_in_bytes > MAX_BATCH_BYTES:
            raise ValueError(f"Max message size: {max_size_in_bytes} is too large, "
                             f"acceptable max batch size is: {MAX_BATCH_BYTES} bytes.")
        return ServiceBusMessageBatch(max_size_in_bytes or MAX_BATCH_BYTES)

    def send_messages(self, message: Any, *, timeout: float | None = None,
                      **kwargs: Any) -> None:
        if self._closed:
            raise ValueError("The handler has already been shutdown. Please use "
                             "ServiceBusClient to create a new instance.")
        if isinstance(message, ServiceBusMessageBatch):
            wires = list(message.messages)
        elif isinstance(message, ServiceBusMessage):
            wires = [_wire(message)]
        else:
            wires = [_wire(m) for m in message]
        if not wires:
            return
        with _mapped():
            _ns(self._conn).sb_send(self.entity_name, wires)

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> ServiceBusSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(slots=True)
class ServiceBusReceivedMessage:
    """What a receiver hands out: the fields the transport reads, shaped like the real one."""

    _body: bytes
    application_properties: dict[Any, Any]
    delivery_count: int
    message_id: str | None
    session_id: str | None
    lock_token: str | None
    sequence_number: int
    _receiver: Any = None

    @property
    def body(self) -> Iterator[bytes]:
        """Like the real data body: an iterable of byte sections (``b"".join(msg.body)``)."""
        return iter([self._body])

    def __str__(self) -> str:
        return self._body.decode("utf-8", "replace")


def _received(raw: dict[str, Any], receiver: Any) -> ServiceBusReceivedMessage:
    props = dict(raw["properties"])
    message_id = props.pop(_MESSAGE_ID, None)
    # The real AMQP client decodes string keys and values as bytes.
    amqp = {k.encode(): (v.encode() if isinstance(v, str) else v) for k, v in props.items()}
    return ServiceBusReceivedMessage(raw["body"], amqp, raw["delivery_count"], message_id,
                                     raw["session_id"], raw["lock_token"], raw["seq"], receiver)


class ServiceBusReceiver:
    """A receiver of a subscription or a (session) queue; broken for good by a drop."""

    def __init__(self, conn_str: str, entity: str, *, session_id: str | None,
                 receive_mode: Any, max_wait_time: float | None) -> None:
        self._conn = conn_str
        self.entity_path = entity
        self.session_id = session_id
        self._peek_lock = ServiceBusReceiveMode(receive_mode) == ServiceBusReceiveMode.PEEK_LOCK
        self._max_wait = max_wait_time
        self._closed = False
        with _mapped():
            self._generation = _ns(conn_str).generation()

    def _check_link(self) -> Any:
        if self._closed:
            raise ValueError("The handler has already been shutdown. Please use "
                             "ServiceBusClient to create a new instance.")
        ns = _ns(self._conn)
        with _mapped():
            if ns.generation() != self._generation:
                raise FakeServiceError("connection_lost", "the link was detached (fake drop)")
        return ns

    def receive_messages(self, max_message_count: int | None = 1,
                         max_wait_time: float | None = None
                         ) -> list[ServiceBusReceivedMessage]:
        ns = self._check_link()
        wait = max_wait_time if max_wait_time is not None else (self._max_wait or 60.0)
        with _mapped():
            raws = ns.sb_receive(self.entity_path, max_message_count or 1, wait,
                                 self._generation, peek_lock=self._peek_lock,
                                 session_id=self.session_id)
        return [_received(raw, self) for raw in raws]

    def _settle(self, message: ServiceBusReceivedMessage, action: str) -> None:
        if not self._peek_lock or message.lock_token is None:
            raise ValueError("The operation is only supported in PEEK_LOCK mode.")
        if message._receiver is not self:
            raise MessageLockLostError(message="the message was received by another link")
        ns = _ns(self._conn)
        with _mapped():
            if ns.generation() != self._generation:  # its link is gone, and its lock with it
                raise FakeServiceError("lock_lost", "the link the message came on detached")
            getattr(ns, action)(self.entity_path, message.lock_token)

    def complete_message(self, message: ServiceBusReceivedMessage) -> None:
        self._settle(message, "sb_complete")

    def abandon_message(self, message: ServiceBusReceivedMessage) -> None:
        self._settle(message, "sb_abandon")

    def dead_letter_message(self, message: ServiceBusReceivedMessage,
                            reason: str | None = None,
                            error_description: str | None = None) -> None:
        self._settle(message, "sb_dead_letter")

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> ServiceBusReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ServiceBusClient:
    """Makes senders and receivers of one fake namespace."""

    def __init__(self, conn_str: str) -> None:
        self._conn = conn_str

    @classmethod
    def from_connection_string(cls, conn_str: str, **kwargs: Any) -> ServiceBusClient:
        _ns(conn_str)  # a bad fake:// string fails here, as a bad real one fails early
        return cls(conn_str)

    def get_topic_sender(self, topic_name: str, **kwargs: Any) -> ServiceBusSender:
        return ServiceBusSender(self._conn, topic_name)

    def get_queue_sender(self, queue_name: str, **kwargs: Any) -> ServiceBusSender:
        return ServiceBusSender(self._conn, queue_name)

    def get_subscription_receiver(
        self, topic_name: str, subscription_name: str, *, session_id: str | None = None,
        receive_mode: Any = ServiceBusReceiveMode.PEEK_LOCK,
        max_wait_time: float | None = None, **kwargs: Any,
    ) -> ServiceBusReceiver:
        return ServiceBusReceiver(self._conn, f"{topic_name}/subscriptions/{subscription_name}",
                                  session_id=session_id, receive_mode=receive_mode,
                                  max_wait_time=max_wait_time)

    def get_queue_receiver(
        self, queue_name: str, *, session_id: str | None = None,
        receive_mode: Any = ServiceBusReceiveMode.PEEK_LOCK,
        max_wait_time: float | None = None, **kwargs: Any,
    ) -> ServiceBusReceiver:
        return ServiceBusReceiver(self._conn, queue_name, session_id=session_id,
                                  receive_mode=receive_mode, max_wait_time=max_wait_time)

    def close(self) -> None:
        """Nothing to release: senders and receivers hold no connection of their own."""

    def __enter__(self) -> ServiceBusClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(slots=True)
class _Properties:
    """What ``get_queue``/``get_subscription``/``create_*`` return (the name is read)."""

    name: str


@dataclass(slots=True)
class _PendingSubscription:
    max_delivery_count: int
    lock_duration: float


def _seconds(value: Any, default: float) -> float:
    if value is None:
        return default
    if hasattr(value, "total_seconds"):
        return float(value.total_seconds())
    raise ValueError(f"lock_duration must be a timedelta in the fake, not {value!r}")


class ServiceBusAdministrationClient:
    """The management calls the transport makes (see the module docstring for limits)."""

    def __init__(self, conn_str: str) -> None:
        self._conn = conn_str
        self._pending: dict[tuple[str, str], _PendingSubscription] = {}

    @classmethod
    def from_connection_string(cls, conn_str: str, **kwargs: Any
                               ) -> ServiceBusAdministrationClient:
        _ns(conn_str)
        return cls(conn_str)

    def _exists(self, topic: str, name: str) -> bool:
        with _mapped():
            return bool(_ns(self._conn).sb_subscription_exists(topic, name))

    def get_subscription(self, topic_name: str, subscription_name: str,
                         **kwargs: Any) -> _Properties:
        key = (topic_name, subscription_name)
        if key in self._pending or self._exists(*key):
            return _Properties(subscription_name)
        raise ResourceNotFoundError(f"Subscription({topic_name!r}, {subscription_name!r}) "
                                    "could not be found.")

    def create_subscription(self, topic_name: str, subscription_name: str, *,
                            max_delivery_count: int | None = None,
                            lock_duration: Any = None, **kwargs: Any) -> _Properties:
        key = (topic_name, subscription_name)
        if key in self._pending or self._exists(*key):
            raise ResourceExistsError(f"Subscription {subscription_name!r} already exists.")
        self._pending[key] = _PendingSubscription(max_delivery_count or 10,
                                                  _seconds(lock_duration, 60.0))
        return _Properties(subscription_name)

    def create_rule(self, topic_name: str, subscription_name: str, rule_name: str, *,
                    filter: Any = None, **kwargs: Any) -> _Properties:
        key = (topic_name, subscription_name)
        pending = self._pending.get(key)
        if pending is None:
            if self._exists(*key):
                raise ResourceExistsError(f"a rule of {subscription_name!r} already exists "
                                          "(the fake takes one rule per subscription)")
            raise ResourceNotFoundError(f"Subscription {subscription_name!r} not found.")
        if not isinstance(filter, CorrelationRuleFilter):
            raise ValueError("the fake supports CorrelationRuleFilter rules only")
        with _mapped():
            _ns(self._conn).sb_create_subscription(
                topic_name, subscription_name, dict(filter.properties or {}),
                max_delivery_count=pending.max_delivery_count,
                lock_duration=pending.lock_duration)
        del self._pending[key]
        return _Properties(rule_name)

    def delete_rule(self, topic_name: str, subscription_name: str, rule_name: str,
                    **kwargs: Any) -> None:
        if rule_name == "$Default" and self._exists(topic_name, subscription_name):
            return  # the fake's subscription only ever had its correlation rule
        raise ResourceNotFoundError(f"Rule {rule_name!r} of {subscription_name!r} not found.")

    def delete_subscription(self, topic_name: str, subscription_name: str,
                            **kwargs: Any) -> None:
        self._pending.pop((topic_name, subscription_name), None)
        ns = _ns(self._conn)
        if not self._exists(topic_name, subscription_name):
            raise ResourceNotFoundError(f"Subscription {subscription_name!r} not found.")
        with _mapped():
            ns.sb_delete_subscription(topic_name, subscription_name)

    def get_topic(self, topic_name: str, **kwargs: Any) -> _Properties:
        """Topics are implicit in the fake: one exists once it has a subscription."""
        return _Properties(topic_name)

    def create_topic(self, topic_name: str, **kwargs: Any) -> _Properties:
        return _Properties(topic_name)

    def get_queue(self, queue_name: str, **kwargs: Any) -> _Properties:
        try:
            with _mapped():
                _ns(self._conn).sb_counts(queue_name)
        except MessagingEntityNotFoundError:
            raise ResourceNotFoundError(f"Queue {queue_name!r} does not exist") from None
        return _Properties(queue_name)

    def create_queue(self, queue_name: str, *, requires_session: bool | None = None,
                     max_delivery_count: int | None = None, **kwargs: Any) -> _Properties:
        try:
            self.get_queue(queue_name)
        except ResourceNotFoundError:
            with _mapped():
                _ns(self._conn).sb_create_queue(queue_name, max_delivery_count or 10)
            return _Properties(queue_name)
        raise ResourceExistsError(f"Queue {queue_name!r} already exists.")

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> ServiceBusAdministrationClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
