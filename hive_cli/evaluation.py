"""``eval``: run a built-in question set through a hive and, beside it, through the baselines.

The hive under test is either a live one (``--hive``: its running agents learn the eval's
turns, then answer) or a throwaway one built for the run (``--agents N --transport T``):
its config, shards, sockets and logs live in a fresh temporary ``AMPLIHACK_HOME`` that is
stopped and removed afterwards, also on failure or Ctrl-C, so an eval never touches the
user's hives. With ``compare`` the same questions go, in the same run, to a one-shard hive in
this process (N=1: what "one big memory" answers with the agents' own code) and to a central
BM25 over all turns (what a user would build without a hive).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent_runtime.inprocess import InProcessHive
from hive_cli import inputs, lifecycle, operations, supervisor
from hive_cli import logs as hive_logs
from hive_cli.agent_link import AgentLink
from hive_cli.errors import CliFailure, UsageProblem
from hive_cli.transport_factory import check_available
from hive_core.evaluation.central import CentralBm25
from hive_core.evaluation.dataset import EvalSet, Turn
from hive_core.evaluation.longhorizon import build_long_horizon
from hive_core.evaluation.runner import Reply, System, SystemReport, evaluate
from hive_core.evaluation.science import science_suite
from hive_core.hive_config import AgentConfig, HiveConfig
from hive_core.semantic import semantic_index

SUITES = ("science", "long-horizon")
Advance = Callable[[int], None]


def build_suites(suite: str, turns: int, questions: int, seed: int) -> list[EvalSet]:
    if suite not in (*SUITES, "all"):
        raise UsageProblem(f"unknown --suite {suite!r}: choose {', '.join(SUITES)} or all")
    sets: list[EvalSet] = []
    if suite in ("science", "all"):
        sets.append(science_suite())
    if suite in ("long-horizon", "all"):
        sets.append(build_long_horizon(n_turns=turns, n_questions=questions, seed=seed))
    return sets


class ProcessHive:
    """A hive of agent processes as an eval system: questions go to its agents in turn."""

    def __init__(self, link: AgentLink, agents: Sequence[str], timeout: float,
                 federated: bool = False) -> None:
        self.link, self.agents, self.timeout = link, list(agents), timeout
        self.federated = federated  # ask the hive's federation (ask --federated)
        self._next = 0

    def ask(self, question: str, k: int) -> Reply:
        # Rotate the asker (the first agent to try), as users on different agents would.
        i, self._next = self._next, self._next + 1
        order = self.agents[i % len(self.agents):] + self.agents[:i % len(self.agents)]
        t0 = time.perf_counter()
        doc = operations.ask_first(self.link, order, question, k, self.timeout,
                                   self.federated)
        seconds = time.perf_counter() - t0
        return Reply(facts=[str(f["content"]) for f in doc["facts"]], answer=str(doc["answer"]),
                     shards=len(doc["shards_searched"]), seconds=seconds,
                     partial=bool(doc["partial"]))


@contextmanager
def throwaway_hive(agents: int, transport: str, connection_string: str | None,
                   backend: str, timeout: float, advance: Advance, semantic: bool = False
                   ) -> Iterator[HiveConfig]:
    """A started hive in a temporary AMPLIHACK_HOME, stopped and removed on the way out."""
    root = Path(tempfile.mkdtemp(prefix="amplihack-eval-"))
    saved = os.environ.get("AMPLIHACK_HOME")
    os.environ["AMPLIHACK_HOME"] = str(root)
    config = HiveConfig(name="eval", transport=transport, connection_string=connection_string,
                        shard_backend=backend, key_prefix=f"amplihack-eval-{os.getpid()}",
                        semantic=semantic,
                        agents=tuple(AgentConfig(f"agent_{i}") for i in range(agents)))
    names = config.agent_names()
    try:
        check_available(config)
        config.save()
        with operations.connected(config) as link:
            results = lifecycle.start(config, link, names, timeout, progress=advance)
        failed = [r.agent for r in results if not r.ok]
        if failed:
            # Its logs go with the temporary home: say what the first one said.
            last = hive_logs.tail(supervisor.log_path(config, failed[0]), 1)
            said = f": {last[-1].strip()}" if last else ""
            raise CliFailure(f"the eval hive did not start ({', '.join(failed)} exited); "
                             f"{failed[0]}'s log ended{said or ' empty'}")
        yield config
    finally:
        try:
            supervisor.stop(config, names, timeout=supervisor.KILL_WAIT_S)
            if config.config_path.exists():
                operations.delete_hive(config, purge_data=True)
        finally:
            if saved is None:
                os.environ.pop("AMPLIHACK_HOME", None)
            else:
                os.environ["AMPLIHACK_HOME"] = saved
            shutil.rmtree(root)


@dataclass(slots=True)
class SuiteRun:
    evalset: EvalSet
    reports: list[SystemReport]
    facts: dict[str, int]  # system -> distinct facts it stored

    def to_dict(self) -> dict[str, Any]:
        return {"suite": self.evalset.name, "turns": len(self.evalset.turns),
                "questions": len(self.evalset.questions), "facts_stored": self.facts,
                "systems": [r.to_dict() for r in self.reports]}


class Baselines:
    """n1 (one shard, in this process) and a central BM25 over every turn learned so far:
    the suites of one run are learned one after another into one hive, so the baselines
    learn them the same way and hold the same facts (else idf differs, and so do ranks)."""

    def __init__(self, semantic: bool = False) -> None:
        # n1 ranks as the hive's agents do: by meaning too when the hive is semantic.
        self.solo = InProcessHive(1, semantic=semantic_index() if semantic else None)
        self.turns: list[Turn] = []
        self.central = CentralBm25(())
        self.facts = 0

    def learn(self, evalset: EvalSet) -> dict[str, System]:
        self.facts = self.solo.learn([t.to_dict() for t in evalset.turns])
        self.turns.extend(evalset.turns)
        self.central = CentralBm25(self.turns)
        return {"n1": self.solo, "central": self.central}

    def close(self) -> None:
        self.solo.close()


def run_suite(evalset: EvalSet, hive: ProcessHive | None, hive_facts: int | None,
              baselines: Baselines | None, k: int, advance: Advance) -> SuiteRun:
    """Ask every question of the hive (already taught) and of the ``baselines``, which
    learn the suite's turns here first."""
    systems: dict[str, System] = {}
    facts: dict[str, int] = {}
    if hive is not None:
        systems["hive"] = hive
        if hive_facts is not None:
            facts["hive"] = hive_facts
    if baselines is not None:
        systems.update(baselines.learn(evalset))
        facts["n1"] = baselines.facts
        facts["central"] = len(baselines.central.texts)  # its documents: distinct turns
    return SuiteRun(evalset, evaluate(evalset, systems, k, advance), facts)


def learn_into(link: AgentLink, agents: Sequence[str], turns: list[dict[str, Any]],
               timeout: float, advance: Advance) -> int:
    """LEARN ``turns`` through the hive's agents as ``learn`` does; the distinct facts."""
    doc = operations.learn(link, inputs.round_robin(turns, list(agents)), timeout, advance)
    if doc["failed_shards"]:
        raise CliFailure(f"the eval's facts are missing replicas: shard(s) "
                         f"{', '.join(doc['failed_shards'])} failed to store them")
    return int(doc["unique_facts"])
