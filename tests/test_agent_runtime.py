"""Agent processes for real: ``python -m agent_runtime`` subprocesses on Unix sockets.

Every child is killed by PID in teardown; every wait has a deadline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_runtime.learning import RuleBasedExtractor
from hive_core.config import DEFAULTS
from hive_core.errors import MessageRejected, TransportError
from hive_core.hive_config import AgentConfig, HiveConfig
from hive_core.messages import Envelope, MessageType
from hive_core.placement import place
from hive_core.ring import HashRing
from hive_core.search import route_terms
from hive_core.shard_server import ShardServer
from hive_core.store.memory import MemoryShardStore
from hive_core.text import query_terms
from hive_core.transports.base import check_reply
from hive_core.transports.registry import hive_auth
from hive_core.transports.unix import UnixSocketTransport

pytestmark = pytest.mark.slow

HIVE = "t"
RF = 3
START_DEADLINE = 60.0
TURNS = [
    "Incident INC-2041 was caused by CVE-2024-3094 in xz-utils 5.6.0. "
    "It was patched on 2024-03-29, and the blast radius covered subnet 10.0.1.0/24.",
    "Alice Chen leads the Atlas project. The Atlas deadline moved to 2024-06-01.",
    "The payment gateway p95 latency is 180 ms; the Q3 budget is $4.7M.",
]
QUESTION = "What caused INC-2041?"


class Hive:
    """A hive config in a private AMPLIHACK_HOME plus its agent processes."""

    def __init__(self, home: Path, names: list[str]) -> None:
        self.env = {**os.environ, "AMPLIHACK_HOME": str(home)}
        self.env.pop("ANTHROPIC_API_KEY", None)
        self.names = names
        self.config = HiveConfig(name=HIVE, shard_backend="memory", replication_factor=RF,
                                 agents=tuple(AgentConfig(n) for n in names))
        self.logs = home / "test-logs"
        self.logs.mkdir(parents=True)
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self._logs: dict[int, Path] = {}
        self.config.save()  # with the hive's secret: the client signs as the agents do
        self.client = UnixSocketTransport(self.config.run_dir, auth=hive_auth(self.config))

    def spawn(self, name: str, *, env: dict | None = None,
              as_name: str | None = None) -> subprocess.Popen:
        """Start an agent process (``name`` "" leaves --agent out; ``as_name`` says who)."""
        label = as_name or name
        path = self.logs / f"{label}.{len(self.procs)}.log"
        args = [sys.executable, "-m", "agent_runtime", "--hive", HIVE]
        if name:
            args += ["--agent", name]
        with open(path, "w") as log:
            proc = subprocess.Popen(args, env=env or self.env, stdout=log, stderr=log)
        self.procs.append((label, proc))
        self._logs[proc.pid] = path
        return proc

    def proc(self, name: str) -> subprocess.Popen:
        return [p for n, p in self.procs if n == name][-1]

    def log_of(self, proc: subprocess.Popen) -> str:
        return self._logs[proc.pid].read_text()

    def send(self, kind: MessageType, target: str, payload: dict, timeout: float = 15.0):
        [reply] = self.client.request([Envelope(kind, HIVE, "cli", target, payload)], timeout)
        return check_reply(reply).payload

    def status(self, name: str) -> dict:
        return self.send(MessageType.SHARD_QUERY, name, {"op": "status"}, timeout=5.0)

    def wait_ready(self, names: list[str]) -> None:
        deadline = time.monotonic() + START_DEADLINE
        waiting = set(names)
        while waiting and time.monotonic() < deadline:
            for name in sorted(waiting):
                try:
                    if self.status(name)["ready"]:
                        waiting.discard(name)
                except TransportError:
                    pass
            for name in waiting:
                proc = self.proc(name)
                assert proc.poll() is None, f"agent exited early:\n{self.log_of(proc)}"
            time.sleep(0.1)
        assert not waiting, f"not ready within {START_DEADLINE}s: {sorted(waiting)}"

    def stop_all(self) -> None:
        self.client.close()
        for _, proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture
def make_hive(amplihack_home) -> Iterator:
    made: list[Hive] = []

    def make(count: int) -> Hive:
        hive = Hive(amplihack_home, [f"a{i}" for i in range(count)])
        hive.config.save()
        made.append(hive)
        return hive

    yield make
    for hive in made:
        hive.stop_all()


@pytest.fixture
def running(make_hive) -> Hive:
    hive = make_hive(5)
    for name in hive.names:
        hive.spawn(name)
    hive.wait_ready(hive.names)
    return hive


def expected_facts() -> list:
    facts = {}
    for turn in TURNS:
        for fact in RuleBasedExtractor().extract(turn):
            facts.setdefault(fact.fact_id, fact)
    return list(facts.values())


def test_a_turns_session_and_index_travel_with_its_facts(running: Hive) -> None:
    """What retrieval reads for a turn's neighbours (HiveFact.metadata["session"] and
    ["turn"]) is set by LEARN from the turn's place; a malformed turn is refused whole."""
    turn = {"content": "Dana Ruiz adopted a greyhound named Comet.", "session": "chat-7",
            "turn": 42}
    learned = running.send(MessageType.LEARN, "a1", {"turns": [turn]})
    assert learned["facts"] >= 1 and learned["failed_shards"] == []
    answer = running.send(MessageType.ASK, "a2", {"question": "What did Dana Ruiz adopt?",
                                                  "limit": 3})
    top = answer["facts"][0]
    assert "Comet" in top["content"] and (top["session"], top["turn"]) == ("chat-7", 42)
    with pytest.raises(MessageRejected, match="LEARN needs"):
        running.send(MessageType.LEARN, "a1", {"turns": [{"content": "x", "turn": "7"}]})


def test_learn_at_one_agent_answer_at_another(running: Hive) -> None:
    learned = running.send(MessageType.LEARN, "a0", {"turns": TURNS})
    facts = expected_facts()
    assert learned["turns"] == 3
    assert learned["facts"] == len(facts) >= 6
    assert sorted(learned["fact_ids"]) == sorted(f.fact_id for f in facts)
    assert learned["failed_shards"] == []

    answer = running.send(MessageType.ASK, "a3", {"question": QUESTION, "limit": 3})
    assert answer["agent"] == "a3" and not answer["partial"]
    top = answer["facts"][0]
    assert "CVE-2024-3094" in top["content"] and top["source_agent"] == "a0"
    assert "CVE-2024-3094" in answer["answer"] and "(learned by" not in answer["answer"]
    assert answer["sources"][0] == {k: top[k] for k in ("fact_id", "content", "source_agent",
                                                        "score", "hive")}
    assert top["hive"] == HIVE and answer["hives_asked"] == []  # no federation here
    assert 1 <= len(answer["shards_queried"]) <= DEFAULTS.query_fanout
    assert answer["shards_failed"] == []

    # Placed on the ring (RF copies each), not kept by the learner.
    statuses = [running.status(n) for n in running.names]
    assert sum(s["facts"] for s in statuses) == len(facts) * RF
    assert {s["agent"] for s in statuses} == set(running.names)
    assert all(s["pid"] > 0 and s["transport"] == "local" for s in statuses)
    assert all(isinstance(s["gossip_deferred"], int) and s["gossip_deferred"] >= 0
               for s in statuses)
    ring = HashRing(running.names, replication_factor=RF)
    per_shard = {agent: len(batch.primary) for agent, batch in place(facts, ring).items()}
    assert {s["agent"]: s["facts"] for s in statuses} == {
        n: per_shard.get(n, 0) for n in running.names}

    # Bad requests are answered with one clear error, and the agent keeps serving.
    with pytest.raises(TransportError, match="turns"):
        running.send(MessageType.LEARN, "a1", {"turns": "not a list"})
    with pytest.raises(TransportError, match="limit"):
        running.send(MessageType.ASK, "a1", {"question": QUESTION, "limit": 0})
    assert running.status("a1")["ready"]


def test_sigterm_stops_cleanly_and_removes_the_socket(running: Hive) -> None:
    proc = running.proc("a2")
    sock = running.config.run_dir / "a2.sock"
    assert sock.exists()
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    assert not sock.exists()
    log = running.log_of(proc)
    assert "stopping on SIGTERM" in log and "stopped cleanly" in log
    # The others notice a failed shard, never a hang: a learn reports it.
    learned = running.send(MessageType.LEARN, "a0", {"turns": TURNS})
    assert learned["facts"] > 0


def test_sigterm_finishes_the_learn_in_flight(make_hive) -> None:
    """a3 is served by this test and holds its SHARD_STORE until released, so a1's LEARN is
    provably in flight when a1 gets SIGTERM."""
    hive = make_hive(4)
    for name in ("a0", "a1", "a2"):
        hive.spawn(name)
    hive.wait_ready(["a0", "a1", "a2"])
    entered, release = threading.Event(), threading.Event()
    shard = ShardServer("a3", MemoryShardStore("a3"))

    def held(env: Envelope) -> Envelope | None:
        if env.type == MessageType.SHARD_STORE:
            entered.set()
            release.wait(10)
        return shard.handle(env)

    peer = UnixSocketTransport(hive.config.run_dir, auth=hive_auth(hive.config))
    peer.bind("a3", held)
    try:
        out: list = []
        sender = threading.Thread(target=lambda: out.append(
            hive.send(MessageType.LEARN, "a1", {"turns": TURNS}, timeout=30.0)))
        sender.start()
        assert entered.wait(15)  # a1 is now waiting on a3 inside the LEARN
        proc = hive.proc("a1")
        os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while "stopping on SIGTERM" not in hive.log_of(proc) and time.monotonic() < deadline:
            time.sleep(0.02)
        release.set()
        sender.join(30)
        assert out and out[0]["facts"] == len(expected_facts())  # answered, not cut off
        assert out[0]["failed_shards"] == []
        assert proc.wait(timeout=30) == 0
        log = hive.log_of(proc)
        assert log.index("stopping on SIGTERM") < log.index("LEARN turns=3")
    finally:
        release.set()
        peer.close()


def _victim_on_route(names: list[str]) -> tuple[str, str]:
    """(asker, victim): an agent whose question routes to another agent's shard."""
    ring = HashRing(names, replication_factor=RF)
    terms = query_terms(QUESTION, DEFAULTS.query_fanout)
    for asker in names:
        route = route_terms(terms, ring.get_agents, prefer=asker)
        others = sorted(set(route.values()) - {asker})
        if others:
            return asker, others[0]
    raise AssertionError("no question route leaves its asker")


def test_kill_9_one_agent_answers_via_replicas_and_reports(running: Hive) -> None:
    running.send(MessageType.LEARN, "a0", {"turns": TURNS})
    asker, victim = _victim_on_route(running.names)
    proc = running.proc(victim)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)

    answer = running.send(MessageType.ASK, asker, {"question": QUESTION, "limit": 3})
    # Answered from live replicas after routing around it: not partial, and said precisely.
    assert victim in answer["shards_rerouted"] and answer["shards_failed"] == []
    assert not answer["partial"]
    assert "CVE-2024-3094" in answer["facts"][0]["content"]

    # A write whose owners include the dead agent stores on the live owners and says so.
    turn = "Bob Stone rotated the TLS certificates on 2024-04-02 for gateway GW-7."
    facts = RuleBasedExtractor().extract(turn)
    owners = set(place(facts, HashRing(running.names, replication_factor=RF)))
    learner = next(n for n in running.names if n != victim)
    learned = running.send(MessageType.LEARN, learner, {"turns": [turn]})
    assert learned["facts"] == len(facts)
    assert learned["failed_shards"] == ([victim] if victim in owners else [])


def test_startup_failures_exit_1_with_one_clear_line(make_hive) -> None:
    hive = make_hive(2)
    unknown = hive.spawn("nobody")
    assert unknown.wait(timeout=30) == 1
    log = hive.log_of(unknown)
    assert "startup failed" in log and "nobody" in log and "Traceback" not in log

    bad_env = {**hive.env, "AMPLIHACK_MEMORY_SEARCH_TIMEOUT": "soon"}
    bad = hive.spawn("a0", env=bad_env)
    assert bad.wait(timeout=30) == 1
    assert "AMPLIHACK_MEMORY_SEARCH_TIMEOUT" in hive.log_of(bad)

    first = hive.spawn("", env={**hive.env, "AMPLIHACK_AGENT_NAME": "a0"}, as_name="a0")
    hive.wait_ready(["a0"])
    assert hive.status("a0")["pid"] == first.pid
    second = hive.spawn("a0", as_name="a0-again")
    assert second.wait(timeout=30) == 1
    log = hive.log_of(second)
    assert "already running" in log and "Traceback" not in log
    assert hive.status("a0")["pid"] == first.pid  # the running agent was not disturbed


def test_a_restarted_agent_with_an_empty_shard_is_refilled_by_gossip(make_hive) -> None:
    hive = make_hive(4)
    hive.env["AMPLIHACK_GOSSIP_INTERVAL"] = "0.5"
    for name in hive.names:
        hive.spawn(name)
    hive.wait_ready(hive.names)
    learned = hive.send(MessageType.LEARN, "a0", {"turns": TURNS})
    total = learned["facts"] * RF
    held = {n: hive.status(n)["facts"] for n in hive.names}
    assert sum(held.values()) == total and held["a2"] > 0
    postings = hive.status("a2")["index_size"]

    os.kill(hive.proc("a2").pid, signal.SIGKILL)  # memory shard: its facts are gone
    hive.proc("a2").wait(timeout=10)
    hive.spawn("a2")
    hive.wait_ready(["a2"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and hive.status("a2")["facts"] < held["a2"]:
        time.sleep(0.2)
    while time.monotonic() < deadline and hive.status("a2")["index_size"] < postings:
        time.sleep(0.2)
    assert hive.status("a2")["facts"] == held["a2"]
    assert hive.status("a2")["index_size"] == postings
    assert sum(hive.status(n)["facts"] for n in hive.names) == total
    # Anti-entropy is push-pull: the repair shows in the log of whichever side began it.
    assert any("gossip round" in hive.log_of(p) and "repaired" in hive.log_of(p)
               for _n, p in hive.procs)
