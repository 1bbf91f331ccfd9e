from __future__ import annotations

import json

import pytest

from hive_core.errors import MessageRejected
from hive_core.messages import WIRE_VERSION, Envelope, MessageType, decode, encode


def test_round_trip_and_reply_correlation() -> None:
    env = Envelope(MessageType.SHARD_QUERY, "h", "a1", "a2", {"op": "stats", "terms": ["ü"]})
    again = decode(encode(env))
    assert again == env
    reply = again.reply({"ok": 1})
    assert reply.type == MessageType.SHARD_RESPONSE
    assert (reply.sender, reply.target, reply.correlation_id) == ("a2", "a1", env.msg_id)


@pytest.mark.parametrize("raw", [
    b"not json", b"[]", json.dumps({"v": 99}).encode(),
    json.dumps({"v": WIRE_VERSION, "type": "NOPE", "payload": {}}).encode(),
    json.dumps({"v": WIRE_VERSION, "type": "ASK", "hive": "h", "sender": "s", "target": "t",
                "msg_id": "m", "sent_at": 1.0, "payload": []}).encode(),
])
def test_malformed_messages_rejected(raw: bytes) -> None:
    with pytest.raises(MessageRejected):
        decode(raw)


def test_size_limit_enforced_both_ways() -> None:
    env = Envelope(MessageType.LEARN, "h", "cli", "a0", {"turns": ["x" * 2000]})
    with pytest.raises(MessageRejected, match="exceeds"):
        encode(env, max_bytes=1000)
    with pytest.raises(MessageRejected, match="exceeds"):
        decode(encode(env), max_bytes=1000)


def test_non_plain_payload_refused() -> None:
    env = Envelope(MessageType.LEARN, "h", "cli", "a0", {"x": object()})
    with pytest.raises(MessageRejected):
        encode(env)
