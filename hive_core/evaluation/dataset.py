"""What an evaluation is made of: turns to learn, questions to ask, and how a reply is judged.

A question is judged by *keywords*, never by fact ids: the hive learns turns, and what a turn
becomes (one fact per clause offline, other splits with an LLM) is the system's business, not
the eval's. Two judgements per question:

* **retrieval@k** -- the facts returned contain the answer: one fact holds every keyword
  (``spread=False``), or, for a list, a count or two hops, the top ``k`` together hold all of
  its ``evidence`` (the items counted, both hops' values);
* **answer** -- the answer line holds every keyword and, when the question has superseded
  values (``stale``), names the expected value before any stale one. A keyword matches as a
  whole word, case-insensitively, so "3" does not match "13".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True, slots=True)
class Turn:
    """One line of a conversation, learned with where it stands (``session`` and ``turn``)
    and when it was said (``time``, epoch seconds: what orders a changing value's versions;
    a hive learns in parallel, so the order turns arrive in is not the order they were said).
    """

    session: str
    turn: int
    content: str
    time: float | None = None

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"session": self.session, "turn": self.turn,
                                  "content": self.content}
        if self.time is not None:
            out["time"] = self.time
        return out


@dataclass(frozen=True, slots=True)
class Question:
    text: str
    category: str
    keywords: tuple[str, ...]
    stale: tuple[str, ...] = ()  # superseded values: the answer must not lead with one
    spread: bool = False  # a list, a count, two hops: the evidence may sit in several facts
    evidence: tuple[str, ...] = ()  # what retrieval must find, when not the keywords (a count)

    @property
    def needed(self) -> tuple[str, ...]:
        """What the retrieved facts must hold."""
        return self.evidence or self.keywords

    def __post_init__(self) -> None:
        if not self.keywords:
            raise ValueError(f"question {self.text!r} has no keywords to judge it by")


@dataclass(frozen=True, slots=True)
class EvalSet:
    name: str
    turns: tuple[Turn, ...]
    questions: tuple[Question, ...]

    def categories(self) -> list[str]:
        return sorted({q.category for q in self.questions})


@lru_cache(maxsize=8192)
def _pattern(keyword: str) -> re.Pattern[str]:
    return re.compile(r"(?<!\w)" + re.escape(keyword.casefold()) + r"(?!\w)")


def position(keyword: str, text: str) -> int:
    """Where ``keyword`` first occurs in ``text`` as a whole word (-1: nowhere)."""
    m = _pattern(keyword).search(text.casefold())
    return m.start() if m else -1


def contains_all(keywords: Iterable[str], text: str) -> bool:
    return all(position(k, text) >= 0 for k in keywords)


def retrieved(question: Question, texts: Sequence[str], k: int = 10) -> bool:
    """The top ``k`` facts hold the answer (see the module docstring)."""
    top = list(texts[:k])
    if question.spread:
        return contains_all(question.needed, "\n".join(top))
    return any(contains_all(question.needed, t) for t in top)


def answered(question: Question, answer: str) -> bool:
    """The answer line holds every keyword and leads with the current value."""
    if not contains_all(question.keywords, answer):
        return False
    first = min(position(k, answer) for k in question.keywords)
    stale = [p for p in (position(s, answer) for s in question.stale) if p >= 0]
    return not stale or first < min(stale)
