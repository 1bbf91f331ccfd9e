"""Redis-specific behaviour beyond the conformance suite: crash recovery (XAUTOCLAIM),
reconnect after a Redis restart, name claims, configuration and secrets.

Runs against the real Redis at 127.0.0.1:6379 (never skipped) and, for restarts, against a
private redis-server this test starts on a free port and stops by PID.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from redis_helpers import (
    REDIS_URL,
    PrivateRedis,
    free_port,
)

from hive_core.auth import BROKER_WINDOW, new_key, with_key
from hive_core.errors import AgentError, ConfigError, ConnectionLost
from hive_core.hive_config import HiveConfig
from hive_core.messages import Envelope, MessageType
from hive_core.redact import redact_secret
from hive_core.transports.base import check_reply
from hive_core.transports.redis import RedisShardTransport

REPO = Path(__file__).resolve().parents[1]


def query(target: str, payload: dict | None = None) -> Envelope:
    return Envelope(MessageType.SHARD_QUERY, "h", "client", target, payload or {})


def echo(env: Envelope) -> Envelope:
    return env.reply({"echo": env.payload})


_CRASHING_AGENT = textwrap.dedent("""
    import os, sys, time
    from hive_core.auth import with_key
    from hive_core.transports.redis import RedisShardTransport
    t = RedisShardTransport(sys.argv[1], "h", key_prefix=sys.argv[2],
                            auth=with_key(bytes.fromhex(sys.argv[3])))
    def die(env):
        os._exit(9)  # dies holding the request: read, never acknowledged
    t.bind("a", die)
    print("bound", flush=True)
    time.sleep(60)
""")


def test_request_survives_the_crash_of_its_handler(prefix: str) -> None:
    key = new_key()  # the hive's secret, shared by the three processes
    child = subprocess.Popen([sys.executable, "-c", _CRASHING_AGENT, REDIS_URL, prefix,
                              key.hex()], cwd=REPO, stdout=subprocess.PIPE, text=True)
    client = RedisShardTransport(REDIS_URL, "h", key_prefix=prefix,
                                 auth=with_key(key, BROKER_WINDOW))
    heir = RedisShardTransport(REDIS_URL, "h", key_prefix=prefix,
                               auth=with_key(key, BROKER_WINDOW))
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "bound"
        out: list = []
        env = query("a", {"n": 7})
        waiter = threading.Thread(target=lambda: out.extend(client.request([env], 30.0)))
        waiter.start()
        assert child.wait(timeout=20) == 9  # crashed inside the handler
        # A new incarnation of "a" claims the name (after the dead one's liveness expires),
        # XAUTOCLAIMs the pending request and answers it: the caller never knew.
        heir.bind("a", echo)
        waiter.join(30)
        assert not waiter.is_alive()
        reply = check_reply(out[0])
        assert reply.correlation_id == env.msg_id and reply.payload == {"echo": {"n": 7}}
        assert heir.inbox("a").redelivered == 1
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
        client.close()
        heir.close()


def test_reconnects_after_redis_restarts(tmp_path: Path, caplog) -> None:
    server_redis = PrivateRedis(tmp_path / "redis")
    server_redis.start()
    caplog.set_level(logging.WARNING)
    server = RedisShardTransport(server_redis.url, "h", key_prefix="p")
    client = RedisShardTransport(server_redis.url, "h", key_prefix="p")
    try:
        server.bind("a", echo)
        assert check_reply(client.request([query("a", {"i": 0})], 5.0)[0]).payload
        server_redis.stop()
        [down] = client.request([query("a", {"i": 1})], 1.0)
        assert isinstance(down, ConnectionLost) and "unreachable" in str(down)
        server_redis.start()  # same port, empty: no streams, no groups, no members
        deadline = time.monotonic() + 30
        while True:
            [reply] = client.request([query("a", {"i": 2})], 2.0)
            if isinstance(reply, Envelope):
                break
            assert time.monotonic() < deadline, f"never reconnected: {reply}"
            time.sleep(0.2)
        assert check_reply(reply).payload == {"echo": {"i": 2}}
        assert server.live_members() == {"a"}  # re-registered by its heartbeat
        text = caplog.text
        assert "receiving from Redis at" in text and "reconnected to Redis at" in text
    finally:
        client.close()
        server.close()
        server_redis.stop()


def test_a_live_agent_name_cannot_be_claimed_twice(prefix: str) -> None:
    first = RedisShardTransport(REDIS_URL, "h", key_prefix=prefix,
                                heartbeat_interval=0.2, alive_ttl=1.0)
    second = RedisShardTransport(REDIS_URL, "h", key_prefix=prefix,
                                 heartbeat_interval=0.2, alive_ttl=1.0)
    try:
        first.bind("a", echo)
        with pytest.raises(AgentError, match="already running"):
            second.bind("a", echo)  # waited out a TTL: the holder kept heartbeating
        first.unbind("a")
        second.bind("a", lambda env: env.reply({"by": "second"}))
        assert check_reply(first.request([query("a")], 5.0)[0]).payload == {"by": "second"}
    finally:
        first.close()
        second.close()


def test_bad_connection_strings_are_config_errors() -> None:
    for bad in ("http://h:6379", "localhost:6379", "unix:///tmp/r.sock"):
        with pytest.raises(ConfigError, match="redis://"):
            RedisShardTransport(bad, "h")
        with pytest.raises(ConfigError, match="redis://"):
            HiveConfig(name="h", transport="redis", connection_string=bad)
    with pytest.raises(ConfigError, match="key_prefix"):
        HiveConfig(name="h", key_prefix="has space")
    cfg = HiveConfig(name="h", transport="redis", connection_string="rediss://h:6380/1")
    assert cfg.with_env_overrides({"AMPLIHACK_MEMORY_KEY_PREFIX": "team-b"}).key_prefix == "team-b"


def test_the_password_is_never_shown(caplog) -> None:
    secret = "s3cret-Pa55"
    url = f"redis://:{secret}@127.0.0.1:{free_port()}/0"  # nothing listens there
    caplog.set_level(logging.DEBUG)
    transport = RedisShardTransport(url, "h", key_prefix="p")
    try:
        with pytest.raises(ConnectionLost) as info:
            transport.bind("a", echo)
        [lost] = transport.request([query("b")], 0.5)
        assert isinstance(lost, ConnectionLost)
    finally:
        transport.close()
    shown = [str(info.value), str(lost), caplog.text, repr(transport.where)]
    assert all(secret not in text for text in shown)
    assert "***" in str(info.value)
    assert secret not in redact_secret(url)
    config = HiveConfig(name="h", transport="redis", connection_string=url)
    assert secret not in str(config.to_dict(redact=True))
