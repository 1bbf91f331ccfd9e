"""Bad input through the installed ``amplihack-hive`` script: one clear line, the right exit
code (2 for usage errors, 1 for failures), no traceback, and no hive config changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import cli_process, config_snapshot


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """One home with a good local hive, an Event Hubs hive (a transport the CLI cannot use
    yet) and a hive with a broken config."""
    home = tmp_path_factory.mktemp("bad") / "home"
    assert cli_process(home, "create", "--name", "good", "--agents", "3").code == 0
    assert cli_process(home, "create", "--name", "broken").code == 0
    (home / "hives" / "broken" / "config.yaml").write_text("name: broken\nagents: [oops\n")
    files = home.parent / "files"
    files.mkdir()
    (files / "empty.txt").write_text("")
    (files / "blank.txt").write_text("\n   \n\n")
    (files / "huge.txt").write_bytes(b"ok line\n" + b"x" * (10 * 1024 * 1024) + b"\n")
    (files / "nocontent.jsonl").write_text(json.dumps({"content": "fine"}) + "\n"
                                           + json.dumps({"text": "no content"}) + "\n")
    (files / "badjson.jsonl").write_text('{"content": "ok"}\n{"content": \n')
    (files / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    return home


def F(name: str) -> str:  # a file made by the fixture (resolved inside each test)
    return f"@files/{name}"


CASES = [
    # (id, argv, exit code, words expected in the error line)
    ("unknown-hive", ["show", "--hive", "nosuch"], 1, "no hive named 'nosuch'"),
    ("unknown-hive-start", ["start", "--hive", "nosuch"], 1, "no hive named"),
    ("duplicate-agent", ["add-agent", "--hive", "good", "--agent-name", "agent_1",
                         "--prompt", "p"], 1, "already exists"),
    ("duplicate-hive", ["create", "--name", "good"], 1, "already exists"),
    ("dotdot-hive-name", ["create", "--name", "../x"], 2, "invalid hive name"),
    ("space-hive-name", ["show", "--hive", "a b"], 2, "invalid hive name"),
    ("dotdot-agent-name", ["add-agent", "--hive", "good", "--agent-name", "../x",
                           "--prompt", "p"], 2, "invalid agent name"),
    ("slash-agent-name", ["logs", "--hive", "good", "--agent", "a/b"], 2, "invalid agent"),
    ("malformed-yaml", ["show", "--hive", "broken"], 1, "not valid YAML"),
    ("malformed-yaml-start", ["start", "--hive", "broken"], 1, "not valid YAML"),
    ("unknown-transport", ["create", "--name", "t1", "--transport", "pigeon"], 2,
     "unknown transport"),
    ("redis-no-connection", ["create", "--name", "t2", "--transport", "redis"], 2,
     "needs a connection string"),
    ("unknown-backend", ["create", "--name", "t3", "--shard-backend", "sqlite"], 2,
     "unknown shard backend"),
    ("zero-agents", ["create", "--name", "t4", "--agents", "0"], 2, "--agents"),
    ("rf-zero", ["create", "--name", "t5", "--replication-factor", "0"], 2,
     "replication_factor"),
    ("bad-key-prefix", ["create", "--name", "t6", "--key-prefix", "a b"], 2,
     "invalid key_prefix"),
    ("ask-when-stopped", ["ask", "--hive", "good", "who leads the project?"], 1,
     "not running"),
    ("learn-when-stopped", ["learn", "--hive", "good", "--text", "Ada leads Apollo."], 1,
     "not running"),
    ("empty-question", ["ask", "--hive", "good", "  "], 2, "question is empty"),
    ("empty-file", ["learn", "--hive", "good", "--file", F("empty.txt")], 1, "no turns"),
    ("blank-file", ["learn", "--hive", "good", "--file", F("blank.txt")], 1, "no turns"),
    ("ten-mb-line", ["learn", "--hive", "good", "--file", F("huge.txt")], 1, "line 2 is"),
    ("jsonl-without-content", ["learn", "--hive", "good", "--file", F("nocontent.jsonl")],
     1, "line 2 has no non-empty string 'content'"),
    ("jsonl-broken", ["learn", "--hive", "good", "--file", F("badjson.jsonl")], 1,
     "line 2 is not valid JSON"),
    ("not-utf8", ["learn", "--hive", "good", "--file", F("latin1.txt")], 1, "not UTF-8"),
    ("missing-file", ["learn", "--hive", "good", "--file", "/nonexistent/turns.txt"], 2,
     "no such file"),
    ("two-sources", ["learn", "--hive", "good", "--file", F("empty.txt"), "--text", "x"], 2,
     "exactly one"),
    ("no-source", ["learn", "--hive", "good"], 2, "exactly one"),
    ("unknown-agent-start", ["start", "--hive", "good", "--agents", "agent_0,ghost"], 1,
     "no agent 'ghost'"),
    ("empty-agents-list", ["stop", "--hive", "good", "--agents", ",,"], 2, "agent names"),
    ("unknown-target", ["start", "--hive", "good", "--target", "cloud"], 2, "--target"),
    ("azure-without-connection-string",
     ["create", "--name", "ehive", "--transport", "azure_event_hubs"], 1,
     "needs a connection string (--connection-string or AMPLIHACK_EH_CONNECTION_STRING)"),
    ("azure-bad-connection-string",
     ["create", "--name", "ehive", "--transport", "azure_service_bus", "--connection-string",
      "https://ns.servicebus.windows.net"], 2, "invalid azure_service_bus connection string"),
    ("remove-unknown-agent", ["remove-agent", "--hive", "good", "--agent-name", "ghost"], 1,
     "no agent 'ghost'"),
    ("logs-without-log", ["logs", "--hive", "good", "--agent", "agent_0"], 1, "no log yet"),
    ("negative-lines", ["logs", "--hive", "good", "--lines", "-5"], 2, "--lines"),
    ("unknown-command", ["explode", "--hive", "good"], 2, "No such command"),
    ("unknown-option", ["status", "--hive", "good", "--verbose"], 2, "No such option"),
]


@pytest.mark.parametrize(("argv", "code", "words"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line(home: Path, argv: list[str], code: int, words: str):
    argv = [a.replace("@files/", str(home.parent / "files") + "/") for a in argv]
    before = config_snapshot(home)
    hives_before = sorted(p.name for p in (home / "hives").iterdir())
    res = cli_process(home, *argv)
    assert res.code == code, (res.code, res.err)
    lines = res.err.strip().splitlines()
    assert len(lines) == 1, res.err
    assert lines[0].startswith("amplihack-hive: error: ")
    assert words.lower() in lines[0].lower(), lines[0]
    assert "Traceback" not in res.err + res.out
    assert config_snapshot(home) == before
    assert sorted(p.name for p in (home / "hives").iterdir()) == hives_before


def test_at_least_fifteen_bad_inputs():
    assert len(CASES) >= 15


def test_version_short_help_and_idempotent_stop(tmp_path) -> None:
    home = tmp_path / "home"
    version = cli_process(home, "--version")
    assert version.code == 0 and version.out.startswith("amplihack-hive ")
    short = cli_process(home, "start", "-h")
    assert short.code == 0 and "--target" in short.out
    assert cli_process(home, "create", "--name", "idle", "--agents", "1").code == 0
    stopped = cli_process(home, "stop", "--hive", "idle")  # already so: success, one line
    assert stopped.code == 0 and stopped.out.strip() == "hive idle is not running: nothing to stop"
