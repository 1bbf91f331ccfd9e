"""Bad input through the installed ``amplihack-hive`` script and on a live agent's socket.

Three tables, one row per case:

* ``CASES``: command lines (and environment overrides). One clear line on stderr, the right
  exit code (2 for usage errors, 1 for failures), no traceback, no config changed by a byte,
  no hive folder created.
* ``YAML_CASES``: a hand-edited ``config.yaml``. ``show`` refuses it with one line naming the
  file and the key (exit 1); the file is left as it was.
* ``WIRE_CASES``: malformed frames sent to a running agent's Unix socket. Whatever the wire
  layer does with them (an error reply, a count, a closed connection -- the exact text is
  the wire layer's own and may change), the agent keeps running, still answers, holds the
  same facts and logs no traceback.

The CLI rows share one home of stopped hives; the wire rows share one live 2-agent hive.
"""

from __future__ import annotations

import json
import shutil
import socket
import struct
import tempfile
from pathlib import Path

import pytest
from cli_helpers import cli_process, config_snapshot
from test_cli_e2e import Hive

REDIS_PW = "pw-Zq8/x@y"  # the '/' is not percent-encoded: no client can parse the URL
AZ = "Endpoint=sb://ns.servicebus.windows.net/"


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """One home with a good local hive, a hive with broken YAML, one hive per YAML case, and
    the input files of the learn cases."""
    home = tmp_path_factory.mktemp("bad") / "home"
    assert cli_process(home, "create", "--name", "good", "--agents", "3").code == 0
    assert cli_process(home, "create", "--name", "broken").code == 0
    (home / "hives" / "broken" / "config.yaml").write_text("name: broken\nagents: [oops\n")
    for name, content, _ in YAML_CASES:
        folder = home / "hives" / name
        folder.mkdir(parents=True)
        text = content.replace(b"{name}", name.encode())
        (folder / "config.yaml").write_bytes(text)
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


def env(**values: str) -> dict[str, str]:
    return values


G = ["--hive", "good"]
CASES = [
    # (id, argv, environment, exit code, words expected in the error line)
    ("unknown-hive", ["show", "--hive", "nosuch"], {}, 1, "no hive named 'nosuch'"),
    ("unknown-hive-start", ["start", "--hive", "nosuch"], {}, 1, "no hive named"),
    ("duplicate-agent", ["add-agent", *G, "--agent-name", "agent_1", "--prompt", "p"], {}, 1,
     "already exists"),
    ("duplicate-hive", ["create", "--name", "good"], {}, 1, "already exists"),
    ("dotdot-hive-name", ["create", "--name", "../x"], {}, 2, "invalid hive name"),
    ("space-hive-name", ["show", "--hive", "a b"], {}, 2, "invalid hive name"),
    ("long-hive-name", ["create", "--name", "h" * 64], {}, 2, "invalid hive name"),
    ("dotdot-agent-name", ["add-agent", *G, "--agent-name", "../x", "--prompt", "p"], {}, 2,
     "invalid agent name"),
    ("slash-agent-name", ["logs", *G, "--agent", "a/b"], {}, 2, "invalid agent"),
    ("malformed-yaml", ["show", "--hive", "broken"], {}, 1, "not valid YAML"),
    ("malformed-yaml-start", ["start", "--hive", "broken"], {}, 1, "not valid YAML"),
    ("unknown-transport", ["create", "--name", "t1", "--transport", "pigeon"], {}, 2,
     "unknown transport"),
    ("redis-no-connection", ["create", "--name", "t2", "--transport", "redis"], {}, 2,
     "needs a connection string"),
    ("unknown-backend", ["create", "--name", "t3", "--shard-backend", "sqlite"], {}, 2,
     "unknown shard backend"),
    ("zero-agents", ["create", "--name", "t4", "--agents", "0"], {}, 2, "--agents"),
    ("agents-not-a-number", ["create", "--name", "t4", "--agents", "true"], {}, 2, "--agents"),
    ("rf-zero", ["create", "--name", "t5", "--replication-factor", "0"], {}, 2,
     "replication_factor"),
    ("rf-fraction", ["create", "--name", "t5", "--replication-factor", "2.7"], {}, 2,
     "--replication-factor"),
    ("rf-too-many", ["create", "--name", "t5", "--replication-factor", "17"], {}, 2,
     "replication_factor"),
    ("fanout-zero", ["create", "--name", "t5", "--query-fanout", "0"], {}, 2, "query_fanout"),
    ("bad-key-prefix", ["create", "--name", "t6", "--key-prefix", "a b"], {}, 2,
     "invalid key_prefix"),
    ("redis-slash-in-password", ["create", "--name", "t7", "--transport", "redis",
                                 "--connection-string", f"redis://:{REDIS_PW}@h:6379/0"], {},
     2, "percent-encode"),
    ("redis-space-in-password", ["create", "--name", "t7", "--transport", "redis",
                                 "--connection-string", "redis://:pass word@h:6379/0"], {}, 2,
     "whitespace"),
    ("redis-bad-port", ["create", "--name", "t7", "--transport", "redis",
                        "--connection-string", "redis://h:63x9/0"], {}, 2, "port"),
    ("redis-bad-db", ["create", "--name", "t7", "--transport", "redis",
                      "--connection-string", "redis://h:6379/zero"], {}, 2, "database"),
    ("redis-unknown-option", ["create", "--name", "t7", "--transport", "redis",
                              "--connection-string", "redis://h:6379/0?colour=red"], {}, 2,
     "unknown option"),
    ("redis-no-host", ["create", "--name", "t7", "--transport", "redis",
                       "--connection-string", "redis://"], {}, 2, "no host"),
    ("redis-wrong-scheme", ["create", "--name", "t7", "--transport", "redis",
                            "--connection-string", "http://h:6379"], {}, 2, "redis://"),
    ("azure-without-connection-string",
     ["create", "--name", "ehive", "--transport", "azure_event_hubs"], {}, 1,
     "needs a connection string (--connection-string or AMPLIHACK_EH_CONNECTION_STRING)"),
    ("azure-bad-connection-string",
     ["create", "--name", "ehive", "--transport", "azure_service_bus", "--connection-string",
      "https://ns.servicebus.windows.net"], {}, 2,
     "invalid azure_service_bus connection string"),
    ("azure-key-without-name",
     ["create", "--name", "ehive", "--transport", "azure_service_bus", "--connection-string",
      f"{AZ};SharedAccessKey=Zm9vYmFyYmF6cXV4"], {}, 2, "SharedAccessKeyName"),
    ("azure-endpoint-twice",
     ["create", "--name", "ehive", "--transport", "azure_event_hubs", "--connection-string",
      f"{AZ};Endpoint=sb://b/;SharedAccessKeyName=k;SharedAccessKey=Zm9v"], {}, 2,
     "given twice"),
    ("azure-misspelt-key",
     ["create", "--name", "ehive", "--transport", "azure_event_hubs", "--connection-string",
      f"{AZ};SharedAccessKeyName=k;SharedAccesKey=Zm9v"], {}, 2, "unknown key"),
    ("azure-https-endpoint",
     ["create", "--name", "ehive", "--transport", "azure_event_hubs", "--connection-string",
      "Endpoint=https://ns/;SharedAccessKeyName=k;SharedAccessKey=Zm9v"], {}, 2,
     "Endpoint must be sb://"),
    ("azure-empty-part",
     ["create", "--name", "ehive", "--transport", "azure_event_hubs", "--connection-string",
      f"{AZ};;SharedAccessKeyName=k;SharedAccessKey=Zm9v"], {}, 2, "not a NAME=VALUE pair"),
    ("ask-when-stopped", ["ask", *G, "who leads the project?"], {}, 1, "not running"),
    ("learn-when-stopped", ["learn", *G, "--text", "Ada leads Apollo."], {}, 1, "not running"),
    ("empty-question", ["ask", *G, "  "], {}, 2, "question is empty"),
    ("ask-timeout-inf", ["ask", *G, "--timeout", "inf", "q?"], {}, 2, "finite"),
    ("ask-timeout-nan", ["ask", *G, "--timeout", "nan", "q?"], {}, 2, "--timeout"),
    ("ask-timeout-negative", ["ask", *G, "--timeout", "-1", "q?"], {}, 2, "--timeout"),
    ("ask-limit-zero", ["ask", *G, "--limit", "0", "q?"], {}, 2, "--limit"),
    ("ask-limit-fraction", ["ask", *G, "--limit", "2.7", "q?"], {}, 2, "--limit"),
    ("add-agent-timeout-inf", ["add-agent", *G, "--agent-name", "n", "--prompt", "p",
                               "--timeout", "inf"], {}, 2, "finite"),
    ("learn-timeout-inf", ["learn", *G, "--text", "x", "--timeout", "inf"], {}, 2, "finite"),
    ("empty-file", ["learn", *G, "--file", F("empty.txt")], {}, 1, "no turns"),
    ("blank-file", ["learn", *G, "--file", F("blank.txt")], {}, 1, "no turns"),
    ("ten-mb-line", ["learn", *G, "--file", F("huge.txt")], {}, 1, "line 2 is"),
    ("jsonl-without-content", ["learn", *G, "--file", F("nocontent.jsonl")], {}, 1,
     "line 2 has no non-empty string 'content'"),
    ("jsonl-broken", ["learn", *G, "--file", F("badjson.jsonl")], {}, 1,
     "line 2 is not valid JSON"),
    ("not-utf8", ["learn", *G, "--file", F("latin1.txt")], {}, 1, "not UTF-8"),
    ("missing-file", ["learn", *G, "--file", "/nonexistent/turns.txt"], {}, 2, "no such file"),
    ("two-sources", ["learn", *G, "--file", F("empty.txt"), "--text", "x"], {}, 2,
     "exactly one"),
    ("no-source", ["learn", *G], {}, 2, "exactly one"),
    ("unknown-agent-start", ["start", *G, "--agents", "agent_0,ghost"], {}, 1,
     "no agent 'ghost'"),
    ("empty-agents-list", ["stop", *G, "--agents", ",,"], {}, 2, "agent names"),
    ("unknown-target", ["start", *G, "--target", "cloud"], {}, 2, "--target"),
    ("remove-unknown-agent", ["remove-agent", *G, "--agent-name", "ghost"], {}, 1,
     "no agent 'ghost'"),
    ("logs-without-log", ["logs", *G, "--agent", "agent_0"], {}, 1, "no log yet"),
    ("negative-lines", ["logs", *G, "--lines", "-5"], {}, 2, "--lines"),
    ("lines-not-a-number", ["logs", *G, "--lines", "ten"], {}, 2, "--lines"),
    ("unknown-command", ["explode", *G], {}, 2, "No such command"),
    ("unknown-option", ["status", *G, "--verbose"], {}, 2, "No such option"),
    # AMPLIHACK_MEMORY_* overrides: refused naming the key and the variable.
    ("env-timeout-nan", ["ask", *G, "q?"], env(AMPLIHACK_MEMORY_SEARCH_TIMEOUT="nan"), 1,
     "AMPLIHACK_MEMORY_SEARCH_TIMEOUT"),
    ("env-timeout-inf", ["ask", *G, "q?"], env(AMPLIHACK_MEMORY_SEARCH_TIMEOUT="inf"), 1,
     "search_timeout: must be a finite number"),
    ("env-timeout-negative", ["ask", *G, "q?"], env(AMPLIHACK_MEMORY_SEARCH_TIMEOUT="-3"), 1,
     "search_timeout: must be greater than 0"),
    ("env-timeout-word", ["ask", *G, "q?"], env(AMPLIHACK_MEMORY_SEARCH_TIMEOUT="soon"), 1,
     "search_timeout: must be a number"),
    ("env-key-prefix", ["ask", *G, "q?"], env(AMPLIHACK_MEMORY_KEY_PREFIX="a b"), 1,
     "AMPLIHACK_MEMORY_KEY_PREFIX"),
    ("env-transport", ["ask", *G, "q?"], env(AMPLIHACK_MEMORY_TRANSPORT="pigeon"), 1,
     "unknown transport"),
    ("env-redis-url", ["ask", *G, "q?"],
     env(AMPLIHACK_MEMORY_TRANSPORT="redis",
         AMPLIHACK_MEMORY_CONNECTION_STRING=f"redis://:{REDIS_PW}@h:6379/0"), 1,
     "percent-encode"),
]

YAML_CASES = [
    # (hive name = id, config.yaml content ({name} = the hive's name), words expected)
    ("y-rf-fraction", b"name: {name}\nreplication_factor: 2.7\n",
     "replication_factor: must be a whole number (got 2.7)"),
    ("y-rf-bool", b"name: {name}\nreplication_factor: true\n", "not true/false"),
    ("y-rf-text", b"name: {name}\nreplication_factor: '3'\n",
     "replication_factor: must be a whole number"),
    ("y-rf-zero", b"name: {name}\nreplication_factor: 0\n", "replication_factor"),
    ("y-rf-huge", b"name: {name}\nreplication_factor: 99999999999999999999\n",
     "replication_factor"),
    ("y-fanout-negative", b"name: {name}\nquery_fanout: -1\n", "query_fanout"),
    ("y-timeout-nan", b"name: {name}\nsearch_timeout: .nan\n",
     "search_timeout: must be a finite number"),
    ("y-timeout-inf", b"name: {name}\nsearch_timeout: .inf\n",
     "search_timeout: must be a finite number"),
    ("y-timeout-negative", b"name: {name}\nsearch_timeout: -2\n",
     "search_timeout: must be greater than 0"),
    ("y-timeout-word", b"name: {name}\nsearch_timeout: fast\n",
     "search_timeout: must be a number"),
    ("y-timeout-bool", b"name: {name}\nsearch_timeout: yes\n", "search_timeout"),
    ("y-name-number", b"name: 5\n", "name: must be text"),
    ("y-name-other-hive", b"name: good\n", "names hive 'good'"),
    ("y-no-name", b"agents: [a]\n", "name: is required"),
    ("y-agents-text", b"name: {name}\nagents: agent_0\n", "agents: must be a list"),
    ("y-agents-number", b"name: {name}\nagents: [5]\n", "agents.0: must be a mapping"),
    ("y-agents-null", b"name: {name}\nagents: [null]\n", "agents.0"),
    ("y-agent-unknown-key", b"name: {name}\nagents: [{name: a, colour: red}]\n",
     "agents.0.colour: unknown key"),
    ("y-agent-no-name", b"name: {name}\nagents: [{prompt: p}]\n", "agents.0.name: is required"),
    ("y-agent-bad-name", b"name: {name}\nagents: [../x]\n", "invalid agent name"),
    ("y-agents-duplicate", b"name: {name}\nagents: [a, a]\n", "duplicate agent name"),
    ("y-unknown-key", b"name: {name}\ncolour: red\n", "colour: unknown key"),
    ("y-key-twice", b"name: {name}\nreplication_factor: 3\nreplication_factor: 1\n",
     "given twice"),
    ("y-list", b"- name: x\n", "must be a YAML mapping"),
    ("y-empty", b"", "must be a YAML mapping"),
    ("y-not-utf8", b"name: {name}\nagents: [caf\xe9]\n", "not UTF-8"),
    ("y-tab-indent", b"name: {name}\nagents:\n\t- a\n", "not valid YAML"),
    ("y-options-list", b"name: {name}\ntransport_options: []\n",
     "transport_options: must be a mapping"),
    ("y-option-bool", b"name: {name}\ntransport: azure_service_bus\nconnection_string: "
     b"'" + AZ.encode() + b";SharedAccessKeyName=k;SharedAccessKey=Zm9v'\n"
     b"transport_options: {max_delivery_count: true}\n", "max_delivery_count"),
    ("y-redis-url", b"name: {name}\ntransport: redis\nconnection_string: 'redis://:"
     + REDIS_PW.encode() + b"@h:6379/0'\n", "percent-encode"),
    ("y-transport", b"name: {name}\ntransport: pigeon\n", "unknown transport"),
    ("y-backend", b"name: {name}\nshard_backend: sqlite\n", "unknown shard backend"),
    ("y-state-store", b"name: {name}\nstate_store: s3\n", "unknown state_store"),
    ("y-key-prefix", b"name: {name}\nkey_prefix: a b\n", "invalid key_prefix"),
    ("y-storage-path-number", b"name: {name}\nstorage_path: 5\n",
     "storage_path: must be text"),
]


def _check_one_line(res, code: int, words: str) -> str:
    assert res.code == code, (res.code, res.err)
    lines = res.err.strip().splitlines()
    assert len(lines) == 1, res.err
    assert lines[0].startswith("amplihack-hive: error: ")
    assert words.lower() in lines[0].lower(), lines[0]
    assert "Traceback" not in res.err + res.out
    return lines[0]


@pytest.mark.parametrize(("argv", "environ", "code", "words"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line(home: Path, argv: list[str], environ: dict[str, str],
                                     code: int, words: str):
    argv = [a.replace("@files/", str(home.parent / "files") + "/") for a in argv]
    before = config_snapshot(home)
    hives_before = sorted(p.name for p in (home / "hives").iterdir())
    res = cli_process(home, *argv, env=environ)
    line = _check_one_line(res, code, words)
    assert REDIS_PW not in line and "Zm9v" not in line  # the secrets in the rows
    assert config_snapshot(home) == before
    assert sorted(p.name for p in (home / "hives").iterdir()) == hives_before


@pytest.mark.parametrize(("name", "words"), [(c[0], c[2]) for c in YAML_CASES],
                         ids=[c[0] for c in YAML_CASES])
def test_bad_config_file_is_one_line_naming_file_and_key(home: Path, name: str, words: str):
    path = home / "hives" / name / "config.yaml"
    before = config_snapshot(home)
    line = _check_one_line(cli_process(home, "show", "--hive", name, "--json"), 1, words)
    assert str(path) in line
    assert REDIS_PW not in line and "Zm9v" not in line
    assert config_snapshot(home) == before


# -- the wire ----------------------------------------------------------------------------------
def _frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def _envelope(**changes: object) -> bytes:
    env: dict[str, object] = {
        "v": 1, "type": "SHARD_QUERY", "msg_id": "m1", "correlation_id": "", "hive": "wire",
        "sender": "mallory", "target": "agent_0", "sent_at": 1.0, "epoch": 0,
        "payload": {"op": "count"}}
    env.update(changes)
    return _frame(json.dumps({k: v for k, v in env.items() if v is not ...}).encode())


WIRE_CASES = [
    # (id, bytes sent on a fresh connection to agent_0's socket, which is then half-closed)
    ("empty-frame", _frame(b"")),
    ("not-json", _frame(b"hello, agent")),
    ("body-not-utf8", _frame(b"\xff\xfe\x00{")),
    ("json-array", _frame(b"[1, 2, 3]")),
    ("json-string", _frame(b'"SHARD_QUERY"')),
    ("json-null", _frame(b"null")),
    ("json-nan", _frame(b'{"v": NaN}')),
    ("deeply-nested", _frame(b"[" * 200_000 + b"]" * 200_000)),
    ("no-version", _envelope(v=...)),
    ("wrong-version", _envelope(v=99)),
    ("version-as-text", _envelope(v="1")),
    ("unknown-type", _envelope(type="EXPLODE")),
    ("payload-list", _envelope(payload=[1, 2])),
    ("payload-text", _envelope(payload="records")),
    ("payload-missing", _envelope(payload=...)),
    ("sent-at-text", _envelope(sent_at="yesterday")),
    ("epoch-text", _envelope(epoch="latest")),
    ("no-msg-id", _envelope(msg_id=...)),
    ("wrong-types-in-payload", _envelope(payload={"op": 5, "limit": "all"})),
    ("store-facts-not-a-list", _envelope(type="SHARD_STORE", payload={"facts": "x"})),
    ("huge-announced-length", struct.pack(">I", 0xFFFFFFFF)),
    ("length-beyond-body", struct.pack(">I", 1000) + b'{"v": 1}'),
    ("half-a-header", b"\x00\x00"),
    ("random-bytes", bytes(range(256)) * 8),
    ("two-bad-frames", _frame(b"nope") + _frame(b"[]")),
]
ASKED = "Who leads Project Apollo?"


@pytest.fixture(scope="module")
def wire() -> Hive:
    """A running 2-agent hive (short /tmp home: socket paths) that learned one fact."""
    home = Path(tempfile.mkdtemp(prefix="bw", dir="/tmp")) / "h"
    h = Hive(home, "wire")
    try:
        assert h("create", "--name", "wire", "--agents", "2", "--replication-factor", "2",
                 "--shard-backend", "memory").code == 0
        started = h("start", "--hive", "wire", "--timeout", "120")
        assert started.code == 0, started.err
        learned = h("learn", "--hive", "wire", "--text", "Ada Lovelace leads Project Apollo.")
        assert learned.code == 0, learned.err
        yield h
        assert h("stop", "--hive", "wire").code == 0
    finally:
        h.kill_all()
        shutil.rmtree(home.parent, ignore_errors=True)


def _facts(h: Hive) -> int:
    res = h("status", "--hive", "wire", "--json")
    assert res.code == 0, res.err
    return sum(a["facts"] for a in res.json()["agents"])


def _send(path: Path, data: bytes) -> str:
    """Send ``data``, half-close, and say what came back: a frame, a close, or silence."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            got = sock.recv(4)
        except (BrokenPipeError, ConnectionResetError):
            return "closed"
        except TimeoutError:
            return "silent"
        return "reply" if got else "closed"


@pytest.mark.parametrize("data", [c[1] for c in WIRE_CASES], ids=[c[0] for c in WIRE_CASES])
def test_malformed_frame_changes_nothing(wire: Hive, data: bytes) -> None:
    logs = wire.home / "hives" / "wire" / "logs"
    sock = wire.home / "hives" / "wire" / "run" / "agent_0.sock"
    facts = _facts(wire)
    log_sizes = {p: p.stat().st_size for p in logs.glob("*.log")}
    outcome = _send(sock, data)
    assert outcome in ("reply", "closed", "silent")
    answered = wire("ask", "--hive", "wire", "--agent", "agent_0", "--json", ASKED)
    assert answered.code == 0, answered.err
    assert any("Apollo" in f["content"] for f in answered.json()["facts"])
    assert _facts(wire) == facts
    assert wire.alive() and len(wire.alive()) == 2
    for path, size in log_sizes.items():
        with path.open("rb") as fh:
            fh.seek(size)
            assert b"Traceback" not in fh.read(), f"{path.name} logged a traceback"


def test_the_tables_are_large() -> None:
    assert len(CASES) + len(YAML_CASES) + len(WIRE_CASES) >= 60
    ids = [c[0] for c in (*CASES, *YAML_CASES, *WIRE_CASES)]
    assert len(ids) == len(set(ids))


def test_version_short_help_and_idempotent_stop(tmp_path) -> None:
    home = tmp_path / "home"
    version = cli_process(home, "--version")
    assert version.code == 0 and version.out.startswith("amplihack-hive ")
    short = cli_process(home, "start", "-h")
    assert short.code == 0 and "--target" in short.out
    assert cli_process(home, "create", "--name", "idle", "--agents", "1").code == 0
    stopped = cli_process(home, "stop", "--hive", "idle")  # already so: success, one line
    assert stopped.code == 0 and stopped.out.strip() == "hive idle is not running: nothing to stop"
