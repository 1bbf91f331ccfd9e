"""The state of a fake Azure messaging namespace: Event Hubs partitions and Service Bus
topics, subscriptions and queues, with the hazards the real services have.

No emulator runs offline (the official ones need Docker images this machine cannot pull), so
the Azure transports are tested against this fake of the few SDK calls they use
(:mod:`~hive_core.transports.azurefake.eventhub_sdk`,
:mod:`~hive_core.transports.azurefake.servicebus_sdk`). It is a fake *service*, not a mock:
messages really queue, wait and expire, and the hazards are reproduced on purpose:

* **the 1 MB limit**: a send whose events add up to more than :data:`MAX_BATCH_BYTES` is
  refused, as the service refuses it;
* **no order across partitions**: each partition is its own sequence;
* **at-least-once**: :meth:`FakeNamespace.drop_connections` breaks every receive in progress
  (a dropped AMQP link): Event Hubs readers restart from their checkpoint and see events
  again, Service Bus messages stay locked until the lock expires;
* **expiring locks**: a Service Bus message not completed within its lock duration is
  delivered again with a higher delivery count, and dead-lettered after the subscription's
  max delivery count; completing it after that fails (MessageLockLostError).

Every method takes and returns plain data, so the same object serves one process directly
and many processes through :mod:`~hive_core.transports.azurefake.server`.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

MAX_BATCH_BYTES = 1024 * 1024  # Event Hubs standard/premium event (and batch) limit
EVENT_OVERHEAD = 64  # bytes the fake counts per event on top of body + properties
DEFAULT_PARTITIONS = 4


class FakeServiceError(Exception):
    """A refusal of the fake service; ``kind`` names the real SDK exception to raise."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind

    def __reduce__(self) -> tuple[Any, ...]:  # crosses the manager's pickling intact
        return (FakeServiceError, (self.kind, str(self)))


def event_size(body: bytes, properties: dict[str, Any]) -> int:
    return len(body) + sum(len(str(k)) + len(str(v)) for k, v in properties.items()) + \
        EVENT_OVERHEAD


@dataclass(slots=True)
class _Partition:
    events: list[tuple[int, bytes, dict[str, Any], float]] = field(default_factory=list)


@dataclass(slots=True)
class _Message:
    seq: int
    body: bytes
    properties: dict[str, Any]
    session_id: str | None = None
    delivery_count: int = 0
    lock_token: str | None = None
    locked_until: float = 0.0


@dataclass(slots=True)
class _Entity:
    """A queue or a subscription: available, locked and dead-lettered messages."""

    max_delivery_count: int = 10
    lock_duration: float = 30.0
    filter: dict[str, Any] | None = None  # subscription: properties that must match
    available: deque[_Message] = field(default_factory=deque)
    locked: dict[str, _Message] = field(default_factory=dict)
    dead: list[_Message] = field(default_factory=list)


class FakeNamespace:
    """One namespace's Event Hubs and Service Bus state (see the module docstring)."""

    def __init__(self, partitions: int = DEFAULT_PARTITIONS) -> None:
        self.partitions = partitions
        self._cond = threading.Condition()
        self._hubs: dict[str, list[_Partition]] = {}
        self._entities: dict[str, _Entity] = {}  # "queue" or "topic/subscriptions/sub"
        self._topics: dict[str, list[str]] = {}  # topic -> its subscription entity names
        self._seq = itertools.count(1)
        self._generation = 0  # bumped by drop_connections
        self.sent_batches = 0

    # -- hazards ------------------------------------------------------------------------------
    def drop_connections(self) -> None:
        """Break every receive in progress (a dropped link), as a network blip would."""
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def generation(self) -> int:
        with self._cond:
            return self._generation

    def _wait(self, deadline: float, generation: int) -> None:
        """Wait for news until ``deadline``; raise if the connection dropped meanwhile."""
        left = deadline - time.monotonic()
        if left > 0:
            self._cond.wait(left)
        if self._generation != generation:
            raise FakeServiceError("connection_lost", "the link was detached (fake drop)")

    # -- Event Hubs ---------------------------------------------------------------------------
    def _hub(self, hub: str) -> list[_Partition]:
        return self._hubs.setdefault(hub, [_Partition() for _ in range(self.partitions)])

    def eh_partition_ids(self, hub: str) -> list[str]:
        with self._cond:
            return [str(i) for i in range(len(self._hub(hub)))]

    def eh_last_sequence(self, hub: str, partition: str) -> int:
        """The last sequence number enqueued in the partition (-1 when empty)."""
        with self._cond:
            events = self._hub(hub)[int(partition)].events
            return events[-1][0] if events else -1

    def eh_send(self, hub: str, partition: str, events: list[tuple[bytes, dict[str, Any]]]
                ) -> None:
        size = sum(event_size(b, p) for b, p in events)
        if size > MAX_BATCH_BYTES:
            raise FakeServiceError("event_data_send", f"the batch is {size} bytes, over the "
                                   f"{MAX_BATCH_BYTES}-byte limit")
        with self._cond:
            part = self._hub(hub)[int(partition)]
            for body, props in events:
                part.events.append((len(part.events), body, dict(props), time.time()))
            self.sent_batches += 1
            self._cond.notify_all()

    def eh_receive(self, hub: str, partition: str, after: int, max_count: int,
                   timeout: float, generation: int
                   ) -> list[tuple[int, bytes, dict[str, Any], float]]:
        """Events of the partition with sequence number > ``after`` (up to ``max_count``),
        waiting up to ``timeout`` for the first; raises after a drop since ``generation``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self._generation != generation:
                    raise FakeServiceError("connection_lost", "the link was detached")
                events = self._hub(hub)[int(partition)].events
                if len(events) > after + 1:
                    return events[after + 1:after + 1 + max_count]
                if time.monotonic() >= deadline:
                    return []
                self._wait(deadline, generation)

    # -- Service Bus: entities ----------------------------------------------------------------
    def sb_create_queue(self, queue: str, max_delivery_count: int = 10) -> None:
        with self._cond:
            self._entities.setdefault(queue, _Entity(max_delivery_count=max_delivery_count))

    def sb_create_subscription(self, topic: str, name: str, filter_properties: dict[str, Any],
                               max_delivery_count: int = 10, lock_duration: float = 30.0
                               ) -> bool:
        """Create a subscription with a correlation filter; False if it already existed."""
        entity = f"{topic}/subscriptions/{name}"
        with self._cond:
            if entity in self._entities:
                return False
            self._entities[entity] = _Entity(max_delivery_count, lock_duration,
                                             dict(filter_properties))
            self._topics.setdefault(topic, []).append(entity)
            return True

    def sb_delete_subscription(self, topic: str, name: str) -> None:
        """Delete a subscription and every message it held."""
        entity = f"{topic}/subscriptions/{name}"
        with self._cond:
            self._entity(entity)
            del self._entities[entity]
            self._topics[topic].remove(entity)
            self._cond.notify_all()

    def sb_subscription_exists(self, topic: str, name: str) -> bool:
        with self._cond:
            return f"{topic}/subscriptions/{name}" in self._entities

    def _entity(self, name: str) -> _Entity:
        entity = self._entities.get(name)
        if entity is None:
            raise FakeServiceError("entity_not_found", f"messaging entity {name!r} not found")
        return entity

    # -- Service Bus: messages ----------------------------------------------------------------
    def sb_send(self, entity: str, messages: list[tuple[bytes, dict[str, Any], str | None]]
                ) -> None:
        """Send to a queue, or to a topic (every subscription whose filter matches gets a
        copy, as the service does)."""
        size = sum(event_size(b, p) for b, p, _ in messages)
        if size > MAX_BATCH_BYTES:
            raise FakeServiceError("message_size", f"the batch is {size} bytes, over the "
                                   f"{MAX_BATCH_BYTES}-byte limit")
        with self._cond:
            if entity in self._topics:
                targets = [self._entities[e] for e in self._topics[entity]]
            else:
                targets = [self._entity(entity)]
            for body, props, session in messages:
                seq = next(self._seq)
                for target in targets:
                    flt = target.filter
                    if flt is None or all(props.get(k) == v for k, v in flt.items()):
                        target.available.append(_Message(seq, body, dict(props), session))
            self._cond.notify_all()

    def _expire_locks(self, entity: _Entity) -> None:
        now = time.monotonic()
        for token, msg in list(entity.locked.items()):
            if msg.locked_until <= now:
                del entity.locked[token]
                msg.lock_token = None
                self._requeue(entity, msg)

    def _requeue(self, entity: _Entity, msg: _Message) -> None:
        if msg.delivery_count >= entity.max_delivery_count:
            entity.dead.append(msg)
        else:
            entity.available.appendleft(msg)

    def sb_receive(self, entity_name: str, max_count: int, timeout: float, generation: int,
                   *, peek_lock: bool = True, session_id: str | None = None
                   ) -> list[dict[str, Any]]:
        """Up to ``max_count`` messages (of ``session_id`` only, when given), locked for the
        entity's lock duration (peek-lock) or removed (receive-and-delete)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                entity = self._entity(entity_name)
                self._expire_locks(entity)
                got: list[dict[str, Any]] = []
                for msg in list(entity.available):
                    if len(got) >= max_count:
                        break
                    if session_id is not None and msg.session_id != session_id:
                        continue
                    entity.available.remove(msg)
                    msg.delivery_count += 1
                    if peek_lock:
                        msg.lock_token = uuid.uuid4().hex
                        msg.locked_until = time.monotonic() + entity.lock_duration
                        entity.locked[msg.lock_token] = msg
                    got.append({"seq": msg.seq, "body": msg.body, "properties": msg.properties,
                                "session_id": msg.session_id, "lock_token": msg.lock_token,
                                "delivery_count": msg.delivery_count})
                if got or time.monotonic() >= deadline:
                    return got
                # Wake for new messages, drops, and the next lock expiry.
                expiry = min((m.locked_until for m in entity.locked.values()), default=deadline)
                self._wait(min(deadline, expiry + 0.01), generation)

    def _settle(self, entity_name: str, lock_token: str) -> tuple[_Entity, _Message]:
        entity = self._entity(entity_name)
        self._expire_locks(entity)
        msg = entity.locked.pop(lock_token, None)
        if msg is None:
            raise FakeServiceError("lock_lost", "the message's lock expired or was lost")
        return entity, msg

    def sb_complete(self, entity_name: str, lock_token: str) -> None:
        with self._cond:
            self._settle(entity_name, lock_token)

    def sb_abandon(self, entity_name: str, lock_token: str) -> None:
        with self._cond:
            entity, msg = self._settle(entity_name, lock_token)
            self._requeue(entity, msg)
            self._cond.notify_all()

    def sb_dead_letter(self, entity_name: str, lock_token: str) -> None:
        with self._cond:
            entity, msg = self._settle(entity_name, lock_token)
            entity.dead.append(msg)

    def sb_counts(self, entity_name: str) -> dict[str, int]:
        """Active, locked and dead-lettered message counts (tests read these)."""
        with self._cond:
            entity = self._entity(entity_name)
            self._expire_locks(entity)
            return {"active": len(entity.available), "locked": len(entity.locked),
                    "dead_letter": len(entity.dead)}
