"""Living-ring checks shared by tests and bench.membership: a reference hive, question load.

The reference is a hive *built fresh* in this process (memory shards, the in-process bus)
from the same turns, extracted here with the same offline extractor: it shares no state with
the agent processes under test, so an answer that matches it is right, not merely
self-consistent.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent_runtime.learning import RuleBasedExtractor, facts_of_turns
from hive_cli.agent_link import AgentLink
from hive_cli.inputs import parse_turns
from hive_core.distributed import DistributedHiveGraph
from hive_core.errors import HiveError
from hive_core.facts import HiveFact

LIMIT = 10


def extract(turns: Sequence[str], file_name: str | None = "turns.txt") -> dict[str, HiveFact]:
    """The facts ``learn --file FILE_NAME`` stores for ``turns`` written one per line:
    read as ``learn`` reads them (each turn's session is the file's name and its turn the
    line number), extracted with the agents' offline extractor. ``file_name=None``: the
    turns as bare strings in a LEARN message (facts without a place)."""
    read: Sequence[Any] = (turns if file_name is None else
                           list(parse_turns(turns, file_name, jsonl=False,
                                                 session=file_name)))
    return {f.fact_id: f for f in facts_of_turns(RuleBasedExtractor(), read)}


class Reference:
    """A fresh hive with ``agents`` holding ``facts``: the answers and counts to expect."""

    def __init__(self, facts: dict[str, HiveFact], agents: Sequence[str], rf: int) -> None:
        self.graph = DistributedHiveGraph("reference", replication_factor=rf)
        for agent in agents:
            self.graph.register_agent(agent)
        self.graph.promote_facts(agents[0], list(facts.values()))
        self.agents = list(agents)

    def top(self, question: str) -> dict[str, float]:
        res = self.graph.search(question, LIMIT)
        assert not res.partial
        return {f.fact_id: round(s, 4) for f, s in zip(res.facts, res.scores, strict=True)}

    def index_total(self) -> int:
        return sum(self.graph.shard_store(a).index_size() for a in self.agents)

    def primaries_total(self) -> int:
        return sum(self.graph.shard_store(a).count() for a in self.agents)

    def close(self) -> None:
        self.graph.close()


@dataclass
class AskLoad:
    """``threads`` clients asking continuously; every answer is checked against the
    reference inside the thread and every mismatch or error is kept (the test asserts
    on them, so a failure in a worker fails the test)."""

    link: AgentLink
    questions: list[str]
    expected: dict[str, dict[str, float]]
    agents: Callable[[], list[str]]
    threads: int = 4
    answers: int = 0
    wrong: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> AskLoad:
        for i in range(self.threads):
            t = threading.Thread(target=self._run, args=(i,), daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)
        while not self._stop.is_set():
            question = rng.choice(self.questions)
            agent = rng.choice(self.agents())
            try:
                reply = self.link.ask(agent, question, LIMIT, 15.0)
            except HiveError as exc:
                with self._lock:
                    self.errors.append(f"{agent}: {question!r}: {exc}")
                continue
            got = {f["fact_id"]: round(float(f["score"]), 4) for f in reply["facts"]}
            problem = ""
            if reply["partial"]:
                problem = f"partial (failed: {reply['shards_failed']})"
            elif set(got) != set(self.expected[question]):
                problem = (f"ids differ: missing {sorted(set(self.expected[question]) - set(got))}"
                           f", extra {sorted(set(got) - set(self.expected[question]))}")
            elif any(abs(got[f] - s) > 1e-3 for f, s in self.expected[question].items()):
                problem = "scores differ"
            with self._lock:
                self.answers += 1
                if problem:
                    self.wrong.append(f"{agent}: {question!r}: {problem}")

    def stop(self) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(timeout=30)
        assert not any(t.is_alive() for t in self._workers), "a client thread is stuck"


def wait_for(check: Callable[[], Any], timeout: float, what: str, poll: float = 0.2) -> Any:
    """``check()`` until it returns something truthy; fails with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except HiveError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(poll)
    raise AssertionError(f"{what} not reached within {timeout:g}s (last: {last!r})")


def ring_statuses(link: AgentLink, agents: Sequence[str]) -> dict[str, dict[str, Any]]:
    replies = link.status(list(agents), 5.0)
    bad = {a: r for a, r in replies.items() if not isinstance(r, dict)}
    assert not bad, f"status failed: {bad}"
    return replies  # type: ignore[return-value]


def settled_and_clean(link: AgentLink, agents: Sequence[str]) -> dict[str, dict[str, Any]] | None:
    """The agents' status once all are on one settled epoch and have dropped stale roles."""
    replies = link.status(list(agents), 5.0)
    if not all(isinstance(r, dict) for r in replies.values()):
        return None  # an agent still starting (or gone): not settled yet
    st: dict[str, dict[str, Any]] = replies  # type: ignore[assignment]
    epochs = {s["ring"]["epoch"] for s in st.values()}
    if len(epochs) != 1:
        return None
    if all(s["ring"]["settled"] and s["ring"]["cleaned_epoch"] == s["ring"]["epoch"]
           for s in st.values()):
        return st
    return None
