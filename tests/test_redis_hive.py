"""Agent processes joined through the real Redis at 127.0.0.1:6379 (never skipped).

Each test has its own key prefix (deleted afterwards); every child is killed by PID.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from redis_helpers import REDIS_URL, shared_redis
from redis_hive import RedisHive, expected_facts, placed_counts, redis_config

from hive_core.messages import MessageType

pytestmark = pytest.mark.slow

RF = 3
INCIDENT = ("Incident INC-2041 was caused by CVE-2024-3094 in xz-utils 5.6.0. "
            "It was patched on 2024-03-29, and the blast radius covered subnet 10.0.1.0/24.")
ATLAS = "Alice Chen leads the Atlas project. The Atlas deadline moved to 2024-06-01."


def test_two_hives_share_one_redis_without_crosstalk(tmp_path: Path, prefix: str,
                                                     hives: list[RedisHive]) -> None:
    names = ["a0", "a1", "a2"]
    one = RedisHive(redis_config("one", names, REDIS_URL, prefix, RF), tmp_path / "one")
    two = RedisHive(redis_config("two", names, REDIS_URL, prefix, RF), tmp_path / "two")
    hives += [one, two]
    for hive in (one, two):
        for name in names:
            hive.spawn(name)
    for hive in (one, two):
        hive.wait_ready(names, live_peers=2)

    assert one.send(MessageType.LEARN, "a0", {"turns": [INCIDENT]})["failed_shards"] == []
    assert two.send(MessageType.LEARN, "a1", {"turns": [ATLAS]})["failed_shards"] == []

    # Same agent names, same Redis, same prefix: each hive sees only its own facts.
    assert {n: one.status(n)["facts"] for n in names} == placed_counts(one.config, [INCIDENT])
    assert {n: two.status(n)["facts"] for n in names} == placed_counts(two.config, [ATLAS])
    in_one = one.send(MessageType.ASK, "a2", {"question": "Who leads Atlas?", "limit": 5})
    assert all("Atlas" not in f["content"] for f in in_one["facts"])
    in_two = two.send(MessageType.ASK, "a2", {"question": "Who leads Atlas?", "limit": 5})
    assert "Alice Chen" in in_two["facts"][0]["content"]
    in_two = two.send(MessageType.ASK, "a0", {"question": "What caused INC-2041?"})
    assert all("CVE-2024-3094" not in f["content"] for f in in_two["facts"])

    # Each hive's keys live under its own namespace, and membership is per hive.
    admin = shared_redis()
    keys = {k.decode() for k in admin.scan_iter(match=f"{prefix}:*", count=1000)}
    admin.close()
    assert keys and all(k.startswith((f"{prefix}:one:", f"{prefix}:two:")) for k in keys)
    assert {k for k in keys if ":inbox:" in k} == {
        f"{prefix}:{h}:inbox:{n}" for h in ("one", "two") for n in names}
    assert one.client.live_members() == set(names) == two.client.live_members()
    os.kill(one.procs["a1"].pid, 15)
    assert one.procs["a1"].wait(timeout=30) == 0
    assert one.client.live_members() == {"a0", "a2"}  # left on SIGTERM, at once
    assert two.client.live_members() == set(names)


def test_agents_in_two_process_groups_join_one_hive(tmp_path: Path, prefix: str,
                                                    hives: list[RedisHive]) -> None:
    """Two "machines": separate AMPLIHACK_HOMEs (each with its copy of the config), separate
    working directories, agents in their own process groups; only Redis is shared."""
    names = ["a0", "a1", "a2", "a3"]
    config = redis_config("joined", names, REDIS_URL, prefix, RF)
    east = RedisHive(config, tmp_path / "east" / "home", cwd=tmp_path / "east" / "cwd")
    west = RedisHive(config, tmp_path / "west" / "home", cwd=tmp_path / "west" / "cwd")
    hives += [east, west]
    for name in ("a0", "a1"):
        east.spawn(name)
    for name in ("a2", "a3"):
        west.spawn(name)
    east.wait_ready(["a0", "a1"], live_peers=3)
    west.wait_ready(["a2", "a3"], live_peers=3)
    groups = {os.getpgid(p.pid) for h in (east, west) for p in h.procs.values()}
    assert len(groups) == 4 and os.getpgid(0) not in groups

    learned = east.send(MessageType.LEARN, "a0", {"turns": [INCIDENT, ATLAS]})
    assert learned["failed_shards"] == []
    answer = west.send(MessageType.ASK, "a3", {"question": "What caused INC-2041?"})
    assert not answer["partial"]
    assert "CVE-2024-3094" in answer["facts"][0]["content"]
    assert answer["facts"][0]["source_agent"] == "a0"
    # Facts sit on ring owners on both machines, each exactly RF times.
    counts = {n: (east if n in ("a0", "a1") else west).status(n)["facts"] for n in names}
    assert counts == placed_counts(config, [INCIDENT, ATLAS])
    assert sum(counts.values()) == RF * len(expected_facts([INCIDENT, ATLAS]))
    assert west.status("a2")["live_peers"] == ["a0", "a1", "a3"]
