"""A living hive with real agent processes on Unix sockets: join, leave and die while it runs.

Every answer given while the ring moves is checked against a hive built fresh in this
process from the same turns (tests/ring_helpers.py); counts after a move are checked against
the same reference. Agents are started through the installed ``amplihack-hive`` command and
stopped by it (or killed by PID) at the end.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import CliHive

from bench.cli_processes import synthetic_turns
from bench.ring_load import AskLoad, Reference, extract, ring_statuses, settled_and_clean, wait_for
from hive_cli import supervisor
from hive_cli.agent_link import AgentLink
from hive_core.hive_config import HiveConfig
from hive_core.membership.store import FileViewStore
from hive_core.transports.registry import hive_auth
from hive_core.transports.unix import UnixSocketTransport

pytestmark = pytest.mark.slow

RF = 3
FAST = {"AMPLIHACK_HANDOFF_GRACE": "1", "AMPLIHACK_RING_POLL": "0.3",
        "AMPLIHACK_REREPLICATE_AFTER": "2"}


class LocalHive(CliHive):
    """A hive in a private AMPLIHACK_HOME, driven through the real CLI, fast ring timers."""

    def __init__(self, home: Path, name: str) -> None:
        super().__init__(home, name, FAST)

    def kill(self, agent: str) -> None:
        record = supervisor.read_pid(self.config, agent)
        assert record is not None
        os.kill(record.pid, signal.SIGKILL)
        wait_for(lambda: supervisor.live_process(record) is None, 10, f"{agent} gone")


@pytest.fixture
def hive_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "home"
    monkeypatch.setenv("AMPLIHACK_HOME", str(home))
    yield home
    root = home / "hives"
    for folder in root.iterdir() if root.exists() else ():
        cfg = HiveConfig.load(folder.name)
        view = FileViewStore(cfg.data_dir).load()
        names = set(cfg.agent_names()) | set(view.members if view else ())
        supervisor.stop(cfg, sorted(names), timeout=5)


def _exact_replicas(link: AgentLink, agents: list[str], primaries: int,
                    reference: Reference) -> dict:
    """Settled, cleaned, and holding exactly the fresh hive's replicas (primaries and
    postings) at the first status that says settled and cleaned: an agent reports an epoch
    as cleaned only with counts read after that cleanup's drops, and only while no write
    placed under an older ring landed after it began (agent_runtime.ring_keeper). Once a
    count 2 over was seen here right after cleanup (a status that read the counts before
    the drops); a stale copy, kept or reported, fails here."""
    assert primaries == reference.primaries_total()
    st = wait_for(lambda: settled_and_clean(link, agents), 20, "settled and cleaned")
    per_agent = {a: (s["facts"], s["index_size"]) for a, s in st.items()}
    assert sum(s["facts"] for s in st.values()) == primaries, per_agent
    assert sum(s["index_size"] for s in st.values()) == reference.index_total(), per_agent
    return st


def _questions(turns: list[str]) -> list[str]:
    picks = turns[:: max(1, len(turns) // 40)]
    out = []
    for turn in picks:
        words = turn.split()
        out.append(" ".join(words[:7]) + "?")
    return [*out, "Who leads project P4?", "Which incident hit the billing service?",
            "What is the p99 latency of the search service?"]


def test_join_and_leave_while_clients_ask(hive_home: Path, tmp_path: Path) -> None:
    """Issue tests 1 and 2 (Kuzu shards): a 7th agent joins, then one leaves, while 4
    clients ask without pause; every answer equals a fresh hive's, none is partial, and after
    the grace period the replicas are exactly the fresh hive's (facts x RF, no stale copy)."""
    turns = synthetic_turns(1000)
    corpus = tmp_path / "turns.txt"
    corpus.write_text("\n".join(turns) + "\n")
    facts = extract(turns)
    hive = LocalHive(hive_home, "living")
    hive.ok("create", "--name", "living", "--agents", "6", "--no-semantic")
    hive.ok("start", "--hive", "living")
    hive.ok("learn", "--hive", "living", "--file", str(corpus))
    six = [f"agent_{i}" for i in range(6)]
    seven = [*six, "newbie"]
    questions = _questions(turns)
    ref7 = Reference(facts, seven, RF)
    expected = {q: ref7.top(q) for q in questions}
    assert all(expected.values())

    link = AgentLink("living", UnixSocketTransport(hive.config.run_dir,
                                                        auth=hive_auth(hive.config)))
    askable = list(six)
    load = AskLoad(link, questions, expected, lambda: askable).start()
    try:
        time.sleep(1.0)
        out = hive.ok("add-agent", "--hive", "living", "--agent-name", "newbie",
                      "--prompt", "You joined late.", "--start")
        assert "joined the ring" in out
        askable.append("newbie")
        st = wait_for(lambda: settled_and_clean(link, seven), 60, "join settled and cleaned")
        time.sleep(1.0)
    finally:
        load.stop()
    assert not load.errors, load.errors[:5]
    assert not load.wrong, f"{len(load.wrong)} of {load.answers} wrong: {load.wrong[:5]}"
    assert load.answers > 50
    st = _exact_replicas(link, seven, len(facts) * RF, ref7)
    assert st["newbie"]["facts"] > 0 and st["newbie"]["ring"]["state"] == "normal"
    status = hive.cli("status", "--hive", "living", "--json").json()
    assert status["ring"]["settled"] is True and status["ring"]["under_replicated"] == 0
    assert {a["name"]: a["ring_state"] for a in status["agents"]} == dict.fromkeys(
        seven, "normal")
    ref7.close()

    # -- leave: agent_2 goes while clients keep asking the agents that stay -----------------
    stay = [a for a in seven if a != "agent_2"]
    ref6 = Reference(facts, stay, RF)
    expected.update({q: ref6.top(q) for q in questions})
    askable[:] = stay
    load = AskLoad(link, questions, expected, lambda: askable).start()
    try:
        time.sleep(0.5)
        out = hive.ok("remove-agent", "--hive", "living", "--agent-name", "agent_2")
        assert "ranges moved" in out
        st = wait_for(lambda: settled_and_clean(link, stay), 60, "leave settled and cleaned")
        time.sleep(0.5)
    finally:
        load.stop()
    assert not load.errors, load.errors[:5]
    assert not load.wrong, f"{len(load.wrong)} of {load.answers} wrong: {load.wrong[:5]}"
    st = _exact_replicas(link, stay, len(facts) * RF, ref6)
    assert "agent_2" not in hive.config.agent_names()
    assert supervisor.read_pid(hive.config, "agent_2") is None
    ref6.close()
    link.transport.close()


def test_deaths_restore_replicas_and_a_returning_agent_catches_up(hive_home: Path,
                                                                  tmp_path: Path) -> None:
    """Issue tests 3 and 4: 20 agents; two die for good; once under_replicated is 0, two
    more die and every fact is still found; a dead one restarted catches up, and the
    extra copies made while it was away are dropped."""
    turns = synthetic_turns(240)
    corpus = tmp_path / "turns.txt"
    corpus.write_text("\n".join(turns) + "\n")
    facts = extract(turns)
    hive = LocalHive(hive_home, "deaths")
    hive.ok("create", "--name", "deaths", "--agents", "20", "--shard-backend", "memory",
            "--no-semantic")
    hive.ok("start", "--hive", "deaths")
    hive.ok("learn", "--hive", "deaths", "--file", str(corpus))
    names = [f"agent_{i}" for i in range(20)]
    link = AgentLink("deaths", UnixSocketTransport(hive.config.run_dir,
                                                        auth=hive_auth(hive.config)))

    for agent in ("agent_3", "agent_11"):
        hive.kill(agent)
    alive = [a for a in names if a not in ("agent_3", "agent_11")]
    dead: set[str] = {"agent_3", "agent_11"}

    def restored() -> dict | None:
        """Every live agent on one settled, cleaned epoch that lists the dead as down,
        counting no under-replicated fact."""
        st = settled_and_clean(link, alive)
        if st and all(dead <= set(s["ring"]["down"]) for s in st.values()) and sum(
                s["ring"]["under_replicated"] for s in st.values()) == 0:
            return st
        return None

    st = wait_for(restored, 90, "replicas of two dead agents restored")
    assert sum(s["facts"] for s in st.values()) == len(facts) * RF
    assert set(st["agent_0"]["ring"]["down"]) == {"agent_3", "agent_11"}

    for agent in ("agent_7", "agent_15"):
        hive.kill(agent)
    alive = [a for a in alive if a not in ("agent_7", "agent_15")]
    dead.update({"agent_7", "agent_15"})
    missing = []
    for fact in facts.values():
        reply = link.ask(alive[hash(fact.fact_id) % len(alive)], fact.content, 10, 15.0)
        if fact.fact_id not in {f["fact_id"] for f in reply["facts"]}:
            missing.append(fact.content)
    assert not missing, f"{len(missing)} of {len(facts)} facts not found: {missing[:3]}"

    st = wait_for(restored, 90, "replicas of four dead agents restored")
    hive.ok("start", "--hive", "deaths", "--agents", "agent_3")
    alive.append("agent_3")
    dead.discard("agent_3")
    st = wait_for(restored, 90, "agent_3 back in the ring")
    assert st["agent_3"]["ring"]["state"] == "normal" and st["agent_3"]["facts"] > 0
    reference = Reference(facts, alive, RF)
    assert sum(s["facts"] for s in st.values()) == len(facts) * RF
    assert sum(s["index_size"] for s in st.values()) == reference.index_total()
    reference.close()
    statuses = ring_statuses(link, alive)
    assert all(s["ring"]["epoch"] == statuses["agent_0"]["ring"]["epoch"]
               for s in statuses.values())
    link.transport.close()


def test_a_joiner_killed_mid_stream_never_half_flips_and_resumes(hive_home: Path,
                                                                  tmp_path: Path) -> None:
    """Three of five agents are frozen (SIGSTOP): segments whose every old owner is frozen
    cannot be pulled (one frozen source alone would not do: its segments go to another
    replica), so the joiner's pull cannot finish; the joiner is killed mid-stream. The view
    stays unflipped, the old owners keep every replica and answer like a fresh hive; the
    joiner, started again, resumes and the ring settles."""
    turns = synthetic_turns(600)
    corpus = tmp_path / "turns.txt"
    corpus.write_text("\n".join(turns) + "\n")
    facts = extract(turns)
    hive = LocalHive(hive_home, "stuck")
    hive.env.update({"AMPLIHACK_HANDOFF_TIMEOUT": "1", "AMPLIHACK_REREPLICATE_AFTER": "600"})
    hive.ok("create", "--name", "stuck", "--agents", "5", "--shard-backend", "memory",
            "--no-semantic")
    hive.ok("start", "--hive", "stuck")
    hive.ok("learn", "--hive", "stuck", "--file", str(corpus))
    five = [f"agent_{i}" for i in range(5)]
    link = AgentLink("stuck", UnixSocketTransport(hive.config.run_dir,
                                                        auth=hive_auth(hive.config)))
    frozen = [supervisor.read_pid(hive.config, a) for a in ("agent_1", "agent_2", "agent_3")]
    views = FileViewStore(hive.config.data_dir)
    for record in frozen:
        assert record is not None
        os.kill(record.pid, signal.SIGSTOP)
    try:
        hive.ok("add-agent", "--hive", "stuck", "--agent-name", "newbie", "--prompt", "-")
        hive.ok("start", "--hive", "stuck", "--agents", "newbie")

        def mid_stream() -> bool:
            pull = link.status(["newbie"], 5.0)["newbie"]["ring"]["last_pull"]  # type: ignore[index]
            return bool(pull and pull["failed"] and pull["facts"] > 0)

        wait_for(mid_stream, 30, "the joiner pulled from some sources and failed on others")
        hive.kill("newbie")
    finally:
        for record in frozen:
            os.kill(record.pid, signal.SIGCONT)  # type: ignore[union-attr]
    view = views.load()
    assert view is not None and "newbie" in view.target and "newbie" not in view.current
    st = ring_statuses(link, five)
    assert sum(s["facts"] for s in st.values()) == len(facts) * RF
    reference = Reference(facts, five, RF)
    for question in _questions(turns)[:10]:
        reply = link.ask("agent_3", question, 10, 15.0)
        assert not reply["partial"]
        assert {f["fact_id"] for f in reply["facts"]} == set(reference.top(question))
    reference.close()

    hive.ok("start", "--hive", "stuck", "--agents", "newbie")
    six = [*five, "newbie"]
    wait_for(lambda: settled_and_clean(link, six), 60, "the resumed join settled")
    reference = Reference(facts, six, RF)
    st = _exact_replicas(link, six, len(facts) * RF, reference)
    reference.close()
    assert st["newbie"]["ring"]["state"] == "normal"
    link.transport.close()
