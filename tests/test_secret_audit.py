"""The secret audit of tests/cli_helpers.py, proven to bite, and a password-protected Redis
hive run end to end under it.

Every CLI run of every test is audited (cli_helpers.audit_run: stdout, stderr, agents'
logs); this module shows that the audit fails when a secret is printed or logged, and runs
every reporting command against a private ``redis-server --requirepass`` whose password
holds ``/``, ``@``, ``:`` and ``%`` -- the characters the old redaction let through.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from cli_helpers import SecretLeak, audit_touched_logs, cli, known_secrets
from redis_helpers import free_port
from test_cli_e2e import Hive

PASSWORD = f"Pw/x@y:z%-{secrets.token_hex(6)}"


def redis_url(password: str, port: int) -> str:
    return f"redis://:{quote(password, safe='')}@127.0.0.1:{port}/0"


def test_the_audit_fails_when_a_command_prints_a_secret(amplihack_home, capsys, monkeypatch):
    url = redis_url(PASSWORD, 6399)
    assert cli(capsys, "create", "--name", "leaky", "--transport", "redis",
               "--connection-string", url).code == 0
    assert {PASSWORD, quote(PASSWORD, safe="")} <= known_secrets(amplihack_home, [], {})
    assert cli(capsys, "show", "--hive", "leaky", "--json").code == 0  # redacted: no leak
    monkeypatch.setattr("hive_core.hive_config.redact_secret", lambda text: text)
    with pytest.raises(SecretLeak, match="stdout"):
        cli(capsys, "show", "--hive", "leaky", "--json")


def test_the_audit_fails_when_an_agent_logs_a_secret(amplihack_home, capsys):
    assert cli(capsys, "create", "--name", "leaky", "--transport", "redis",
               "--connection-string", redis_url(PASSWORD, 6399)).code == 0
    logs = amplihack_home / "hives" / "leaky" / "logs"
    logs.mkdir()
    (logs / "agent_0.log").write_text(f"connecting with {PASSWORD}\n")
    with pytest.raises(SecretLeak, match=r"agent_0\.log"):
        cli(capsys, "list")
    (logs / "agent_0.log").write_text("connecting\n")
    cli(capsys, "list")
    (logs / "agent_0.log").write_text(f"later: {quote(PASSWORD, safe='')}\n")
    with pytest.raises(SecretLeak):  # what the conftest fixture runs after every test
        audit_touched_logs()


@pytest.fixture
def protected_redis() -> Iterator[int]:
    """A private redis-server with ``requirepass``; stopped by its PID."""
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="rpw", dir="/tmp"))
    log = (workdir / "redis.log").open("w")
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--requirepass",
         PASSWORD, "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=log, stderr=log)
    log.close()
    client = redis.Redis(port=port, password=PASSWORD, socket_timeout=1)
    deadline = time.monotonic() + 15
    try:
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert proc.poll() is None and time.monotonic() < deadline, "no redis-server"
                time.sleep(0.05)
        yield port
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.slow
def test_a_password_protected_redis_hive_never_shows_its_password(protected_redis: int):
    home = Path(tempfile.mkdtemp(prefix="sa", dir="/tmp")) / "h"
    hive = Hive(home, "guarded")
    debug = {"AMPLIHACK_LOG_LEVEL": "DEBUG"}
    wrong = f"Wr0ng/pa@ss-{secrets.token_hex(4)}"
    try:
        created = hive("create", "--name", "guarded", "--agents", "2", "--transport", "redis",
                       "--replication-factor", "2", "--shard-backend", "memory",
                       "--key-prefix", f"audit{secrets.token_hex(4)}",
                       "--connection-string", redis_url(PASSWORD, protected_redis), "--json")
        assert created.code == 0, created.err
        assert PASSWORD in known_secrets(home, [], {})  # the audit has something to find
        started = hive("start", "--hive", "guarded", "--timeout", "120", "--json", env=debug)
        assert started.code == 0, started.err
        learned = hive("learn", "--hive", "guarded", "--text",
                       "Ada Lovelace leads Project Apollo.", "--json")
        assert learned.code == 0, learned.err
        asked = hive("ask", "--hive", "guarded", "--json", "Who leads Project Apollo?")
        assert asked.code == 0 and "Apollo" in asked.out, asked.err
        for argv in (["show"], ["show", "--json"], ["status"], ["status", "--json"],
                     ["logs", "--merge"], ["logs", "--json", "--lines", "1000"]):
            res = hive(*argv[:1], "--hive", "guarded", *argv[1:])
            assert res.code == 0, (argv, res.err)
        assert "redis://***@127.0.0.1" in hive("show", "--hive", "guarded").out
        assert hive("list", "--json").code == 0

        # The wrong password: start fails with one line that shows neither password.
        made = hive("create", "--name", "wrongpw", "--agents", "1", "--transport", "redis",
                    "--shard-backend", "memory",
                    "--connection-string", redis_url(wrong, protected_redis))
        assert made.code == 0, made.err
        failed = hive("start", "--hive", "wrongpw", "--timeout", "20", "--json", env=debug)
        assert failed.code == 1
        assert len(failed.err.strip().splitlines()) == 1, failed.err
        assert "Traceback" not in failed.err + failed.out
        assert wrong not in failed.err + failed.out  # audited too: it is in a config

        stopped = hive("stop", "--hive", "guarded", "--json")
        assert stopped.code == 0, stopped.err
        assert hive("stop", "--hive", "wrongpw").code == 0
    finally:
        hive.kill_all()
        audit_touched_logs()  # the logs as the agents left them, before they are removed
        shutil.rmtree(home.parent, ignore_errors=True)
