"""Replays through the broker by someone who can write to Redis but has not the hive's
secret: a captured request written back after the agent restarted, or dressed up as a
redelivery (put on the consumer group's pending list, so the agent's XAUTOCLAIM hands it
out as one). Each changes nothing (the handler's side effect, a line in a file, is
checked) and is counted as ``replayed``; a genuine redelivery after a crash still runs
exactly once.

Real Redis at 127.0.0.1:6379 under this test's own key prefix; where the claim is about a
restart, the agent is a real process (built through the registry, as the agent runtime
builds it), killed and started again by PID.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from redis_helpers import REDIS_URL

from hive_core.auth import BROKER_WINDOW, new_key, with_key
from hive_core.messages import Envelope, MessageType
from hive_core.secret_store import ENV_SECRET
from hive_core.transports import redis as redis_transport
from hive_core.transports.base import check_reply
from hive_core.transports.redis import GROUP, RedisShardTransport
from hive_core.transports.redis_membership import RedisKeys

REPO = Path(__file__).resolve().parents[1]
DEADLINE = 30.0

# One agent "a" of hive "h" on Redis, opened as the agent runtime opens it (registry, the
# hive's data folder). Its handler appends each request's payload to a file: the side
# effect a replay must not repeat. With a crash marker path, the first request kills it
# mid-handling (before the side effect) and leaves the marker behind.
_AGENT = textwrap.dedent("""
    import json, os, sys
    from hive_core.hive_config import AgentConfig, HiveConfig
    from hive_core.transports.registry import open_transport
    url, prefix, storage, effects, crash_marker = sys.argv[1:6]
    config = HiveConfig(name="h", transport="redis", connection_string=url,
                        key_prefix=prefix, storage_path=storage, agents=(AgentConfig("a"),))
    t = open_transport(config)
    def handle(env):
        if env.payload.get("op") == "rejected":
            return env.reply(t.auth.rejected())
        if crash_marker and not os.path.exists(crash_marker):
            open(crash_marker, "w").close()
            os._exit(9)
        with open(effects, "a") as f:
            f.write(json.dumps(env.payload) + "\\n")
        return env.reply({"done": env.payload})
    t.bind("a", handle)
    print("bound", flush=True)
    sys.stdin.read()
    t.close()
""")


def query(payload: dict) -> Envelope:
    return Envelope(MessageType.SHARD_QUERY, "h", "client", "a", payload)


def until(check: Callable[[], bool], what: str, deadline: float = DEADLINE) -> None:
    end = time.monotonic() + deadline
    while not check():
        assert time.monotonic() < end, f"not within {deadline:g}s: {what}"
        time.sleep(0.05)


class Attacker:
    """Write access to the hive's Redis, no secret: captures and writes back entries."""

    def __init__(self, prefix: str) -> None:
        self.client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
        self.inbox = RedisKeys(prefix, "h").inbox("a")

    def capture(self, index: int = 0) -> tuple[bytes, dict[bytes, bytes]]:
        """The ``index``-th request ever sent to the agent (entries outlive their XACK)."""
        return self.client.xrange(self.inbox)[index]

    def copy(self, fields: dict[bytes, bytes]) -> None:
        """The plain replay: the captured entry added again."""
        self.client.xadd(self.inbox, fields)

    def copy_as_redelivery(self, fields: dict[bytes, bytes]) -> None:
        """A copy put straight on the pending list, as a consumer that died holding it with
        a delivery count of 3 and an hour idle: the agent's XAUTOCLAIM takes it over as a
        redelivery. In one transaction, so the agent's blocked read never sees it new."""
        pipe = self.client.pipeline(transaction=True)
        pipe.xadd(self.inbox, fields)
        pipe.xreadgroup(GROUP, "ghost", {self.inbox: ">"}, count=1)
        entry_id = pipe.execute()[0]
        self.pend(entry_id, force=False)

    def pend(self, entry_id: bytes, *, force: bool = True) -> None:
        """Put ``entry_id`` (back) on the pending list, as above; ``force`` also for an entry
        the agent acknowledged long ago."""
        self.client.xclaim(self.inbox, GROUP, "ghost", 0, [entry_id], idle=3_600_000,
                           retrycount=3, force=force)

    def pending(self) -> int:
        return int(self.client.xpending(self.inbox, GROUP)["pending"])

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def attacker(prefix: str) -> Iterator[Attacker]:
    made = Attacker(prefix)
    yield made
    made.close()


class AgentProcess:
    """The agent "a" in a process of its own (see _AGENT)."""

    def __init__(self, tmp: Path, prefix: str, secret: bytes, crash_marker: str = "") -> None:
        self.effects = tmp / "effects.jsonl"
        env = {**os.environ, ENV_SECRET: secret.hex(), "AMPLIHACK_HOME": str(tmp / "home"),
               "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _AGENT, REDIS_URL, prefix, str(tmp / "data"),
             str(self.effects), crash_marker],
            cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def wait_bound(self) -> None:
        assert self.proc.stdout is not None
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()))
        reader.start()
        reader.join(DEADLINE)
        assert line and line[0].strip() == "bound", f"agent did not start: {line}"

    def kill(self) -> None:
        """kill -9: no drain, no clean close of anything."""
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        assert self.proc.wait(timeout=DEADLINE) == 0

    def effects_seen(self) -> list[dict]:
        if not self.effects.exists():
            return []
        return [json.loads(line) for line in self.effects.read_text().splitlines()]


@pytest.fixture
def agents() -> Iterator[list[AgentProcess]]:
    made: list[AgentProcess] = []
    yield made
    for agent in made:
        if agent.proc.poll() is None:
            agent.proc.kill()
            agent.proc.wait(timeout=10)


def replayed(client: RedisShardTransport) -> int:
    """The agent's own count of refused replays (asked over the transport)."""
    reply = check_reply(client.request([query({"op": "rejected"})], 10.0)[0])
    return int(reply.payload["replayed"])


def test_a_captured_request_replayed_after_the_agent_restarts_changes_nothing(
        tmp_path: Path, prefix: str, attacker: Attacker, agents: list[AgentProcess]) -> None:
    secret = new_key()
    client = RedisShardTransport(REDIS_URL, "h", key_prefix=prefix,
                                 auth=with_key(secret, BROKER_WINDOW))
    try:
        agents.append(first := AgentProcess(tmp_path, prefix, secret))
        first.wait_bound()
        check_reply(client.request([query({"n": 1})], 10.0)[0])
        assert first.effects_seen() == [{"n": 1}]
        _entry, fields = attacker.capture()
        first.kill()
        # While it is down: a plain copy, and a copy dressed up as a redelivery (the new
        # incarnation's XAUTOCLAIM takes it over from a "crashed" consumer).
        attacker.copy(fields)
        attacker.copy_as_redelivery(fields)
        agents.append(second := AgentProcess(tmp_path, prefix, secret))
        second.wait_bound()
        until(lambda: attacker.pending() == 0, "both copies taken and acknowledged")
        assert replayed(client) == 2
        check_reply(client.request([query({"n": 2})], 10.0)[0])  # still serving
        assert second.effects_seen() == [{"n": 1}, {"n": 2}]
    finally:
        client.close()


def test_a_genuine_redelivery_after_a_crash_mid_handling_runs_exactly_once(
        tmp_path: Path, prefix: str, attacker: Attacker, agents: list[AgentProcess]) -> None:
    secret = new_key()
    client = RedisShardTransport(REDIS_URL, "h", key_prefix=prefix,
                                 auth=with_key(secret, BROKER_WINDOW))
    marker = tmp_path / "crashed"
    try:
        agents.append(first := AgentProcess(tmp_path, prefix, secret, str(marker)))
        first.wait_bound()
        out: list = []
        asker = threading.Thread(
            target=lambda: out.extend(client.request([query({"n": 1})], DEADLINE)))
        asker.start()
        assert first.proc.wait(timeout=DEADLINE) == 9 and marker.exists()  # died holding it
        agents.append(second := AgentProcess(tmp_path, prefix, secret, str(marker)))
        second.wait_bound()
        asker.join(DEADLINE)
        assert check_reply(out[0]).payload == {"done": {"n": 1}}  # the redelivery ran
        entry, fields = attacker.capture()
        attacker.copy(fields)
        until(lambda: replayed(client) == 1, "the copy refused")
        second.stop()  # a clean restart this time
        # While it is down: the handled entry itself back on the pending list, a copy, and a
        # copy dressed up as a redelivery.
        attacker.pend(entry)
        attacker.copy(fields)
        attacker.copy_as_redelivery(fields)
        agents.append(third := AgentProcess(tmp_path, prefix, secret, str(marker)))
        third.wait_bound()
        until(lambda: attacker.pending() == 0, "all three taken and acknowledged")
        # The copies are new entries: counted. The old entry itself may be a redelivery whose
        # acknowledgement was lost in the restart: not counted, and not run either.
        assert replayed(client) == 2
        assert third.effects_seen() == [{"n": 1}]
    finally:
        client.close()


def test_a_copy_dressed_up_as_a_redelivery_is_refused_and_counted(
        prefix: str, attacker: Attacker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_transport, "RECLAIM_INTERVAL", 0.2)  # reclaim idle ones soon
    secret = new_key()
    server = RedisShardTransport(REDIS_URL, "h", key_prefix=prefix,
                                 auth=with_key(secret, BROKER_WINDOW))
    client = RedisShardTransport(REDIS_URL, "h", key_prefix=prefix,
                                 auth=with_key(secret, BROKER_WINDOW))
    runs: list[dict] = []
    server.bind("a", lambda env: (runs.append(env.payload), env.reply({}))[1])
    try:
        check_reply(client.request([query({"n": 1})], 10.0)[0])
        entry, fields = attacker.capture()
        attacker.copy_as_redelivery(fields)  # a new entry, pending with a forged count
        until(lambda: attacker.pending() == 0, "the copy taken and acknowledged")
        assert server.auth.rejected()["replayed"] == 1
        # The handled entry itself, put back on the pending list: its XACK was seen to take
        # effect before, so only a Redis writer can have put it back.
        attacker.pend(entry)
        until(lambda: attacker.pending() == 0, "the entry taken and acknowledged")
        assert server.auth.rejected()["replayed"] == 2
        assert server.inbox("a").redelivered == 2  # both did look like redeliveries
        assert runs == [{"n": 1}]
    finally:
        client.close()
        server.close()


def test_a_send_retried_after_a_lost_answer_is_not_counted_as_a_replay(
        tmp_path: Path, prefix: str, agents: list[AgentProcess]) -> None:
    """The connection fails after Redis stored the request (here: the first send script
    runs, then the client sees a timeout), so the client sends again. The copy is signed
    afresh: the agent may run it twice (idempotent handling), but counts no attack.
    Sending the same bytes again made the agent refuse the copy as ``replayed``."""
    secret = new_key()
    client = RedisShardTransport(REDIS_URL, "h", key_prefix=prefix,
                                 auth=with_key(secret, BROKER_WINDOW))
    real = client.broker._send_script
    lost: list[bool] = []

    def answer_lost(**kwargs):  # the fault: stored, then the answer never arrives
        result = real(**kwargs)
        if not lost:
            lost.append(True)
            raise redis.TimeoutError("the answer to the send was lost")
        return result

    try:
        agents.append(agent := AgentProcess(tmp_path, prefix, secret))
        agent.wait_bound()
        client.broker._send_script = answer_lost
        reply = check_reply(client.request([query({"n": 1})], 10.0)[0])
        client.broker._send_script = real
        assert lost and reply.payload == {"done": {"n": 1}}
        until(lambda: len(agent.effects_seen()) == 2, "both copies handled")
        assert agent.effects_seen() == [{"n": 1}, {"n": 1}]
        assert replayed(client) == 0
    finally:
        client.close()


def test_a_copied_reply_reaches_no_other_request_and_is_not_counted(
        prefix: str, attacker: Attacker) -> None:
    """Replies are checked for their MAC and age but not remembered by nonce: a genuine reply
    written back to the asker's stream while its next request waits finds no request under
    its correlation id and is dropped; the waiting request gets its own answer."""
    secret = new_key()
    server = RedisShardTransport(REDIS_URL, "h", key_prefix=prefix,
                                 auth=with_key(secret, BROKER_WINDOW))
    client = RedisShardTransport(REDIS_URL, "h", key_prefix=prefix,
                                 auth=with_key(secret, BROKER_WINDOW))
    entered = threading.Event()

    def answer(env: Envelope) -> Envelope:
        if env.payload["n"] == 2:
            entered.set()
            time.sleep(1.0)  # time for the copy to arrive first
        return env.reply({"n": env.payload["n"]})

    server.bind("a", answer)
    stream = client.broker.reply_address()
    captured: list = []  # the asker deletes a reply once read: watch the stream as it comes
    watcher = threading.Thread(target=lambda: captured.extend(
        attacker.client.xread({stream: "$"}, count=1, block=10_000)))
    try:
        check_reply(client.request([query({"n": 0})], 10.0)[0])  # the stream exists
        watcher.start()
        time.sleep(0.2)  # the watcher's XREAD is blocked before the reply is written
        assert check_reply(client.request([query({"n": 1})], 10.0)[0]).payload == {"n": 1}
        watcher.join(10)
        [(_, [(_, first_reply)])] = captured
        out: list[Envelope] = []
        asker = threading.Thread(target=lambda: out.append(
            check_reply(client.request([query({"n": 2})], 10.0)[0])))
        asker.start()
        assert entered.wait(10)
        attacker.client.xadd(stream, first_reply)  # the genuine reply to request 1, again
        asker.join(15)
        assert out and out[0].payload == {"n": 2}
        assert client.auth.rejected() == {"bad_mac": 0, "stale": 0, "replayed": 0,
                                          "unsigned": 0}
        assert len(client.auth.guard) == 0
    finally:
        client.close()
        server.close()
