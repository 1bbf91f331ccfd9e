"""Shared fixtures. Tests never touch the network: the LLM key is removed for every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis_helpers import delete_prefix, shared_redis, unique_prefix
from redis_hive import RedisHive


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)


@pytest.fixture
def amplihack_home(tmp_path, monkeypatch):
    """A private AMPLIHACK_HOME for tests that create hives."""
    home = tmp_path / "amplihack"
    monkeypatch.setenv("AMPLIHACK_HOME", str(home))
    return home


@pytest.fixture
def prefix() -> Iterator[str]:
    """A Redis key prefix of this test's own; every key under it is deleted afterwards."""
    admin = shared_redis()
    name = unique_prefix()
    yield name
    delete_prefix(admin, name)
    admin.close()


@pytest.fixture
def hives() -> Iterator[list[RedisHive]]:
    """Redis hives (groups of agent processes) a test starts; all killed afterwards."""
    made: list[RedisHive] = []
    yield made
    for hive in made:
        hive.stop_all()
