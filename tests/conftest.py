"""Shared fixtures. Tests never touch the network: the LLM key is removed for every test."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from cli_helpers import audit_touched_logs
from redis_helpers import delete_prefix, shared_redis, unique_prefix
from redis_hive import RedisHive
from state_helpers import AZURITE_BIN, Azurite


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)


@pytest.fixture(autouse=True)
def _no_secret_in_agent_logs() -> Iterator[None]:
    """After each test, the logs its CLI runs' agents wrote hold no known secret
    (cli_helpers audits every command's own output as it returns)."""
    yield
    audit_touched_logs()


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


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """One Azurite (Azure Storage emulator) for the session (each test takes its own
    container); stopped by PID. Missing Azurite fails under CI, skips (with the reason)
    elsewhere: .ci/run installs it."""
    if not AZURITE_BIN.exists():
        reason = (f"Azurite is not installed at {AZURITE_BIN}; run "
                  "`npm install --prefix .ci/azurite azurite` (or .ci/run)")
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    server = Azurite(tmp_path_factory.mktemp("azurite"))
    server.start()
    yield server
    server.stop()
