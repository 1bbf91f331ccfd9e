"""End to end through the installed ``amplihack-hive`` script with ``--transport redis``.

Real agent processes on the real Redis at 127.0.0.1:6379 (never skipped), under a key prefix
of this test's own (set in the hive's config.yaml; deleted afterwards): create, start, learn
the sample corpus, ask an agent that did not learn the fact, status counts = facts x RF,
stop; then no agent is live in Redis and no process is left.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from redis_helpers import REDIS_URL, delete_prefix, shared_redis, unique_prefix
from test_cli_e2e import CORPUS, Hive

from hive_core.hive_config import HiveConfig
from hive_core.transports.redis import RedisShardTransport

AGENTS = 4
RF = 3


@pytest.fixture
def redis_hive(tmp_path: Path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("AMPLIHACK_HOME", str(home))
    prefix = unique_prefix()
    h = Hive(home, "e2e-redis")
    created = h("create", "--name", h.name, "--agents", str(AGENTS), "--transport", "redis",
                "--connection-string", REDIS_URL)
    assert created.code == 0, created.err
    replace(h.config(), key_prefix=prefix).save()
    yield h, prefix
    h.kill_all()
    admin = shared_redis()
    delete_prefix(admin, prefix)
    admin.close()


@pytest.mark.slow
def test_redis_hive_life_cycle(redis_hive) -> None:
    hive, prefix = redis_hive
    assert HiveConfig.load(hive.name).transport == "redis"
    started = hive("start", "--hive", hive.name, "--json", "--timeout", "120")
    assert started.code == 0, started.err
    assert [a["outcome"] for a in started.json()["agents"]] == ["started"] * AGENTS

    learned = hive("learn", "--hive", hive.name, "--file", str(CORPUS), "--json")
    assert learned.code == 0, learned.err
    ldoc = learned.json()
    assert ldoc["turns"] == 40 and ldoc["failed_shards"] == []

    status = hive("status", "--hive", hive.name, "--json")
    assert status.code == 0, status.err
    sdoc = status.json()
    assert sdoc["transport"] == "redis"
    assert [a["status"] for a in sdoc["agents"]] == ["running"] * AGENTS
    assert sum(a["facts"] for a in sdoc["agents"]) == ldoc["unique_facts"] * RF

    answered = hive("ask", "--hive", hive.name, "--agent", "agent_3", "--json",
                    "Who leads Project Osprey?")
    assert answered.code == 0, answered.err
    adoc = answered.json()
    hits = [f for f in adoc["facts"] if "Hannah Schmidt" in f["content"]]
    assert hits and hits[0]["source_agent"] != "agent_3" and adoc["partial"] is False

    probe = RedisShardTransport(REDIS_URL, hive.name, key_prefix=prefix)
    try:
        assert probe.live_members() == {f"agent_{i}" for i in range(AGENTS)}
        stopped = hive("stop", "--hive", hive.name, "--json")
        assert stopped.code == 0, stopped.err
        assert hive.alive() == []
        assert probe.live_members() == set()  # every agent left on SIGTERM
    finally:
        probe.close()
    admin = shared_redis()
    try:
        assert list(admin.scan_iter(match=f"{prefix}:{hive.name}:*"))  # inboxes remain
        other = f"{prefix}:{hive.name}x:inbox:agent_0"  # a neighbour hive's key survives
        admin.xadd(other, {"k": "v"})
        purged = hive("delete", "--hive", hive.name, "--purge-data", "--json")
        assert purged.code == 0, purged.err
        assert list(admin.scan_iter(match=f"{prefix}:{hive.name}:*")) == []
        assert admin.exists(other) == 1
        assert any("Redis key(s)" in r for r in purged.json()["removed"])
    finally:
        admin.close()
