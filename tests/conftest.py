"""Shared fixtures. Tests never touch the network: the LLM key is removed for every test."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)


@pytest.fixture
def amplihack_home(tmp_path, monkeypatch):
    """A private AMPLIHACK_HOME for tests that create hives."""
    home = tmp_path / "amplihack"
    monkeypatch.setenv("AMPLIHACK_HOME", str(home))
    return home
