"""A hive of N shards inside this process that learns and answers exactly like agents do.

The eval compares a hive of agent processes with "N=1" (one shard holding everything) and
with bigger in-process hives. All of them must use the agents' own code -- the same
extraction (:func:`~agent_runtime.learning.facts_of_turns`), the same routed search, the
same answerer -- or a difference between them would measure the harness, not the hive.
Only the transport differs: shards here talk over the in-process bus.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any

from agent_runtime.answering import Answerer, ExtractiveAnswerer
from agent_runtime.learning import Extractor, RuleBasedExtractor, facts_of_turns
from agent_runtime.turn_context import with_before
from hive_core.distributed import DistributedHiveGraph
from hive_core.evaluation.runner import Reply
from hive_core.semantic.retrieval import SemanticIndex

LEARN_BATCH = 200


class InProcessHive:
    """``n_agents`` memory shards; learning spreads turns round-robin like ``learn`` does."""

    def __init__(self, n_agents: int, *, name: str = "eval", seed: int = 7,
                 extractor: Extractor | None = None, answerer: Answerer | None = None,
                 semantic: SemanticIndex | None = None) -> None:
        if n_agents < 1:
            raise ValueError("an in-process hive needs at least one agent")
        self.graph = DistributedHiveGraph(name, shard_backend="memory")
        self.graph.semantic = semantic  # hive_core.semantic: None keeps the lexical path
        self.agents = [f"agent_{i}" for i in range(n_agents)]
        for agent in self.agents:
            self.graph.register_agent(agent)
        self.extractor = extractor or RuleBasedExtractor()
        self.answerer = answerer or ExtractiveAnswerer()
        self._rng = random.Random(seed)

    def learn(self, turns: Sequence[dict[str, Any]]) -> int:
        """Learn ``turns`` (LEARN items); returns the number of distinct facts stored."""
        stored: set[str] = set()
        turns = list(with_before(turns))  # as the CLI sends them (agent_runtime.turn_context)
        for i in range(0, len(turns), LEARN_BATCH):
            agent = self.agents[(i // LEARN_BATCH) % len(self.agents)]
            facts = facts_of_turns(self.extractor, turns[i:i + LEARN_BATCH])
            stored.update(self.graph.promote_facts(agent, facts))
        return len(stored)

    def ask(self, question: str, k: int) -> Reply:
        asker = self._rng.choice(self.agents)
        t0 = time.perf_counter()
        result = self.graph.search(question, k, asking_agent=asker)
        answer = self.answerer.answer(question, result)
        seconds = time.perf_counter() - t0
        return Reply(facts=[f.content for f in result.facts], answer=answer.text,
                     shards=len(result.shards_searched), seconds=seconds,
                     partial=result.partial)

    def facts_per_agent(self) -> list[int]:
        return list(self.graph.get_stats()["shards"].values())

    def close(self) -> None:
        self.graph.close()
