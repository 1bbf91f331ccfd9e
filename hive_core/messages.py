"""The wire schema: every hop between agents is one of these envelopes.

An envelope is plain data (str, int, float, bool, None, lists, dicts) so that the same message
travels unchanged on every transport: as a Python object on the in-process bus, as JSON bytes
on Unix sockets and Redis. Never pickle: a peer must not be able to make us run code.

``encode``/``decode`` enforce the version and a maximum size on receive, and raise
:class:`~hive_core.errors.MessageRejected` for anything else.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from hive_core.config import MAX_MESSAGE_BYTES
from hive_core.errors import MessageRejected

WIRE_VERSION = 1


class MessageType(StrEnum):
    SHARD_QUERY = "SHARD_QUERY"
    SHARD_RESPONSE = "SHARD_RESPONSE"
    SHARD_STORE = "SHARD_STORE"
    SHARD_STORE_ACK = "SHARD_STORE_ACK"
    SHARD_DELETE = "SHARD_DELETE"
    GOSSIP_DIGEST = "GOSSIP_DIGEST"
    GOSSIP_PULL = "GOSSIP_PULL"
    AGENT_ONLINE = "AGENT_ONLINE"
    AGENT_LEAVING = "AGENT_LEAVING"
    HEARTBEAT = "HEARTBEAT"
    LEARN = "LEARN"
    ASK = "ASK"
    FORGET = "FORGET"
    ANSWER = "ANSWER"
    ERROR = "ERROR"
    # Between hives of a federation (agent_runtime.federation): a fact escalated to the
    # parent or broadcast to a group; a question's statistics or search in another hive.
    HIVE_STORE = "HIVE_STORE"
    HIVE_QUERY = "HIVE_QUERY"


REPLY_TYPES = {
    MessageType.SHARD_QUERY: MessageType.SHARD_RESPONSE,
    MessageType.SHARD_STORE: MessageType.SHARD_STORE_ACK,
    MessageType.SHARD_DELETE: MessageType.SHARD_STORE_ACK,
    MessageType.GOSSIP_DIGEST: MessageType.GOSSIP_PULL,
    MessageType.LEARN: MessageType.ANSWER,
    MessageType.ASK: MessageType.ANSWER,
    MessageType.FORGET: MessageType.ANSWER,
    MessageType.HIVE_STORE: MessageType.ANSWER,
    MessageType.HIVE_QUERY: MessageType.ANSWER,
}


def new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message. ``correlation_id`` of a reply is the ``msg_id`` of its request."""

    type: MessageType
    hive: str
    sender: str
    target: str
    payload: dict[str, Any] = field(default_factory=dict)
    msg_id: str = field(default_factory=new_id)
    correlation_id: str = ""
    sent_at: float = field(default_factory=time.time)
    v: int = WIRE_VERSION
    # The sender's ring-view epoch (0: a sender without a view, e.g. an in-process hive).
    # A receiver with a newer view refuses writes placed under an older one (StaleEpoch);
    # one with an older view refreshes before it answers (hive_core.membership).
    epoch: int = 0

    def reply(self, payload: dict[str, Any], type: MessageType | None = None) -> Envelope:
        """The answer to this message, addressed back to its sender."""
        reply_type = type or REPLY_TYPES.get(self.type, MessageType.SHARD_RESPONSE)
        return Envelope(
            type=reply_type,
            hive=self.hive,
            sender=self.target,
            target=self.sender,
            payload=payload,
            correlation_id=self.msg_id,
        )

    def error(self, message: str, **detail: Any) -> Envelope:
        """A reply that reports a failure to handle this message (``detail``: e.g. a
        machine-readable ``code`` the caller maps to an exception class)."""
        return self.reply({"error": message, **detail}, type=MessageType.ERROR)

    def stale(self, epoch: int) -> Envelope:
        """The ERROR reply for a message sent under an older ring view than ``epoch``."""
        return self.error(f"{self.target} is at ring epoch {epoch}, message was sent at "
                          f"epoch {self.epoch}; refresh and resend", code="stale_epoch",
                          epoch=epoch)

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": self.v,
            "type": str(self.type),
            "msg_id": self.msg_id,
            "correlation_id": self.correlation_id,
            "hive": self.hive,
            "sender": self.sender,
            "target": self.target,
            "sent_at": self.sent_at,
            "epoch": self.epoch,
            "payload": self.payload,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Envelope:
        if not isinstance(data, dict):
            raise MessageRejected("an envelope must be a JSON object")
        if data.get("v") != WIRE_VERSION:
            raise MessageRejected(f"unsupported wire version {data.get('v')!r}")
        try:
            kind = MessageType(data["type"])
            payload = data["payload"]
            if not isinstance(payload, dict):
                raise MessageRejected("envelope payload must be an object")
            return cls(
                type=kind,
                hive=str(data["hive"]),
                sender=str(data["sender"]),
                target=str(data["target"]),
                payload=payload,
                msg_id=str(data["msg_id"]),
                correlation_id=str(data.get("correlation_id") or ""),
                sent_at=float(data["sent_at"]),
                epoch=int(data.get("epoch") or 0),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise MessageRejected(f"malformed envelope: {exc}") from exc


def encode(envelope: Envelope, max_bytes: int = MAX_MESSAGE_BYTES) -> bytes:
    """JSON bytes of ``envelope``; refuses to produce a message a receiver would reject."""
    try:
        data = json.dumps(envelope.to_dict(), separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise MessageRejected(f"payload is not plain data: {exc}") from exc
    if len(data) > max_bytes:
        raise MessageRejected(f"message of {len(data)} bytes exceeds the {max_bytes}-byte limit")
    return data


def decode(data: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> Envelope:
    """Parse and validate bytes received from a peer."""
    if len(data) > max_bytes:
        raise MessageRejected(f"message of {len(data)} bytes exceeds the {max_bytes}-byte limit")
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MessageRejected(f"message is not valid JSON: {exc}") from exc
    return Envelope.from_dict(raw)
