"""Azure Event Hubs as a :class:`~hive_core.transports.broker.Broker`.

One event hub per hive (``hive-shards-NAME`` unless ``transport_options.eventhub`` or
AMPLIHACK_EH_NAME say otherwise). An agent's inbox is a partition: the agent's index in the
hive's agent list modulo the partition count, for any agent name (the system this follows
parsed ``agent-N`` names and lost everyone else's messages). Several agents may share a
partition; every event names its hive and target in its application properties and a reader
keeps only its own.

* **Reading** -- each bound agent has a reader on its partition in its own consumer group
  (``transport_options.consumer_group``, a template, default ``{agent}``; ``{hive}`` and a
  fixed name work too). It resumes *after its last checkpoint*, never from ``@latest``
  (which loses whatever was sent while it was down); a fresh agent starts at the start of
  the partition's retention.
* **Checkpoints** -- the highest sequence number below which every event was handled (or was
  not for this agent), saved to the hive's state store (:mod:`.azure_state`) at most every
  :data:`CHECKPOINT_EVERY` seconds and on close. After a crash the events since the last
  checkpoint are handled again: at-least-once, and handling is idempotent.
* **Replies** go to the asker's reply address ``PARTITION:CLIENT``: an agent's own inbox
  partition (its reader routes them), or for a client that serves no agent (the CLI) a
  partition it reads in ``$Default`` from the position it had *before* its first request,
  so no reply can be missed.
* **Limits** -- bodies are compressed and split into parts under the 1 MB event limit
  (:mod:`.chunks`); a batch send is split into as many batches as the limit needs.
* **Reconnects** -- the SDK's own retries are off (``retry_total=0``); a reader whose
  receive fails backs off with the same policy as Redis (hive_core.transports.retry) and
  resumes from the last event it handed out.
* **Liveness** is not something Event Hubs knows: it comes from the hive's state store too,
  and a request to an agent that is not live is ``ConnectionLost`` without being sent.
"""

from __future__ import annotations

import importlib
import logging
import queue
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Sequence
from types import ModuleType
from typing import Any

from hive_core.auth import MessageAuth
from hive_core.config import MAX_MESSAGE_BYTES
from hive_core.errors import ConfigError, ConnectionLost, MessageRejected, TransportError
from hive_core.hive_config import HiveConfig
from hive_core.redact import redact_secret
from hive_core.state import CheckpointStore
from hive_core.transports import azure_names, azure_sdk, chunks
from hive_core.transports.azure_sdk import str_properties
from hive_core.transports.azure_state import Presence, open_checkpoints, open_presence
from hive_core.transports.broker import BrokerTransport, Delivery, Outgoing
from hive_core.transports.handled_journal import journal_dir
from hive_core.transports.retry import Backoff, RetryState

log = logging.getLogger("hive_core.transports.eventhubs")

CHECKPOINT_EVERY = 1.0  # seconds between checkpoint writes of one reader (when it moved)
READ_WAIT = 0.5  # seconds a receive call waits for events (bounds shutdown time)
QUEUE_BOUND = 2000  # deliveries read ahead per agent before the reader waits
SEND_ATTEMPT_BACKOFF = Backoff(base=0.02, cap=0.5)


def load_sdk(connection_string: str) -> ModuleType:
    """azure.eventhub, or the fake of its calls for a ``fake://`` endpoint (azure_sdk)."""
    return azure_sdk.load_sdk(
        connection_string, "azure_event_hubs",
        lambda: importlib.import_module("hive_core.transports.azurefake.eventhub_sdk"),
        lambda: importlib.import_module("azure.eventhub"))


class _Tracker:
    """Which sequence numbers of a partition are done; the checkpoint below them."""

    def __init__(self, start: int) -> None:
        self.pending: set[int] = set()
        self.highest = start
        self.saved = start
        self.saved_at = time.monotonic()
        self.lock = threading.Lock()

    def seen(self, seq: int, done: bool) -> None:
        with self.lock:
            self.highest = max(self.highest, seq)
            if not done:
                self.pending.add(seq)

    def done(self, seqs: Iterable[int]) -> None:
        with self.lock:
            self.pending.difference_update(seqs)

    def checkpoint(self) -> int:
        with self.lock:
            return min(self.pending) - 1 if self.pending else self.highest


class _Reader:
    """One agent's reader of its partition (see the module docstring)."""

    def __init__(self, broker: EventHubsBroker, agent: str, partition: str, group: str) -> None:
        self.b = broker
        self.agent = agent
        self.partition = partition
        self.group = group
        self.position = self._start()  # the last sequence number handed out
        self.tracker = _Tracker(self.position)
        self.inbox: queue.Queue[Delivery] = queue.Queue()
        self.parts = chunks.Reassembler(broker.max_message_bytes)
        self.part_seqs: dict[str, list[int]] = {}
        self.errors = 0
        self._stop = threading.Event()
        self._consumer: Any = None
        self._thread = threading.Thread(target=self._run, name=f"eh-{agent}", daemon=True)
        self._thread.start()

    def _ckpt_key(self) -> str:
        return f"{self.partition}/{self.agent}"

    def _start(self) -> int:
        """Resume after the saved checkpoint (claim saved a first one)."""
        start = self.b.checkpoints.load(self.b.hub, self.group, self._ckpt_key())
        return -1 if start is None else start

    def _run(self) -> None:
        retry = RetryState(Backoff(), self._stop)
        while not self._stop.is_set():
            consumer = self.b.sdk.EventHubConsumerClient.from_connection_string(
                self.b.connection_string, self.group, eventhub_name=self.b.hub, retry_total=0)
            self._consumer = consumer
            try:
                consumer.receive_batch(
                    self._on_batch, partition_id=self.partition,
                    starting_position="-1" if self.position < 0 else self.position,
                    starting_position_inclusive=False, max_batch_size=300,
                    max_wait_time=READ_WAIT, on_error=self._on_error)
                if self._stop.is_set():
                    break
                raise ConnectionLost("the receiver stopped")
            except Exception as exc:
                if self._stop.is_set():
                    break
                self.errors += 1
                log.warning("%s: reading partition %s of %s failed (%s: %s); reconnecting "
                            "with backoff", self.agent, self.partition, self.b.where,
                            type(exc).__name__, redact_secret(str(exc)))
                retry.failed()
            finally:
                consumer.close()
        self.save_checkpoint(force=True)

    def _on_error(self, _ctx: Any, exc: Exception) -> None:
        log.warning("%s: partition %s: %s: %s", self.agent, self.partition,
                    type(exc).__name__, redact_secret(str(exc)))

    def _on_batch(self, _ctx: Any, events: list[Any]) -> None:
        for event in events:
            while self.inbox.qsize() >= QUEUE_BOUND and not self._stop.is_set():
                time.sleep(0.05)  # backpressure: the SDK thread waits for the handlers
            self._take(event)
        self.save_checkpoint()

    def _take(self, event: Any) -> None:
        seq = int(event.sequence_number)
        self.position = seq
        props = str_properties(event.properties)
        if props.get("hive") != self.b.hive:
            self.tracker.seen(seq, done=True)
            return
        kind, msg_id = props.get("kind"), props.get("id", "")
        mine = (kind == "req" and props.get("target") == self.agent) or (
            kind == "reply" and props.get("to") == self.b.client_id)
        self.tracker.seen(seq, done=not mine or kind == "reply")
        if not mine:
            return
        data = b"".join(event.body)  # a data body: a generator of byte segments
        try:
            body = self.parts.add(msg_id, int(props.get("part", 0)), int(props.get("parts", 1)),
                                  data)
        except (MessageRejected, ValueError) as exc:
            log.warning("%s: dropped a malformed event %d: %s", self.agent, seq, exc)
            self.tracker.done([seq])
            return
        if kind == "reply":
            if body is not None:
                self.b.replies.put(body)
            return
        self.part_seqs.setdefault(msg_id, []).append(seq)
        if body is None:
            return
        seqs = self.part_seqs.pop(msg_id)
        reply_to = props.get("reply_to") or None
        self.inbox.put(Delivery(key=(self.partition, seqs[-1]), body=body, reply_to=reply_to,
                                msg_id=msg_id, handle=seqs))

    def save_checkpoint(self, force: bool = False) -> None:
        point = self.tracker.checkpoint()
        now = time.monotonic()
        if point <= self.tracker.saved or (not force and
                                           now - self.tracker.saved_at < CHECKPOINT_EVERY):
            return
        try:
            self.b.checkpoints.save(self.b.hub, self.group, self._ckpt_key(), point)
            self.tracker.saved, self.tracker.saved_at = point, now
        except Exception as exc:  # tried again at the next batch
            log.warning("%s: could not save the checkpoint of partition %s (%s)",
                        self.agent, self.partition, exc)

    def take(self, max_count: int, timeout: float) -> list[Delivery]:
        out: list[Delivery] = []
        try:
            out.append(self.inbox.get(timeout=timeout))
            while len(out) < max_count:
                out.append(self.inbox.get_nowait())
        except queue.Empty:
            pass
        return out

    def close(self) -> None:
        self._stop.set()
        if self._consumer is not None:
            self._consumer.close()
        self._thread.join(timeout=READ_WAIT + 5.0)


class EventHubsBroker:
    """The Broker primitives over one event hub (see the module docstring)."""

    acks_are_final = False  # events after the last checkpoint are read again after a restart

    def __init__(
        self, config: HiveConfig, *, presence: Presence | None = None,
        checkpoints: CheckpointStore | None = None,
        agent_list: Callable[[], list[str]] | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES, part_bytes: int = chunks.DEFAULT_PART_BYTES,
    ) -> None:
        if not config.connection_string:
            raise ConfigError("transport 'azure_event_hubs' needs a connection string")
        opts = config.transport_options
        self.hive = config.name
        self.connection_string = config.connection_string
        self.hub = azure_names.event_hub(config.name, opts)
        self.where = f"Event Hubs {self.hub} at {redact_secret(config.connection_string)}"
        self.options = opts
        self.reply_partition: int | None = opts.get("reply_partition")
        self.sdk = load_sdk(config.connection_string)
        self.max_message_bytes = max_message_bytes
        self.part_bytes = part_bytes
        self.client_id = uuid.uuid4().hex[:16]
        self._agents = list(config.agent_names())
        self._agent_list = agent_list or (lambda: HiveConfig.load(config.name).agent_names())
        self.presence = presence if presence is not None else open_presence(config)
        self.checkpoints = checkpoints if checkpoints is not None else open_checkpoints(config)
        self.producer = self.sdk.EventHubProducerClient.from_connection_string(
            self.connection_string, eventhub_name=self.hub, retry_total=0)
        self.replies: queue.Queue[bytes] = queue.Queue()
        self._partitions: list[str] | None = None
        self._readers: dict[str, _Reader] = {}
        self._draining: dict[str, _Reader] = {}  # released, finishing requests in flight
        self._reply_reader: _Reader | None = None
        self._reply_address: str | None = None
        self._lock = threading.Lock()

    def _lost(self, exc: Exception) -> ConnectionLost:
        return ConnectionLost(f"{self.where} is unreachable: {type(exc).__name__}: "
                              f"{redact_secret(str(exc))}")

    # -- addressing ---------------------------------------------------------------------------
    def partitions(self) -> list[str]:
        if self._partitions is None:
            try:
                self._partitions = list(self.producer.get_partition_ids())
            except Exception as exc:
                raise self._lost(exc) from exc
        return self._partitions

    def partition_of(self, agent: str) -> str | None:
        """The agent's partition, or None for an agent this hive does not have (the agent
        list is re-read once, for an agent added while this process runs)."""
        if agent not in self._agents:
            try:
                self._agents = list(self._agent_list())
            except Exception as exc:
                log.warning("could not re-read the agent list of hive %s: %s", self.hive, exc)
            if agent not in self._agents:
                return None
        parts = self.partitions()
        return parts[self._agents.index(agent) % len(parts)]

    def _group(self, agent: str) -> str:
        return azure_names.consumer_group(self.hive, agent, self.options)

    # -- membership ---------------------------------------------------------------------------
    def claim(self, agent: str) -> None:
        partition = self.partition_of(agent)
        if partition is None:
            raise ConfigError(f"hive {self.hive!r} has no agent {agent!r}")
        self._first_checkpoint(agent, partition)
        self.presence.hold(agent)
        with self._lock:
            self._draining.pop(agent, None)
            self._readers[agent] = _Reader(self, agent, partition, self._group(agent))

    def _first_checkpoint(self, agent: str, partition: str) -> None:
        """An agent's first start saves where its partition ends, BEFORE the agent is live:
        nobody sends to an agent that is not live, so nothing for it lies before that point,
        and old events of a hive that had the same name (the hub outlives hives) are never
        replayed. Every later start resumes from a saved checkpoint, never from @latest."""
        group, key = self._group(agent), f"{partition}/{agent}"
        if self.checkpoints.load(self.hub, group, key) is not None:
            return
        try:
            last = int(self.producer.get_partition_properties(partition)
                       ["last_enqueued_sequence_number"])
        except Exception as exc:
            raise self._lost(exc) from exc
        self.checkpoints.save(self.hub, group, key, last)

    def release(self, agent: str) -> None:
        """Stop reading for ``agent``; requests in flight still ack (the transport drains
        them next), each ack saving the checkpoint, so a clean stop replays nothing."""
        self.presence.release(agent)
        with self._lock:
            reader = self._readers.pop(agent, None)
            if reader is not None:
                self._draining[agent] = reader
        if reader is not None:
            reader.close()

    def live_members(self, candidates: Iterable[str] | None = None) -> set[str]:
        return self.presence.live_members(self._agents if candidates is None else candidates)

    # -- requests -----------------------------------------------------------------------------
    def reply_address(self) -> str:
        with self._lock:
            if self._reply_address is None:
                self._reply_address = self._open_reply_route()
            return self._reply_address

    def _open_reply_route(self) -> str:
        if self._readers:  # an agent's reader routes replies addressed to this client
            reader = next(iter(self._readers.values()))
            return f"{reader.partition}:{self.client_id}"
        parts = self.partitions()
        index = self.reply_partition if self.reply_partition is not None else \
            zlib.crc32(self.client_id.encode()) % len(parts)
        partition = parts[index % len(parts)]
        # From where the partition ends now, before any request: no reply can come earlier.
        last = int(self.producer.get_partition_properties(partition)
                   ["last_enqueued_sequence_number"])
        self._reply_reader = _ReplyReader(self, partition, last)
        return f"{partition}:{self.client_id}"

    def send(self, items: Sequence[Outgoing], deadline: float) -> list[TransportError | None]:
        out: list[TransportError | None] = [None] * len(items)
        live = self.live_members({i.target for i in items})
        by_partition: dict[str, list[tuple[int, dict[str, str], bytes]]] = {}
        for n, item in enumerate(items):
            partition = self.partition_of(item.target) if item.target in live else None
            if partition is None:
                out[n] = ConnectionLost(f"no live agent {item.target!r} in hive "
                                        f"{self.hive!r} on Event Hubs")
                continue
            props = {"hive": self.hive, "kind": "req", "target": item.target,
                     "id": item.msg_id, "reply_to": item.reply_to}
            for part in self._parts(item.body, props):
                by_partition.setdefault(partition, []).append((n, *part))
        for partition, events in by_partition.items():
            error = self._send_events(partition, events, deadline)
            if error is not None:
                for n, _, _ in events:
                    out[n] = error
        return out

    def _parts(self, body: bytes, props: dict[str, str]) -> list[tuple[dict[str, str], bytes]]:
        parts = chunks.split(body, self.part_bytes)
        return [({**props, "part": str(i), "parts": str(len(parts))}, data)
                for i, data in enumerate(parts)]

    def _send_events(self, partition: str, events: Sequence[tuple[Any, dict[str, str], bytes]],
                     deadline: float | None) -> TransportError | None:
        """Send events to one partition in as many batches as the size limit needs,
        retrying with backoff until ``deadline``; the error, or None."""
        retry = RetryState(SEND_ATTEMPT_BACKOFF)
        while True:
            try:
                batch = self.producer.create_batch(partition_id=partition)
                for _, props, data in events:
                    event = self.sdk.EventData(data)
                    event.properties = props
                    try:
                        batch.add(event)
                    except ValueError:  # full: send it, start the next one
                        if len(batch) == 0:
                            return MessageRejected("an event part exceeds the event size limit")
                        self.producer.send_batch(batch)
                        batch = self.producer.create_batch(partition_id=partition)
                        batch.add(event)
                if len(batch):
                    self.producer.send_batch(batch)
                return None
            except MessageRejected as exc:
                return exc
            except Exception as exc:
                if not retry.failed(deadline):
                    return self._lost(exc)

    # -- serving ------------------------------------------------------------------------------
    def receive(self, agent: str, max_count: int, timeout: float) -> list[Delivery]:
        with self._lock:
            reader = self._readers.get(agent)
        if reader is None:
            time.sleep(timeout)
            return []
        return reader.take(max_count, timeout)

    def ack(self, agent: str, delivery: Delivery, reply: bytes | None) -> None:
        """Send the reply, then let the checkpoint pass the request's events."""
        if reply is not None and delivery.reply_to is not None:
            self._send_reply(delivery.reply_to, reply)
        with self._lock:
            reader = self._readers.get(agent)
            draining = self._draining.get(agent)
        if reader is not None:
            reader.tracker.done(delivery.handle)
        elif draining is not None:
            draining.tracker.done(delivery.handle)
            draining.save_checkpoint(force=True)

    def abandon(self, agent: str, delivery: Delivery) -> None:
        """Event Hubs has no per-event redelivery: the event is queued again here (and the
        checkpoint stays below it, so a restart delivers it too)."""
        with self._lock:
            reader = self._readers.get(agent)
        if reader is not None:
            delivery.attempt += 1
            reader.inbox.put(delivery)

    def _send_reply(self, reply_to: str, body: bytes) -> None:
        partition, _, client = reply_to.partition(":")
        if not client or partition not in self.partitions():
            raise MessageRejected(f"bad reply address {reply_to!r}")
        props = {"hive": self.hive, "kind": "reply", "to": client, "id": uuid.uuid4().hex}
        error = self._send_events(partition, [(0, *p) for p in self._parts(body, props)],
                                  time.monotonic() + 5.0)
        if error is not None:
            raise error

    def receive_replies(self, max_count: int, timeout: float) -> list[bytes]:
        out: list[bytes] = []
        try:
            out.append(self.replies.get(timeout=timeout))
            while len(out) < max_count:
                out.append(self.replies.get_nowait())
        except queue.Empty:
            pass
        return out

    def close(self) -> None:
        with self._lock:
            readers = list(self._readers.values())
            self._readers.clear()
        for reader in readers:
            reader.close()
        if self._reply_reader is not None:
            self._reply_reader.close()
        self.producer.close()
        self.presence.close()


class _ReplyReader(_Reader):
    """The reader of a client that serves no agent: replies only, in ``$Default``, from the
    end of the partition as it was before the first request; never checkpointed."""

    def __init__(self, broker: EventHubsBroker, partition: str, after: int) -> None:
        self._after = after
        super().__init__(broker, f"client-{broker.client_id}", partition, "$Default")

    def _start(self) -> int:
        return self._after

    def save_checkpoint(self, force: bool = False) -> None:
        """Replies are not replayed after a restart: nothing to save."""


def open_transport(config: HiveConfig, auth: MessageAuth | None = None) -> BrokerTransport:
    """The ``azure_event_hubs`` entry of hive_core.transports.registry."""
    return BrokerTransport(EventHubsBroker(config), auth=auth, replay_dir=journal_dir(config))
