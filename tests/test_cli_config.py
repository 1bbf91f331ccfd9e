"""create / add-agent / remove-agent / list / show / delete through the real CLI code."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import yaml
from cli_helpers import cli, cli_process

from hive_cli import supervisor
from hive_core.hive_config import HiveConfig
from hive_core.membership.store import FileViewStore
from hive_core.membership.view import initial

SECRET = "s3cr3t-pa55"


def test_create_writes_0600_config_under_amplihack_home(amplihack_home, capsys):
    res = cli(capsys, "create", "--name", "alpha", "--agents", "3", "--json")
    assert res.code == 0, res.err
    doc = res.json()
    path = amplihack_home / "hives" / "alpha" / "config.yaml"
    assert doc["config"] == str(path)
    assert doc["agents"] == ["agent_0", "agent_1", "agent_2"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    raw = yaml.safe_load(path.read_text())
    assert raw["transport"] == "local" and raw["shard_backend"] == "kuzu"
    assert raw["replication_factor"] == 3 and raw["query_fanout"] == 5
    cfg = HiveConfig.load("alpha")
    assert cfg.data_dir == amplihack_home / "hives" / "alpha" / "data"


def test_create_options_are_stored(amplihack_home, tmp_path, capsys):
    store = tmp_path / "shards"
    res = cli(capsys, "create", "--name", "b", "--agents", "2", "--storage-path", str(store),
              "--shard-backend", "memory", "--replication-factor", "2", "--query-fanout", "4",
              "--key-prefix", "team-a")
    assert res.code == 0, res.err
    assert "created hive b with 2 agents" in res.out
    cfg = HiveConfig.load("b")
    assert (cfg.storage_path, cfg.shard_backend) == (str(store), "memory")
    assert (cfg.replication_factor, cfg.query_fanout) == (2, 4)
    assert cfg.key_prefix == "team-a"


def test_create_existing_needs_force(amplihack_home, capsys):
    assert cli(capsys, "create", "--name", "c").code == 0
    again = cli(capsys, "create", "--name", "c", "--agents", "2")
    assert again.code == 1 and "already exists" in again.err
    assert len(HiveConfig.load("c").agents) == 5
    forced = cli(capsys, "create", "--name", "c", "--agents", "2", "--force")
    assert forced.code == 0, forced.err
    assert HiveConfig.load("c").agent_names() == ["agent_0", "agent_1"]


def test_add_and_remove_agent(amplihack_home, tmp_path, capsys):
    cli(capsys, "create", "--name", "d", "--agents", "1")
    res = cli(capsys, "add-agent", "--hive", "d", "--agent-name", "analyst",
              "--prompt", "You track incidents.", "--kuzu-db", str(tmp_path / "k.db"), "--json")
    assert res.code == 0, res.err
    assert res.json() == {"hive": "d", "added": "analyst", "started": False}
    shown = cli(capsys, "show", "--hive", "d", "--json").json()
    agent = shown["agents"][1]
    assert agent == {"name": "analyst", "prompt": "You track incidents.",
                     "kuzu_db": str(tmp_path / "k.db")}
    assert HiveConfig.load("d").shard_path("analyst") == tmp_path / "k.db"
    removed = cli(capsys, "remove-agent", "--hive", "d", "--agent-name", "analyst")
    assert removed.code == 0, removed.err
    assert HiveConfig.load("d").agent_names() == ["agent_0"]


def test_remove_below_replication_factor_is_refused(amplihack_home, capsys):
    cli(capsys, "create", "--name", "e", "--agents", "3")
    cfg = HiveConfig.load("e")
    views = FileViewStore(cfg.data_dir)
    assert views.swap(0, initial(cfg.agent_names()))  # the view a first start writes
    before = views.path.read_bytes()
    record = supervisor.spawn(cfg, "agent_1", [sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        res = cli(capsys, "remove-agent", "--hive", "e", "--agent-name", "agent_1")
        assert res.code == 1 and "fewer than the replication factor 3" in res.err
        assert "Traceback" not in res.err and len(res.err.strip().splitlines()) == 1
        assert HiveConfig.load("e").agent_names() == ["agent_0", "agent_1", "agent_2"]
        assert views.path.read_bytes() == before  # nothing half-done in the ring either
        assert supervisor.live_process(record) is not None  # and the agent still runs
        gone = cli(capsys, "delete", "--hive", "e")
        assert gone.code == 1 and "stop them first" in gone.err
        assert cfg.config_path.exists()
    finally:
        supervisor.stop(cfg, ["agent_1"], timeout=5)
    assert supervisor.live_process(record) is None


def test_show_redacts_secrets_but_file_keeps_them(amplihack_home, capsys):
    url = f"redis://hive:{SECRET}@127.0.0.1:6379/0"
    assert cli(capsys, "create", "--name", "r", "--transport", "redis",
               "--connection-string", url).code == 0
    human = cli(capsys, "show", "--hive", "r")
    doc = cli(capsys, "show", "--hive", "r", "--json").json()
    assert SECRET not in human.out and SECRET not in human.err
    assert doc["connection_string"] == "redis://***@127.0.0.1:6379/0"
    path = amplihack_home / "hives" / "r" / "config.yaml"
    assert SECRET in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    listed = cli(capsys, "list", "--json")
    assert SECRET not in listed.out


def test_show_redacts_azure_key(amplihack_home, capsys):
    conn = f"Endpoint=sb://x.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey={SECRET}"
    cli(capsys, "create", "--name", "az", "--transport", "azure_service_bus",
        "--connection-string", conn)
    out = cli(capsys, "show", "--hive", "az", "--json").out
    assert SECRET not in out and "SharedAccessKey=***" in out


def test_list_reports_hives_and_broken_configs(amplihack_home, capsys):
    assert cli(capsys, "list", "--json").json() == {"hives": []}
    cli(capsys, "create", "--name", "one", "--agents", "2")
    cli(capsys, "create", "--name", "two", "--agents", "3")
    (amplihack_home / "hives" / "two" / "config.yaml").write_text("name: [unclosed\n")
    rows = cli(capsys, "list", "--json").json()["hives"]
    assert [r["name"] for r in rows] == ["one", "two"]
    assert rows[0] == {"name": "one", "transport": "local", "agents": 2, "running": 0,
                       "parent": None, "error": None}
    assert "not valid YAML" in rows[1]["error"]
    human = cli(capsys, "list")
    assert human.code == 0 and "one" in human.out


def test_delete_keeps_data_unless_purged(amplihack_home, capsys):
    cli(capsys, "create", "--name", "k", "--agents", "2")
    cfg = HiveConfig.load("k")
    (cfg.data_dir / "agent_0").mkdir(parents=True)
    (cfg.data_dir / "agent_0" / "shard.bin").write_bytes(b"x")
    cfg.logs_dir.mkdir()
    (cfg.logs_dir / "agent_0.log").write_text("log\n")
    res = cli(capsys, "delete", "--hive", "k", "--json")
    assert res.code == 0, res.err
    assert res.json()["kept_data"] == str(cfg.data_dir)
    assert not cfg.config_path.exists() and not cfg.logs_dir.exists()
    assert (cfg.data_dir / "agent_0" / "shard.bin").exists()
    assert cli(capsys, "show", "--hive", "k").code == 1
    cli(capsys, "create", "--name", "k", "--agents", "2")
    purged = cli(capsys, "delete", "--hive", "k", "--purge-data")
    assert purged.code == 0, purged.err
    assert not (amplihack_home / "hives" / "k").exists()


def test_delete_purge_removes_external_shards_only(amplihack_home, tmp_path, capsys):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    keep = outside / "unrelated.txt"
    keep.write_text("mine")
    cli(capsys, "create", "--name", "x", "--agents", "1", "--storage-path", str(outside))
    (outside / "agent_0").write_bytes(b"db")
    (outside / "agent_0.wal").write_bytes(b"wal")
    assert cli(capsys, "delete", "--hive", "x", "--purge-data").code == 0
    assert not (outside / "agent_0").exists() and not (outside / "agent_0.wal").exists()
    assert keep.read_text() == "mine"


def test_console_script_honours_amplihack_home(tmp_path):
    home = tmp_path / "h"
    res = cli_process(home, "create", "--name", "proc", "--agents", "2", "--json")
    assert res.code == 0, res.err
    assert (home / "hives" / "proc" / "config.yaml").exists()
    listed = cli_process(home, "list", "--json")
    assert [h["name"] for h in listed.json()["hives"]] == ["proc"]


def test_help_and_completion(tmp_path):
    assert cli_process(tmp_path, "--help").code == 0
    bare = cli_process(tmp_path)
    assert bare.code == 2 and "Usage" in bare.out and "Traceback" not in bare.err
    comp = cli_process(tmp_path, "--show-completion", "bash")
    assert comp.code == 0 and "_AMPLIHACK_HIVE_COMPLETE" in comp.out


def test_example_configs_are_valid(amplihack_home):
    root = Path(__file__).resolve().parents[1] / "configs"
    local = HiveConfig.from_dict(yaml.safe_load((root / "local-5.yaml").read_text()))
    assert (local.transport, len(local.agents), local.replication_factor) == ("local", 5, 3)
    redis = HiveConfig.from_dict(yaml.safe_load((root / "redis-3.yaml").read_text()))
    assert redis.transport == "redis" and "CHANGE-ME" in redis.connection_string
    turns = [t for t in (root / "sample_corpus.txt").read_text().splitlines() if t.strip()]
    assert 30 <= len(turns) <= 60 and len(set(turns)) == len(turns)


def test_start_with_redis_unreachable_is_one_line_and_spawns_nothing(tmp_path):
    from redis_helpers import free_port

    home = tmp_path / "home"
    url = f"redis://:{SECRET}@127.0.0.1:{free_port()}/0"  # nothing listens there
    made = cli_process(home, "create", "--name", "r", "--agents", "2", "--transport", "redis",
                       "--connection-string", url)
    assert made.code == 0, made.err
    res = cli_process(home, "start", "--hive", "r", "--timeout", "10")
    assert res.code == 1
    lines = [line for line in res.err.splitlines() if line.strip()]
    assert len(lines) == 1 and "unreachable" in lines[0], res.err
    assert SECRET not in res.err + res.out and "Traceback" not in res.err
    assert not list((home / "hives" / "r" / "run").glob("*.pid"))


def test_passwords_with_slash_or_at_are_refused_or_redacted(amplihack_home, capsys):
    """An unencoded '/' cuts the URL's user-info short (no client can use it): refused, the
    secret not shown, nothing written. Encoded, or with '@' and ':' (which URLs allow),
    it is stored and shown redacted."""
    raw = cli(capsys, "create", "--name", "slash", "--transport", "redis",
              "--connection-string", f"redis://:pw/{SECRET}@x@127.0.0.1:6379/0")
    assert raw.code == 2 and "percent-encode" in raw.err, raw.err
    assert SECRET not in raw.err + raw.out and "pw/" not in raw.err
    assert not (amplihack_home / "hives" / "slash").exists()
    url = f"redis://:pw%2F{SECRET}@x:y@127.0.0.1:6379/0"
    assert cli(capsys, "create", "--name", "slash", "--transport", "redis",
               "--connection-string", url).code == 0
    shown = [cli(capsys, "show", "--hive", "slash").out,
             cli(capsys, "show", "--hive", "slash", "--json").out,
             cli(capsys, "list", "--json").out]
    assert all(SECRET not in text and "pw%2F" not in text for text in shown)
    assert cli(capsys, "show", "--hive", "slash", "--json").json()["connection_string"] == \
        "redis://***@127.0.0.1:6379/0"


def test_an_azure_key_is_never_shown_by_start_status_or_logs(amplihack_home, capsys):
    """The namespace is unreachable: start fails with one line before spawning anything,
    status still reports; neither shows the key."""
    conn = f"Endpoint=fake://127.0.0.1:1/;SharedAccessKeyName=k;SharedAccessKey={SECRET}"
    assert cli(capsys, "create", "--name", "azk", "--agents", "2", "--transport",
               "azure_event_hubs", "--connection-string", conn).code == 0
    started = cli(capsys, "start", "--hive", "azk", "--timeout", "20")
    assert started.code == 1 and "unreachable" in started.err
    assert len(started.err.strip().splitlines()) == 1
    status = cli(capsys, "status", "--hive", "azk", "--json")
    for text in [started.out, started.err, status.out, status.err]:
        assert SECRET not in text


def test_create_answers_by_meaning_where_the_extra_is_installed(amplihack_home, capsys,
                                                                monkeypatch):
    """On by default when the [semantic] extra is installed (CI installs it: the real
    package is found), off with --no-semantic, and off with the line to install it where the
    extra is missing. The config says which, so every machine of a hive ranks alike."""
    import importlib.util

    assert importlib.util.find_spec("wordllama") is not None  # installed by .[dev]
    on = cli(capsys, "create", "--name", "m1", "--agents", "1")
    assert on.code == 0 and "answers re-ranked by meaning" in on.out
    assert HiveConfig.load("m1").semantic is True
    off = cli(capsys, "create", "--name", "m2", "--agents", "1", "--no-semantic", "--json")
    assert off.code == 0 and off.json()["semantic"] is False
    assert HiveConfig.load("m2").semantic is False
    monkeypatch.setitem(sys.modules, "wordllama", None)  # as if the extra were not installed
    missing = cli(capsys, "create", "--name", "m3", "--agents", "1")
    assert missing.code == 0 and "lexical ranking" in missing.out
    assert "pip install 'amplihack-hive[semantic]'" in missing.err
    assert HiveConfig.load("m3").semantic is False
    asked = cli(capsys, "create", "--name", "m4", "--agents", "1", "--semantic")
    assert asked.code != 0 and "pip install 'amplihack-hive[semantic]'" in asked.err
    assert "Traceback" not in asked.err and not (amplihack_home / "hives" / "m4").exists()
