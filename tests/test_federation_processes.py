"""Federation between hives of agent processes (issue 11), through the installed CLI.

Hives of real agent processes (Kuzu shards, Unix sockets) in one AMPLIHACK_HOME, linked with
``create --parent`` / ``federate``. The reference is independent of federation: a fresh flat
hive that learned every turn (it never takes part in a federation), asked the same
questions; and the hives' own local searches (``ask --local``), which show where a fact is
stored.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from redis_helpers import REDIS_URL, delete_prefix, shared_redis, unique_prefix
from semantic_helpers import require_model
from test_cli_e2e import Hive

from hive_cli import operations
from hive_cli.evaluation import ProcessHive
from hive_core.evaluation.longhorizon import build_long_horizon
from hive_core.evaluation.runner import evaluate
from hive_core.hive_config import HiveConfig

pytestmark = pytest.mark.slow


class Forest:
    """Hives under one home; every agent they ever ran is killed at the end."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.hives: dict[str, Hive] = {}

    def create(self, name: str, agents: int, parent: str | None = None,
               redis_prefix: str | None = None) -> Hive:
        hive = self.hives[name] = Hive(self.home, name)
        argv = ["create", "--name", name, "--agents", str(agents)]
        if redis_prefix is not None:
            argv += ["--transport", "redis", "--connection-string", REDIS_URL]
        res = hive(*argv, *(["--parent", parent] if parent else []))
        assert res.code == 0, res.err
        if redis_prefix is not None:
            replace(hive.config(), key_prefix=redis_prefix).save()
        return hive

    def start(self, *names: str) -> None:
        for name in names:
            res = self.hives[name]("start", "--hive", name, "--timeout", "120")
            assert res.code == 0, res.err

    def learn(self, name: str, turns: list[dict], tmp: Path) -> dict:
        path = tmp / f"{name}-{time.monotonic_ns()}.jsonl"
        path.write_text("".join(json.dumps(t) + "\n" for t in turns))
        res = self.hives[name]("learn", "--hive", name, "--file", str(path), "--json")
        assert res.code == 0, res.err
        return res.json()

    def ask(self, name: str, question: str, *flags: str) -> dict:
        res = self.hives[name]("ask", "--hive", name, "--json", *flags, question)
        assert res.code == 0, res.err
        return res.json()

    def status(self, name: str, codes: tuple[int, ...] = (0,)) -> dict:
        """``status --json``; ``codes``: the exit codes expected (3: an agent is down)."""
        res = self.hives[name]("status", "--hive", name, "--json")
        assert res.code in codes, res.err
        return res.json()

    def kill_all(self) -> None:
        for hive in self.hives.values():
            hive.kill_all()


@pytest.fixture
def forest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Forest]:
    home = tmp_path / "home"
    monkeypatch.setenv("AMPLIHACK_HOME", str(home))
    f = Forest(home)
    yield f
    f.kill_all()


def _contents(doc: dict) -> list[str]:
    return [f["content"] for f in doc["facts"]]


def _split(evalset, groups: tuple[str, ...]) -> dict[str, list[dict]]:
    """Every third conversation to each group, keeping only sentences said in one group: a
    flat hive keeps a sentence said in two hives once, the federation twice (in df and in
    the collection), so exact equality is a claim about distinct content (the effect of
    shared content is measured in bench.federation)."""
    sessions = sorted({t.session for t in evalset.turns})
    group_of = {s: groups[i % len(groups)] for i, s in enumerate(sessions)}
    said_in: dict[str, set[str]] = {}
    for t in evalset.turns:
        said_in.setdefault(t.content, set()).add(group_of[t.session])
    out: dict[str, list[dict]] = {g: [] for g in groups}
    for t in evalset.turns:
        if len(said_in[t.content]) == 1:
            out[group_of[t.session]].append(t.to_dict())
    return out


def test_federated_answers_equal_one_flat_hive(forest: Forest, tmp_path: Path) -> None:
    """Root + 3 groups of 4 agents, each group learning a disjoint third of the eval's
    conversations: a federated question from any group ranks exactly as a flat hive holding
    every turn does (same facts, same order), and scores the same on the eval."""
    evalset = build_long_horizon(n_turns=600, n_questions=40, seed=3)
    groups = ("g1", "g2", "g3")
    thirds = _split(evalset, groups)
    forest.create("root", 2)
    for g in groups:
        forest.create(g, 4, parent="root")
    forest.create("flat", 4)
    forest.start("root", *groups, "flat")
    for g in groups:
        forest.learn(g, thirds[g], tmp_path)
    forest.learn("flat", [t for g in groups for t in thirds[g]], tmp_path)

    systems = {}
    links = []
    for name, federated in (("g2", True), ("flat", False)):
        config = HiveConfig.load(name)
        link = operations.connected(config)
        links.append(link)
        systems[name] = ProcessHive(link.__enter__(), config.agent_names(), 30.0, federated)
    try:
        reports = {r.name: r.overall() for r in evaluate(evalset, systems, 10)}
        # Question by question, from every group: the same facts in the same order.
        differs_alone = 0
        for question in evalset.questions[:12]:
            flat = _contents(forest.ask("flat", question.text, "--local"))
            differs_alone += _contents(forest.ask("g1", question.text, "--local")) != flat
            for g in groups:
                doc = forest.ask(g, question.text)
                assert doc["partial"] is False and sorted(doc["hives_asked"]) == sorted(
                    {"root", *groups} - {g})
                assert _contents(doc) == flat, (g, question.text)
                # Each hive ran its own routed search: <= 5 shards searched per hive.
                per_hive: dict[str, int] = {}
                for shard in doc["shards_searched"]:
                    hive = shard.split("/")[0] if "/" in shard else g
                    per_hive[hive] = per_hive.get(hive, 0) + 1
                assert max(per_hive.values()) <= 5
    finally:
        for link in links:
            link.__exit__(None, None, None)
    # A group alone knows a third: without the federation the comparison would fail.
    assert differs_alone > 0
    fed, flat = reports["g2"], reports["flat"]
    assert (fed.retrieved, fed.answered) == (flat.retrieved, flat.answered), (fed, flat)


def test_federated_semantic_answers_equal_one_flat_semantic_hive(forest: Forest,
                                                                 tmp_path: Path) -> None:
    """Every hive with ``semantic: true``: the asker re-ranks the merged pools by meaning
    once, as a flat semantic hive re-ranks its own (tests/test_federated_search.py checks
    every question in process; this checks the wire: the asker's pool size, the whole
    pool's neighbours)."""
    require_model()
    evalset = build_long_horizon(n_turns=300, n_questions=16, seed=5)
    groups = ("g1", "g2")
    halves = _split(evalset, groups)
    forest.create("root", 1)
    for g in groups:
        forest.create(g, 2, parent="root")
    forest.create("flat", 2)
    for hive in forest.hives.values():
        replace(hive.config(), semantic=True).save()
    forest.start("root", *groups, "flat")
    for g in groups:
        forest.learn(g, halves[g], tmp_path)
    forest.learn("flat", [t for g in groups for t in halves[g]], tmp_path)
    for question in evalset.questions:
        flat = _contents(forest.ask("flat", question.text, "--local"))
        for g in groups:
            doc = forest.ask(g, question.text)
            assert doc["partial"] is False and _contents(doc) == flat, (g, question.text)


def _has(forest: Forest, hive: str, text: str) -> bool:
    return text in _contents(forest.ask(hive, text, "--local"))


def _wait_for(check, seconds: float = 30.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.5)
    return False


def _federation(forest: Forest, hive: str) -> list[dict]:
    return [a["federation"] for a in forest.status(hive)["agents"]]


def test_escalation_broadcast_catch_up_and_detach(forest: Forest, tmp_path: Path) -> None:
    """The rules between hives of processes: 0.89 stays, 0.9 goes up and across (never back
    to its group), a group that is down gets it when it returns, a detached group gets no
    more. Group g3 runs on Redis, the others on Unix sockets: a link is a client of the
    other hive's own transport."""
    prefix = unique_prefix()
    forest.create("root", 2)
    for g in ("g1", "g2"):
        forest.create(g, 2, parent="root")
    forest.create("g3", 2, parent="root", redis_prefix=prefix)
    try:
        _escalation_story(forest, tmp_path)
    finally:
        forest.kill_all()
        delete_prefix(shared_redis(), prefix)


def _escalation_story(forest: Forest, tmp_path: Path) -> None:
    forest.start("root", "g1", "g2", "g3")

    stays = "Ingrid Holm keeps the spare keys of the Oslo office."
    goes = "The Oslo office alarm code changed to 4471."
    forest.learn("g1", [{"content": stays, "confidence": 0.89},
                        {"content": goes, "confidence": 0.9}], tmp_path)
    assert _wait_for(lambda: _has(forest, "g2", goes) and _has(forest, "g3", goes))
    assert _has(forest, "root", goes)
    # One delivery carried both; the 0.89 fact was not in it and never arrives.
    for hive in ("root", "g2", "g3"):
        assert not _has(forest, hive, stays)
    assert _has(forest, "g1", stays)
    # Never echoed back to the group it came from.
    assert sum(f["received"] for f in _federation(forest, "g1")) == 0
    assert sum(f["received"] for f in _federation(forest, "root")) == 1
    assert sorted(_federation(forest, "root")[0]["children"]) == ["g1", "g2", "g3"]

    # A group down during the broadcast catches up when it returns.
    res = forest.hives["g2"]("stop", "--hive", "g2")
    assert res.code == 0, res.err
    late = "The Bergen warehouse moved to Dock 12."
    forest.learn("g1", [{"content": late, "confidence": 1.0}], tmp_path)
    assert _wait_for(lambda: _has(forest, "g3", late))
    assert _wait_for(lambda: any(f["outbox"].get("g2") for f in _federation(forest, "root")))
    shown = forest.hives["root"]("status", "--hive", "root")
    assert shown.code == 0 and "deliveries waiting: " in shown.out and " to g2" in shown.out
    # Meanwhile a federated question says which hive it lacks, within its deadline.
    t0 = time.monotonic()
    doc = forest.ask("g1", "Where did the Bergen warehouse move?", "--timeout", "8")
    assert time.monotonic() - t0 < 20
    assert doc["partial"] is True and doc["hives_failed"] == ["g2"]
    assert "g2" in doc["shards_failed"] and late in _contents(doc)
    # The root agent holding the delivery dies (kill -9) and is started again: the outbox
    # is on disk, so nothing is lost.
    holders = [a for a in forest.status("root")["agents"]
               if (a["federation"] or {}).get("outbox", {}).get("g2")]
    assert holders
    for agent in holders:
        os.kill(agent["pid"], signal.SIGKILL)
    killed = {h["agent"] for h in holders}
    assert _wait_for(lambda: all(a["status"] != "running" for a in forest.status(
        "root", (0, 3))["agents"] if a["agent"] in killed), 20)
    forest.start("root")
    forest.start("g2")
    assert _wait_for(lambda: _has(forest, "g2", late), 60)
    assert _wait_for(lambda: not any(f["outbox"] for f in _federation(forest, "root")))

    # Detached: no more broadcasts to it, and federated questions leave it out.
    res = forest.hives["g3"]("federate", "--hive", "g3", "--detach")
    assert res.code == 0, res.err
    time.sleep(2.5)  # running agents re-read the tree within ~2 s
    after = "The Oslo office closes early on Fridays in July."
    forest.learn("g1", [{"content": after, "confidence": 1.0}], tmp_path)
    assert _wait_for(lambda: _has(forest, "g2", after))
    time.sleep(2)
    assert not _has(forest, "g3", after)
    doc = forest.ask("g1", "When does the Oslo office close early?")
    assert sorted(doc["hives_asked"]) == ["g2", "root"]
    assert doc["sources"][0]["content"] == after and doc["sources"][0]["hive"] == "g1"
    plain = forest.hives["g1"]("ask", "--hive", "g1", "When does the Oslo office close early?")
    assert "in hive g1" in plain.out and "federated: also asked hive(s) root, g2" in plain.out
    assert "g3" not in _federation(forest, "root")[0]["children"]
    # A federated question from a hive in no tree is a local one.
    alone = forest.ask("g3", "When does the Oslo office close early?")
    assert alone["hives_asked"] == [] and after not in _contents(alone)
