"""End to end through the installed ``amplihack-hive`` script with the Azure transports.

Real agent processes talk through a fake Azure namespace served by a separate process (no
Event Hubs or Service Bus emulator runs offline; hive_core.transports.azurefake reproduces
the services' hazards). The hive's connection string names the fake with a ``fake://``
endpoint and is passed the way a deployment passes it: in the environment, never in the
config file. create, start, learn the sample corpus, ask an agent that did not learn the
fact, status counts = facts x RF, stop; no process is left and the key is never shown.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from azure_helpers import ServedNamespace
from test_cli_e2e import CORPUS, Hive

AGENTS = 4
RF = 3
TRANSPORTS = {
    "azure_event_hubs": "AMPLIHACK_EH_CONNECTION_STRING",
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
