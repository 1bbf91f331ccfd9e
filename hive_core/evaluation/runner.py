"""Asking an eval's questions of several systems and scoring them the same way.

A *system* is anything that answers a question with a :class:`Reply` (facts best first, one
answer line, how many shards it asked, how long it took): a hive of agent processes, a hive
in this process, the central BM25 baseline. :func:`evaluate` asks every system every
question in the same order and keeps per-question results, so a report can be cut by
category and two systems compared question by question.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from hive_core.evaluation.dataset import EvalSet, Question, answered, retrieved


@dataclass(frozen=True, slots=True)
class Reply:
    facts: list[str]  # fact texts, best first
    answer: str  # the one answer line
    shards: int  # shards asked to search
    seconds: float
    partial: bool = False


class System(Protocol):
    def ask(self, question: str, k: int) -> Reply: ...


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile: a reported p95 is a value that was measured, not a blend.
    The one percentile of every number the eval and the benchmarks print."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(len(ordered) * pct / 100.0))
    return float(ordered[rank - 1])


@dataclass(frozen=True, slots=True)
class Outcome:
    question: Question
    retrieved: bool
    answered: bool
    shards: int
    seconds: float
    partial: bool


@dataclass(slots=True)
class Score:
    """Hits out of ``n``: retrieval@k and answers."""

    n: int = 0
    retrieved: int = 0
    answered: int = 0

    def add(self, outcome: Outcome) -> None:
        self.n += 1
        self.retrieved += outcome.retrieved
        self.answered += outcome.answered

    @property
    def retrieval_pct(self) -> float:
        return 100.0 * self.retrieved / self.n if self.n else 0.0

    @property
    def answer_pct(self) -> float:
        return 100.0 * self.answered / self.n if self.n else 0.0


@dataclass(slots=True)
class SystemReport:
    name: str
    outcomes: list[Outcome] = field(default_factory=list)

    def overall(self) -> Score:
        score = Score()
        for o in self.outcomes:
            score.add(o)
        return score

    def by_category(self) -> dict[str, Score]:
        scores: dict[str, Score] = {}
        for o in self.outcomes:
            scores.setdefault(o.question.category, Score()).add(o)
        return dict(sorted(scores.items()))

    def to_dict(self) -> dict[str, Any]:
        total = self.overall()
        ms = [o.seconds * 1000.0 for o in self.outcomes]
        shards = [float(o.shards) for o in self.outcomes]
        return {
            "system": self.name,
            "questions": total.n,
            "retrieval_at_k_pct": round(total.retrieval_pct, 1),
            "answer_pct": round(total.answer_pct, 1),
            "categories": {c: {"questions": s.n, "retrieval_at_k_pct": round(s.retrieval_pct, 1),
                               "answer_pct": round(s.answer_pct, 1)}
                           for c, s in self.by_category().items()},
            "shards_asked_median": percentile(shards, 50),
            "shards_asked_max": max(shards, default=math.nan),
            "latency_ms_p50": round(percentile(ms, 50), 2),
            "latency_ms_p95": round(percentile(ms, 95), 2),
            "partial": sum(o.partial for o in self.outcomes),
            "per_question": [
                {"question": o.question.text, "category": o.question.category,
                 "retrieved": o.retrieved, "answered": o.answered, "shards": o.shards,
                 "ms": round(o.seconds * 1000.0, 2), "partial": o.partial}
                for o in self.outcomes],
        }


def judge(question: Question, reply: Reply, k: int) -> Outcome:
    return Outcome(question, retrieved(question, reply.facts, k), answered(question, reply.answer),
                   reply.shards, reply.seconds, reply.partial)


def evaluate(evalset: EvalSet, systems: Mapping[str, System], k: int = 10,
             advance: Callable[[int], None] = lambda n: None) -> list[SystemReport]:
    """Every question to every system (question by question, so a slow system shows early);
    ``advance(1)`` after each answer."""
    reports = {name: SystemReport(name) for name in systems}
    for question in evalset.questions:
        for name, system in systems.items():
            reports[name].outcomes.append(judge(question, system.ask(question.text, k), k))
            advance(1)
    return list(reports.values())
