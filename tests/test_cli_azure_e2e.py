"""End to end through the installed ``amplihack-hive`` script with the Azure transports.

Real agent processes talk through a fake Azure namespace served by a separate process (no
Event Hubs or Service Bus emulator runs offline; hive_core.transports.azurefake reproduces
the services' hazards). The hive's connection string names the fake with a ``fake://``
endpoint and is passed the way a deployment passes it: in the environment, never in the
config file. create, start, learn the sample corpus, ask an agent that did not learn the
fact, status counts = facts x RF, stop; no process is left and the key is never shown.
"""

from __future__ import annotations

import secrets
import shutil
import uuid
from pathlib import Path

import pytest
from azure_helpers import ServedNamespace
from test_cli_e2e import CORPUS, Hive

from hive_core.state.azure_blobs import AzureBlobs

AGENTS = 4
RF = 3
TRANSPORTS = {
    "azure_event_hubs": "AMPLIHACK_EH_CONNECTION_STRING",
    "azure_service_bus": "AMPLIHACK_SB_CONNECTION_STRING",
}


@pytest.fixture
def served():
    ns = ServedNamespace(partitions=3)  # fewer partitions than agents: they share
    yield ns
    ns.stop()


@pytest.mark.slow
@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
def test_azure_hive_life_cycle(transport: str, served: ServedNamespace, tmp_path: Path,
                               monkeypatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("AMPLIHACK_HOME", str(home))
    env = {TRANSPORTS[transport]: served.connection_string}
    hive = Hive(home, f"e2e-{transport.replace('_', '-')}")
    try:
        created = hive("create", "--name", hive.name, "--agents", str(AGENTS),
                       "--transport", transport, "--json", env=env)
        assert created.code == 0, created.err
        config_text = (home / "hives" / hive.name / "config.yaml").read_text()
        assert served.key not in config_text and "fake://" not in config_text

        started = hive("start", "--hive", hive.name, "--json", "--timeout", "120", env=env)
        assert started.code == 0, started.err
        assert [a["outcome"] for a in started.json()["agents"]] == ["started"] * AGENTS

        learned = hive("learn", "--hive", hive.name, "--file", str(CORPUS), "--json", env=env)
        assert learned.code == 0, learned.err
        ldoc = learned.json()
        assert ldoc["turns"] == 40 and ldoc["failed_shards"] == []

        status = hive("status", "--hive", hive.name, "--json", env=env)
        assert status.code == 0, status.err
        sdoc = status.json()
        assert sdoc["transport"] == transport
        assert [a["status"] for a in sdoc["agents"]] == ["running"] * AGENTS
        assert sum(a["facts"] for a in sdoc["agents"]) == ldoc["unique_facts"] * RF

        answered = hive("ask", "--hive", hive.name, "--agent", "agent_3", "--json",
                        "Who leads Project Osprey?", env=env)
        assert answered.code == 0, answered.err
        adoc = answered.json()
        hits = [f for f in adoc["facts"] if "Hannah Schmidt" in f["content"]]
        assert hits and hits[0]["source_agent"] != "agent_3" and adoc["partial"] is False

        stopped = hive("stop", "--hive", hive.name, "--json", env=env)
        assert stopped.code == 0, stopped.err
        assert hive.alive() == []
        shown = [created.out, created.err, started.out, started.err, learned.out, status.out,
                 answered.out, stopped.out]
        shown += [p.read_text() for p in (home / "hives" / hive.name / "logs").glob("*.log")]
        assert all(served.key not in text for text in shown)
    finally:
        hive.kill_all()


@pytest.mark.slow
def test_two_apps_share_only_the_broker_and_the_blob_state(served: ServedNamespace, azurite,
                                                           tmp_path: Path) -> None:
    """Agents 0-1 run from one AMPLIHACK_HOME, agents 2-3 from another, as in two Container
    Apps: no folder in common, only the (fake) Event Hubs namespace and the blob container
    (Azurite) that holds the ring view, liveness and checkpoints (state_store: blob). A fact
    learned through one app is found by an agent of the other."""
    container = f"st{uuid.uuid4().hex[:12]}"
    # The message key reaches both apps the way Container Apps get it (a secret in the
    # environment), not from either app's folder.
    env = {"AMPLIHACK_EH_CONNECTION_STRING": served.connection_string,
           "AMPLIHACK_BLOB_CONNECTION_STRING": azurite.connection_string,
           "AMPLIHACK_BLOB_CONTAINER": container,
           "AMPLIHACK_HIVE_SECRET": secrets.token_hex(32)}
    app_a, app_b = Hive(tmp_path / "app-a", "two-apps"), Hive(tmp_path / "app-b", "two-apps")
    try:
        created = app_a("create", "--name", app_a.name, "--agents", str(AGENTS),
                        "--transport", "azure_event_hubs", env=env)
        assert created.code == 0, created.err
        path_a = tmp_path / "app-a" / "hives" / app_a.name / "config.yaml"
        path_a.write_text(path_a.read_text().replace("state_store: auto", "state_store: blob"))
        path_b = tmp_path / "app-b" / "hives" / app_b.name / "config.yaml"
        path_b.parent.mkdir(parents=True, mode=0o700)
        shutil.copy(path_a, path_b)

        for app, agents in ((app_a, "agent_0,agent_1"), (app_b, "agent_2,agent_3")):
            started = app("start", "--hive", app.name, "--agents", agents, "--timeout", "120",
                          env=env)
            assert started.code == 0, started.err
        learned = app_a("learn", "--hive", app_a.name, "--file", str(CORPUS), "--json", env=env)
        assert learned.code == 0, learned.err
        answered = app_b("ask", "--hive", app_b.name, "--agent", "agent_3", "--json",
                         "Who leads Project Osprey?", env=env)
        assert answered.code == 0, answered.err
        adoc = answered.json()
        assert any("Hannah Schmidt" in f["content"] for f in adoc["facts"])
        assert adoc["partial"] is False

        state = AzureBlobs(azurite.connection_string, container)
        try:
            names = {b.name for b in state.list("")}
        finally:
            state.close()
        assert "ring.json" in names
        assert {f"live/agent_{i}" for i in range(AGENTS)} <= names
        assert any(n.startswith("checkpoints/") for n in names)
        assert not (tmp_path / "app-a" / "hives" / app_a.name / "data" / "ring.json").exists()
        for app in (app_a, app_b):
            stopped = app("stop", "--hive", app.name, env=env)
            assert stopped.code == 0, stopped.err
        assert app_a.alive() == [] and app_b.alive() == []
    finally:
        app_a.kill_all()
        app_b.kill_all()
