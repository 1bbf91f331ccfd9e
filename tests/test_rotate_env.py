"""``rotate-secret`` on a hive whose agents take their key from ``AMPLIHACK_HIVE_SECRET``.

Through the real CLI and real agent processes (Unix sockets). A running agent keyed from the
environment cannot follow the secret file, so the live rotation must refuse with one line
before it writes anything (it used to write the first step and then fail or time out, half
way), and ``--env`` must rotate one step per run -- checking that the agents were restarted
with the previous step's value before it writes the next one -- until the old key is refused.
Every run's output (and the agents' logs) is audited for the keys by tests/cli_helpers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
from pathlib import Path

import pytest
from cli_helpers import cli_process

from hive_cli import supervisor
from hive_core import secret_store
from hive_core.auth import new_key, with_key
from hive_core.errors import MessageRejected
from hive_core.hive_config import HiveConfig
from hive_core.messages import Envelope, MessageType
from hive_core.transports.unix import UnixSocketTransport

pytestmark = pytest.mark.slow

ENV = secret_store.ENV_SECRET


class EnvHive:
    """A hive whose agents are started with ``AMPLIHACK_HIVE_SECRET`` set."""

    def __init__(self, home: Path, name: str) -> None:
        self.home, self.name, self.value = home, name, ""
        self.cli_ok("create", "--name", name, "--agents", "2", "--shard-backend", "memory")

    def cli(self, *argv: str, env: dict[str, str] | None = None):
        return cli_process(self.home, *argv, env=env, timeout=120)

    def cli_ok(self, *argv: str, env: dict[str, str] | None = None) -> str:
        res = self.cli(*argv, env=env)
        assert res.code == 0, f"{argv}: {res.err}"
        return res.out

    @property
    def path(self) -> Path:
        return secret_store.secret_path(HiveConfig.load(self.name).directory)

    def start(self, value: str) -> None:
        """(Re)start every agent with ``AMPLIHACK_HIVE_SECRET=value``."""
        if self.value:
            self.cli_ok("stop", "--hive", self.name, env={ENV: self.value})
        self.value = value
        self.cli_ok("start", "--hive", self.name, env={ENV: value})

    def kill(self) -> None:
        self.cli("stop", "--hive", self.name, env={ENV: self.value} if self.value else None)
        config = HiveConfig.load(self.name)
        for agent in config.agent_names():  # whatever stop left: killed by PID
            proc = supervisor.live_process(supervisor.read_pid_or_none(config, agent)[0])
            if proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "home"
    monkeypatch.setenv("AMPLIHACK_HOME", str(path))
    monkeypatch.delenv(ENV, raising=False)
    return path


@pytest.fixture
def made():
    hives: list[EnvHive] = []
    yield hives
    for hive in hives:
        hive.kill()


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_the_live_rotation_refuses_env_keyed_agents_and_writes_nothing(home, made) -> None:
    hive = EnvHive(home, "envk")
    made.append(hive)
    hive.start(secret_store.env_value(secret_store.read(hive.path)))  # as deploy.sh passes it
    before = hive.path.read_bytes()

    res = hive.cli("rotate-secret", "--hive", "envk", "--timeout", "10")
    line = one_line(res.err)
    assert res.code == 1 and "nothing was changed" in line and ENV in line, line
    assert "--env" in line and "agent_0" in line and "agent_1" in line, line
    assert hive.path.read_bytes() == before  # the old command wrote step 1 first

    res = hive.cli("rotate-secret", "--hive", "envk", env={ENV: hive.value})
    assert res.code == 2 and ENV in one_line(res.err)
    res = hive.cli("rotate-secret", "--hive", "envk", "--env-file", str(home / "x.env"))
    assert res.code == 2 and "--env" in one_line(res.err)
    assert hive.path.read_bytes() == before and not (home / "x.env").exists()


def test_agents_keyed_with_another_secret_stop_the_rotation_before_it_starts(home, made) -> None:
    hive = EnvHive(home, "other")
    made.append(hive)
    hive.start(new_key().hex())
    before = hive.path.read_bytes()
    res = hive.cli("rotate-secret", "--hive", "other", "--timeout", "10")
    line = one_line(res.err)
    assert res.code == 1 and "nothing was changed" in line and "bad_mac" in line, line
    assert hive.path.read_bytes() == before
    res = hive.cli("rotate-secret", "--hive", "other", "--env")
    assert res.code == 1 and "nothing was changed" in one_line(res.err)
    assert hive.path.read_bytes() == before


def test_env_rotation_takes_a_step_per_restart_and_then_refuses_the_old_key(home, made) -> None:
    hive = EnvHive(home, "envr")
    made.append(hive)
    old = secret_store.read(hive.path)
    hive.start(secret_store.env_value(old))
    env_file = home / "hive.env"

    steps = []
    for number, step in enumerate(secret_store.STEPS, start=1):
        res = hive.cli("rotate-secret", "--hive", "envr", "--env", "--env-file", str(env_file))
        assert res.code == 0, res.err
        assert f"step {number}/3 ({step})" in res.out and str(env_file) in res.out, res.out
        written = secret_store.read(hive.path)
        assert written.step == step and written.generation == old.generation + number
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        assert env_file.read_text() == f"{ENV}={secret_store.env_value(written)}\n"
        steps.append(written)
        if step == "introduce":
            # Not restarted yet: the agents do not accept the new key, so the next step
            # (which signs with it) is refused and nothing is written.
            before = hive.path.read_bytes()
            res = hive.cli("rotate-secret", "--hive", "envr", "--env", "--timeout", "5")
            line = one_line(res.err)
            assert res.code == 1 and "nothing was changed" in line and "agent_0" in line
            assert hive.path.read_bytes() == before
        hive.start(env_file.read_text().strip().split("=", 1)[1])

    new = steps[-1]
    assert new.current != old.current and new.next is None and new.previous is None
    assert steps[0].next == new.current  # the key introduced is the key kept
    config = HiveConfig.load("envr")
    with_old = UnixSocketTransport(config.run_dir, auth=with_key(old.current))
    try:
        [reply] = with_old.request([Envelope(MessageType.SHARD_QUERY, "envr", "cli", "agent_0",
                                             {"op": "status"})], 5.0)
    finally:
        with_old.close()
    assert isinstance(reply, MessageRejected) and "bad_mac" in str(reply)
    status = hive.cli("status", "--hive", "envr", "--json")  # the CLI follows the file
    assert status.code == 0 and all(r["status"] == "running" for r in status.json()["agents"])

    before = hive.path.read_bytes()
    res = hive.cli("rotate-secret", "--hive", "envr", "--env", "--env-file", "-")
    assert res.code == 2 and "terminal" in one_line(res.err)  # stdout is a pipe here
    res = hive.cli("rotate-secret", "--hive", "envr", "--env", "--env-file", "-", "--json")
    assert res.code == 2 and "--json" in one_line(res.err)
    assert hive.path.read_bytes() == before
