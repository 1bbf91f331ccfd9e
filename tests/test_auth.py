"""The message policy (hive_core.auth) and the secret file (hive_core.secret_store), in one
process: every refusal has its reason and its counter, the replay memory is bounded without
ever accepting a replay, a rotation's keys verify in the right order, and the decoder never
raises anything but MessageRejected, whatever the bytes (hypothesis).
"""

from __future__ import annotations

import base64
import hmac
import itertools
import json
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hive_core import secret_store
from hive_core.auth import (
    HEADER,
    OVERHEAD,
    BadMac,
    Hmac,
    KeySet,
    MessageAuth,
    Redelivered,
    Replayed,
    Stale,
    StaticKeys,
    Unsigned,
    ephemeral,
    new_key,
    parse_keys,
    with_key,
)
from hive_core.errors import ConfigError, MessageRejected
from hive_core.hive_config import AgentConfig, HiveConfig
from hive_core.messages import Envelope, MessageType, encode
from hive_core.transports.base import seal, unseal
from hive_core.transports.local import LocalEventBus
from hive_core.transports.unix import UnixSocketTransport

KEY = new_key()
BODY = encode(Envelope(MessageType.SHARD_QUERY, "h", "a", "b", {"op": "records"}))


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@given(st.binary(min_size=16, max_size=100), st.lists(st.binary(max_size=200), max_size=3))
def test_the_mac_is_rfc_2104_hmac_sha256(key: bytes, parts: list[bytes]) -> None:
    assert Hmac(key).digest(*parts) == hmac.digest(key, b"".join(parts), "sha256")


def test_a_signed_body_verifies_once_and_a_copy_is_a_replay() -> None:
    auth = ephemeral()
    frame = auth.sign(BODY)
    assert len(frame) == len(BODY) + OVERHEAD and frame.endswith(BODY)
    assert auth.verify(frame) == BODY
    with pytest.raises(Replayed):
        auth.verify(frame)
    assert auth.rejected() == {"bad_mac": 0, "stale": 0, "replayed": 1, "unsigned": 0}


@pytest.mark.parametrize("mutate, error, reason", [
    (lambda f: f[OVERHEAD:], Unsigned, "unsigned"),  # the bare JSON
    (lambda f: b"", Unsigned, "unsigned"),
    (lambda f: f[:-1] + bytes([f[-1] ^ 1]), BadMac, "bad_mac"),  # tampered body
    (lambda f: f[:HEADER.size] + bytes(32) + f[OVERHEAD:], BadMac, "bad_mac"),  # forged MAC
    (lambda f: f[:8] + bytes([f[8] ^ 1]) + f[9:], BadMac, "bad_mac"),  # timestamp changed
    (lambda f: with_key(new_key()).sign(BODY), BadMac, "bad_mac"),  # another hive's secret
])
def test_each_refusal_is_counted_under_its_reason(mutate, error, reason) -> None:
    auth = ephemeral()
    with pytest.raises(error):
        auth.verify(mutate(auth.sign(BODY)))
    assert auth.rejected()[reason] == 1 and sum(auth.rejected().values()) == 1


def test_a_reply_is_checked_for_its_mac_and_age_and_its_nonce_is_not_kept() -> None:
    """Replies are bound to their request by correlation id (the broker transport drops a
    copy: test_auth_e2e), so the policy remembers no reply nonce; everything else a request
    gets checked, and counted, is checked for a reply too."""
    clock = Clock()
    auth = MessageAuth(StaticKeys(KeySet(KEY, (KEY,))), window=60.0, clock=clock)
    frame = auth.sign(BODY)
    assert auth.verify_reply(frame) == BODY and auth.verify_reply(frame) == BODY
    assert len(auth.guard) == 0
    for bad, error in ((frame[OVERHEAD:], Unsigned), (frame[:-1] + b"x", BadMac),
                       (with_key(new_key()).sign(BODY), BadMac)):
        with pytest.raises(error):
            auth.verify_reply(bad)
    clock.now += 61
    with pytest.raises(Stale):
        auth.verify_reply(frame)
    clock.now -= 122  # sent a minute in the future (clock skew beyond the window)
    with pytest.raises(Stale):
        auth.verify_reply(frame)
    assert auth.rejected() == {"bad_mac": 2, "stale": 2, "replayed": 0, "unsigned": 1}
    clock.now += 61
    assert auth.verify(frame) == BODY  # as a request: claimed once...
    with pytest.raises(Replayed):
        auth.verify(frame)  # ...and refused after


def test_the_window_refuses_old_and_future_messages() -> None:
    key = new_key()
    sent, now = Clock(), Clock()
    sender = MessageAuth(StaticKeys(KeySet(key, (key,))), clock=sent)
    receiver = MessageAuth(StaticKeys(KeySet(key, (key,))), window=60, clock=now)
    frames = {}
    for label, at in (("old", now.now - 61), ("fresh", now.now - 59), ("future", now.now + 61)):
        sent.now = at
        frames[label] = sender.sign(BODY)
    with pytest.raises(Stale):
        receiver.verify(frames["old"])
    with pytest.raises(Stale):
        receiver.verify(frames["future"])
    assert receiver.verify(frames["fresh"]) == BODY
    assert receiver.rejected()["stale"] == 2


def test_replay_memory_is_bounded_and_never_forgets_into_acceptance() -> None:
    key = new_key()
    clock = Clock()
    auth = MessageAuth(StaticKeys(KeySet(key, (key,))), window=60, max_nonces=100, clock=clock)
    frames = []
    for _ in range(300):
        clock.now += 0.01
        frame = auth.sign(BODY)
        frames.append(frame)
        auth.verify(frame)
    assert len(auth.guard) <= 100
    for frame in frames:  # every one refused: replayed if remembered, else stale (too old)
        with pytest.raises((Replayed, Stale)):
            auth.verify(frame)


def test_a_released_nonce_is_accepted_again_and_a_redelivery_is_not_counted() -> None:
    auth = ephemeral()
    frame = auth.sign(BODY)
    auth.verify(frame)
    with pytest.raises(Redelivered):
        auth.verify(frame, redelivery=True)  # a broker's second delivery of a handled one
    auth.release(frame)  # its handling did not complete
    assert auth.verify(frame, redelivery=True) == BODY
    assert auth.rejected()["replayed"] == 0


def test_keys_parse_from_hex_and_base64_and_name_no_value() -> None:
    key, other = new_key(), new_key()
    assert parse_keys(key.hex(), "X") == [key]
    assert parse_keys(f"{base64.b64encode(key).decode()}, {other.hex()}", "X") == [key, other]
    for bad in ("", "zz-not-a-key!", "abcd"):
        with pytest.raises(ValueError) as err:
            parse_keys(bad, "AMPLIHACK_HIVE_SECRET")
        assert "AMPLIHACK_HIVE_SECRET" in str(err.value) and (not bad or bad not in
                                                              str(err.value))


def test_keyset_repr_never_shows_a_key() -> None:
    key = new_key()
    keys = KeySet(key, (key,))
    assert key.hex() not in repr(keys) and repr(key) not in repr(keys)


def test_env_secret_wins_over_the_file(tmp_path) -> None:
    secret_store.ensure(tmp_path)
    key = new_key()
    env_keys = secret_store.hive_keys(tmp_path, {secret_store.ENV_SECRET: key.hex()}).keys()
    assert env_keys.signing == key and env_keys.source == "env"
    file_keys = secret_store.hive_keys(tmp_path, {}).keys()
    assert file_keys.source == "file" and file_keys.signing != key
    with pytest.raises(ConfigError, match="no message secret"):
        secret_store.hive_keys(tmp_path / "absent", {})
    with pytest.raises(ConfigError, match=secret_store.ENV_SECRET):
        secret_store.hive_keys(tmp_path, {secret_store.ENV_SECRET: "nope"})


def test_create_writes_a_private_secret_and_keeps_it(amplihack_home) -> None:
    config = HiveConfig(name="sec", agents=(AgentConfig("a"),))
    config.save()
    path = secret_store.secret_path(config.directory)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = secret_store.read(path)
    assert len(first.current) == 32 and first.step == "retire"
    config.save()  # saving the config again keeps the secret
    assert secret_store.read(path) == first
    assert first.current.hex() not in repr(first)


def test_a_rotation_verifies_old_and_new_at_every_step(tmp_path) -> None:
    """What each step's signer produces, each step's verifier accepts: a hive whose agents
    are one step apart keeps answering. After the last step the old key is refused."""
    secret_store.ensure(tmp_path)
    path = secret_store.secret_path(tmp_path)
    old = secret_store.read(path)
    states = [old]
    for _ in secret_store.STEPS:
        states.append(secret_store.rotate_step(path))
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [s.step for s in states] == ["retire", "introduce", "switch", "retire"]
    assert [s.generation for s in states] == [1, 2, 3, 4]
    for before, after in itertools.pairwise(states):
        for signer, verifier in ((before, after), (after, before)):
            frame = MessageAuth(StaticKeys(signer.keyset())).sign(BODY)
            assert MessageAuth(StaticKeys(verifier.keyset())).verify(frame) == BODY
    with pytest.raises(BadMac):
        MessageAuth(StaticKeys(states[-1].keyset())).verify(
            MessageAuth(StaticKeys(old.keyset())).sign(BODY))


def test_file_keys_follow_a_changed_file_and_survive_a_broken_one(tmp_path) -> None:
    secret_store.ensure(tmp_path)
    path = secret_store.secret_path(tmp_path)
    keys = secret_store.FileKeys(path, interval=0.0)
    first = keys.keys()
    secret_store.rotate_step(path)
    assert keys.keys().generation == first.generation + 1
    path.write_text("{not json")
    assert keys.keys().generation == first.generation + 1  # kept, and logged
    with pytest.raises(ConfigError, match="not a valid hive secret") as err:
        secret_store.read(path)
    assert "{not json" not in str(err.value)


def test_the_strict_local_bus_signs_and_a_forged_frame_never_decodes() -> None:
    bus = LocalEventBus(strict=True)
    bus.bind("b", lambda env: env.reply({"ok": True}))
    [reply] = bus.request([Envelope(MessageType.SHARD_QUERY, "h", "a", "b", {})], 5.0)
    assert isinstance(reply, Envelope) and reply.payload == {"ok": True}
    with pytest.raises(BadMac):
        unseal(bus.auth, with_key(new_key()).sign(BODY), 1 << 20)
    bus.close()


def test_seal_keeps_the_wire_limit() -> None:
    auth = ephemeral()
    env = Envelope(MessageType.SHARD_QUERY, "h", "a", "b", {"blob": "x" * 900})
    assert len(seal(auth, env, 2000)) <= 2000
    with pytest.raises(MessageRejected, match="exceeds"):
        seal(auth, env, len(encode(env)) + OVERHEAD - 1)


def test_expired_nonces_are_forgotten_within_a_sweep_interval_and_still_refused() -> None:
    """The replay memory is swept lazily (hive_core.auth.ReplayGuard), but it is swept: once
    the window and a sweep interval have passed, old nonces are gone, and their messages
    are refused as stale all the same."""
    key = new_key()
    clock = Clock()
    auth = MessageAuth(StaticKeys(KeySet(key, (key,))), window=10, clock=clock)
    old = [auth.sign(BODY) for _ in range(50)]
    for frame in old:
        auth.verify(frame)
    assert len(auth.guard) == 50
    clock.now += 10 + auth.guard.SWEEP_INTERVAL + 0.01
    auth.verify(auth.sign(BODY))
    assert len(auth.guard) == 1
    for frame in old:
        with pytest.raises(Stale):
            auth.verify(frame)


def test_signature_then_body_is_what_sign_makes() -> None:
    """Stream transports frame ``signature(body)`` and ``body`` without joining them first:
    the same bytes as ``sign`` (up to the nonce), verified the same way."""
    auth = ephemeral()
    signed = auth.signature(BODY) + BODY
    assert len(signed) == len(auth.sign(BODY)) and signed[:4] == auth.sign(BODY)[:4]
    assert auth.verify(signed) == BODY


def test_a_large_signed_reply_crosses_a_real_socket_intact(tmp_path) -> None:
    """A reply far above the socket buffer: the listener writes it as length prefix + signed
    bytes without copying them together (framing.send_frame, partial sends), the client reads
    it whole and verifies it."""
    run = Path(tempfile.mkdtemp(prefix="ahbig", dir="/tmp"))  # short socket path
    key = new_key()
    blob = "".join(chr(97 + i % 26) for i in range(3_000_000))
    server = UnixSocketTransport(run, auth=with_key(key))
    client = UnixSocketTransport(run, auth=with_key(key))
    try:
        server.bind("b", lambda env: env.reply({"blob": blob}))
        for _ in range(2):  # the second one on the pooled connection
            [reply] = client.request([Envelope(MessageType.SHARD_QUERY, "h", "a", "b", {})],
                                     30.0)
            assert isinstance(reply, Envelope) and reply.payload["blob"] == blob
    finally:
        client.close()
        server.close()
        shutil.rmtree(run, ignore_errors=True)


@settings(max_examples=400, deadline=None)
@given(st.one_of(
    st.binary(max_size=300),
    st.tuples(st.integers(0, 400), st.integers(0, 255), st.integers(0, 2)).map(
        lambda m: _mutated(*m)),
))
def test_verify_and_decode_only_ever_raise_message_rejected(data: bytes) -> None:
    try:
        env = unseal(_FUZZ_AUTH, data, 1 << 20)
    except MessageRejected:
        return
    assert isinstance(env, Envelope)  # a mutation that left a valid frame


_FUZZ_AUTH = ephemeral()
_FUZZ_GOOD = json.dumps({"v": 1, "type": "LEARN", "msg_id": "m", "correlation_id": "",
                         "hive": "h", "sender": "x", "target": "a", "sent_at": 1.0,
                         "epoch": 0, "payload": {"turns": ["t"]}}).encode()


def _mutated(position: int, value: int, how: int) -> bytes:
    """A valid frame of the fuzz policy, then one byte changed, cut or appended."""
    frame = bytearray(_FUZZ_AUTH.sign(_FUZZ_GOOD))
    position %= len(frame)
    if how == 0:
        frame[position] = value
    elif how == 1:
        del frame[position:]
    else:
        frame.insert(position, value)
    return bytes(frame)


def test_rotate_secret_with_no_agent_running_and_its_usage_errors(amplihack_home, capsys,
                                                                  monkeypatch) -> None:
    from cli_helpers import cli

    assert cli(capsys, "create", "--name", "quiet", "--agents", "2").code == 0
    path = secret_store.secret_path(HiveConfig.load("quiet").directory)
    old = secret_store.read(path).current
    done = cli(capsys, "rotate-secret", "--hive", "quiet", "--json", "--timeout", "5")
    assert done.code == 0, done.err
    doc = done.json()
    assert doc["generation"] == 4 and doc["not_running"] == ["agent_0", "agent_1"]
    assert secret_store.read(path).current != old
    assert old.hex() not in done.out + done.err
    monkeypatch.setenv(secret_store.ENV_SECRET, new_key().hex())
    refused = cli(capsys, "rotate-secret", "--hive", "quiet")
    assert refused.code == 2 and len(refused.err.strip().splitlines()) == 1
    assert "Traceback" not in refused.err


def test_open_returns_the_verified_header_and_asks_for_a_redelivery_only_on_a_replay() -> None:
    auth = ephemeral()
    frame = auth.sign(BODY)
    asked: list[bool] = []

    def handled_here(answer: bool) -> bool:
        asked.append(answer)
        return answer

    body, nonce, sent_ms = auth.open(frame, lambda: handled_here(True))
    _magic, _kid, want_ms, want_nonce = HEADER.unpack(frame[:HEADER.size])  # the reference
    assert (body, nonce, sent_ms) == (BODY, want_nonce, want_ms)
    assert asked == []  # a first delivery never looks the record up
    with pytest.raises(Redelivered):  # the record says: this very entry was handled here
        auth.open(frame, lambda: handled_here(True))
    with pytest.raises(Replayed) as refused:  # a copy: refused, and counted
        auth.open(frame, lambda: handled_here(False))
    assert type(refused.value) is Replayed
    assert asked == [True, False]
    assert auth.rejected()["replayed"] == 1
    forged = frame[:-1] + bytes([frame[-1] ^ 1])
    with pytest.raises(BadMac):  # a tampered frame is refused before any record is asked
        auth.open(forged, lambda: handled_here(True))
    assert asked == [True, False]
