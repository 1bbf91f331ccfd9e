"""A fake of the azure-eventhub 5.x sync calls the Event Hubs transport makes.

Same class names and call signatures as ``azure.eventhub``, so the transport's code is the
same against the fake and against Azure; failures raise the real SDK's exception classes.
What the fake reproduces on purpose (see :mod:`.namespace`): the 1 MB batch limit
(``EventDataBatch.add`` raises ``ValueError`` like the real one), no order across partitions,
a receive broken by a dropped link (``ConnectionLostError`` out of ``receive_batch``), and
received application properties with *bytes* keys and values, as the real AMQP client
delivers them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from azure.eventhub import EventData
from azure.eventhub.exceptions import ConnectionLostError, EventDataSendError, EventHubError

from hive_core.transports.azurefake.namespace import (
    MAX_BATCH_BYTES,
    FakeServiceError,
    event_size,
)
from hive_core.transports.azurefake.server import namespace

__all__ = ["EventData", "EventDataBatch", "EventHubConsumerClient", "EventHubProducerClient"]


def _raise(exc: FakeServiceError) -> None:
    if exc.kind == "connection_lost":
        raise ConnectionLostError(str(exc)) from None
    if exc.kind == "event_data_send":
        raise EventDataSendError(str(exc)) from None
    raise EventHubError(str(exc)) from None


def _body(event: EventData) -> bytes:
    return b"".join(event.body)


class EventDataBatch:
    """Events for one partition, refused past the size limit as the real batch does."""

    def __init__(self, partition_id: str | None, max_size_in_bytes: int) -> None:
        self.partition_id = partition_id
        self.max_size_in_bytes = max_size_in_bytes
        self.events: list[tuple[bytes, dict[str, Any]]] = []
        self.size_in_bytes = 0

    def add(self, event_data: EventData) -> None:
        body = _body(event_data)
        props = dict(event_data.properties or {})
        size = event_size(body, props)
        if self.size_in_bytes + size > self.max_size_in_bytes:
            raise ValueError(
                f"EventDataBatch has reached its size limit: {self.max_size_in_bytes}")
        self.events.append((body, props))
        self.size_in_bytes += size

    def __len__(self) -> int:
        return len(self.events)


class _ReceivedEvent:
    """What ``receive_batch`` hands out: body, bytes-keyed properties, sequence number."""

    def __init__(self, seq: int, body: bytes, props: dict[str, Any], enqueued: float) -> None:
        self.sequence_number = seq
        self.offset = str(seq)
        self.enqueued_time = enqueued
        self._body = body
        self.properties = {
            str(k).encode(): (v.encode() if isinstance(v, str) else v)
            for k, v in props.items()}

    @property
    def body(self):  # a generator of byte segments, like the real EventData.body
        yield self._body

    def body_as_str(self, encoding: str = "UTF-8") -> str:
        return self._body.decode(encoding)


class _PartitionContext:
    def __init__(self, hub: str, group: str, partition_id: str) -> None:
        self.eventhub_name = hub
        self.consumer_group = group
        self.partition_id = partition_id


class EventHubProducerClient:
    def __init__(self, conn_str: str, eventhub_name: str) -> None:
        self._ns = namespace(conn_str)
        self.eventhub_name = eventhub_name
        self._closed = False

    @classmethod
    def from_connection_string(cls, conn_str: str, *, eventhub_name: str | None = None,
                               **_kwargs: Any) -> EventHubProducerClient:
        if not eventhub_name:
            raise ValueError("eventhub_name is required")
        return cls(conn_str, eventhub_name)

    def get_partition_ids(self) -> list[str]:
        try:
            return list(self._ns.eh_partition_ids(self.eventhub_name))
        except FakeServiceError as exc:
            _raise(exc)
            raise

    def get_partition_properties(self, partition_id: str) -> dict[str, Any]:
        last = self._ns.eh_last_sequence(self.eventhub_name, partition_id)
        return {"eventhub_name": self.eventhub_name, "id": partition_id,
                "last_enqueued_sequence_number": last, "is_empty": last < 0}

    def create_batch(self, *, partition_id: str | None = None, partition_key: str | None = None,
                     max_size_in_bytes: int | None = None) -> EventDataBatch:
        size = min(max_size_in_bytes or MAX_BATCH_BYTES, MAX_BATCH_BYTES)
        return EventDataBatch(partition_id, size)

    def send_batch(self, event_data_batch: EventDataBatch, **_kwargs: Any) -> None:
        if self._closed:
            raise EventHubError("the producer is closed")
        try:
            self._ns.eh_send(self.eventhub_name, event_data_batch.partition_id or "0",
                             event_data_batch.events)
        except FakeServiceError as exc:
            _raise(exc)

    def close(self) -> None:
        self._closed = True


class EventHubConsumerClient:
    def __init__(self, conn_str: str, consumer_group: str, eventhub_name: str) -> None:
        self._ns = namespace(conn_str)
        self.consumer_group = consumer_group
        self.eventhub_name = eventhub_name
        self._closed = threading.Event()

    @classmethod
    def from_connection_string(cls, conn_str: str, consumer_group: str, *,
                               eventhub_name: str | None = None,
                               **_kwargs: Any) -> EventHubConsumerClient:
        if not eventhub_name:
            raise ValueError("eventhub_name is required")
        return cls(conn_str, consumer_group, eventhub_name)

    def receive_batch(
        self, on_event_batch: Callable[[Any, list[Any]], None], *, max_batch_size: int = 300,
        max_wait_time: float | None = None, partition_id: str | None = None,
        starting_position: str | int | None = None,
        starting_position_inclusive: bool = False, on_error: Any = None, **_kwargs: Any,
    ) -> None:
        """Blocks, calling ``on_event_batch`` per batch (with [] after ``max_wait_time``),
        until :meth:`close`; a dropped link raises ConnectionLostError."""
        pid = partition_id or "0"
        ctx = _PartitionContext(self.eventhub_name, self.consumer_group, pid)
        if starting_position in (None, "@latest"):
            after = self._ns.eh_last_sequence(self.eventhub_name, pid)
        elif starting_position == "-1":
            after = -1
        else:
            after = int(starting_position) - (1 if starting_position_inclusive else 0)
        generation = self._ns.generation()
        wait = min(max_wait_time or 1.0, 1.0)
        while not self._closed.is_set():
            try:
                got = self._ns.eh_receive(self.eventhub_name, pid, after, max_batch_size,
                                          wait, generation)
            except FakeServiceError as exc:
                if on_error is not None:
                    on_error(ctx, ConnectionLostError(str(exc)))
                _raise(exc)
            if self._closed.is_set():
                return
            events = [_ReceivedEvent(*e) for e in got]
            if events:
                after = events[-1].sequence_number
            if events or max_wait_time is not None:
                on_event_batch(ctx, events)

    def close(self) -> None:
        self._closed.set()
