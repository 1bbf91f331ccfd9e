"""Answering: a question and the hive's search result in, an answer and its sources out.

An :class:`Answer` is one line a person reads -- no ids, no agent names in it -- plus the
facts it came from (``sources``: indexes into the search result), which the CLI shows below
the line and ``--json`` returns beside it, each with the agent that learned it and its fact
id, so a reader can check every claim. Offline the answer is *extractive*: the best facts
themselves, joined. Facts scoring far below the best one are left out (they matched a common
word, not the question); whether the search was partial is reported beside the answer (the
result's ``partial`` and ``shards_failed``), never hidden in its text. A two-hop question
(``result.chain``, :mod:`hive_core.multihop`) is answered by the fact that names the bridge
and then the second hop's own answer; when the bridge was found but its hop was not searched
or answered nothing, the first hop's answer says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from hive_core.query import parse
from hive_core.search import SearchResult
from hive_core.text import terms_of

NO_ANSWER = "No fact in the hive matches this question."


@dataclass(frozen=True, slots=True)
class Answer:
    text: str  # one line, no provenance
    sources: list[int] = field(default_factory=list)  # indexes into the result's facts


@runtime_checkable
class Answerer(Protocol):
    def answer(self, question: str, result: SearchResult) -> Answer: ...


class ExtractiveAnswerer:
    """The top facts verbatim, with provenance, best first."""

    def __init__(self, *, max_facts: int = 3, min_relative_score: float = 0.5) -> None:
        if max_facts < 1 or not 0.0 <= min_relative_score <= 1.0:
            raise ValueError("max_facts must be >= 1 and min_relative_score in [0, 1]")
        self.max_facts = max_facts
        self.min_relative_score = min_relative_score

    def chosen(self, result: SearchResult, question: str = "") -> list[int]:
        """Indexes of the facts the answer quotes, in the order quoted.

        The *lead* fact is the best-scoring one that says something about what is asked --
        a question term other than its names ("adopt" in "What dog did Mei Tanaka
        adopt?"); a fact that only shares the names (Mei Tanaka flew to Lisbon) can rank
        higher and answer nothing. Without such a fact, the best fact leads. Then the other
        matching facts of the lead's *episode* (the turn it was learned from) whatever
        their score: an answer often needs two sentences of one turn (an incident's IOCs
        and its CVE). Then the rest that score close to the lead and name the same thing:
        a fact without the question's most distinctive name that the lead has ("Osprey" in
        "Who leads Project Osprey?") is about something else.
        """
        if not result.facts:
            return []
        query = parse(question)
        terms = [terms_of(f.content) for f in result.facts]
        asked = {t for t in query.terms if t not in query.anchors}
        lead = next((i for i, ts in enumerate(terms) if asked & ts), 0) if asked else 0
        episode = result.facts[lead].metadata.get("episode")
        same_turn = [i for i, f in enumerate(result.facts)
                     if i != lead and episode is not None and f.metadata.get("episode") == episode]
        floor = result.scores[lead] * self.min_relative_score
        key = self._distinctive(query.anchors & terms[lead], terms)
        close = [i for i, score in enumerate(result.scores)
                 if i != lead and score >= floor and i not in same_turn
                 and (not key or key & terms[i])]
        return [lead, *same_turn, *close][: self.max_facts]

    @staticmethod
    def _distinctive(named: AbstractSet[str], terms: Sequence[AbstractSet[str]]
                     ) -> set[str]:
        """The question's names in the best fact that fewest results share ("Osprey", not
        the "Project" every project fact has)."""
        if not named:
            return set()
        counts = {t: sum(t in ts for ts in terms) for t in named}
        fewest = min(counts.values())
        return {t for t, c in counts.items() if c == fewest}

    def answer(self, question: str, result: SearchResult) -> Answer:
        chain = result.chain
        if chain is not None and chain.second is not None:
            return self._two_hops(result)
        if chain is not None and chain.tell:  # a bridge found, but no second hop to show
            plain = self._one_hop(question, result)
            note = _sentence(chain.note)
            return Answer(f"{plain.text} ({note[:1].upper()}{note[1:]})", plain.sources)
        return self._one_hop(question, result)

    def _one_hop(self, question: str, result: SearchResult) -> Answer:
        if result.items:
            return self._items(question, result)
        if result.versions:
            return self._versions(question, result)
        chosen = self.chosen(result, question)
        if not chosen:
            return Answer(NO_ANSWER)
        return Answer(" ".join(_sentence(result.facts[i].content) for i in chosen), chosen)

    def _two_hops(self, result: SearchResult) -> Answer:
        """The fact that names the bridge ("Ada Okafor leads Project Atlas."), then the
        second hop's own answer about the bridge ("Ada Okafor lives in Lisbon.")."""
        chain = result.chain
        assert chain is not None and chain.second is not None
        where = {f.fact_id: i for i, f in enumerate(result.facts)}
        inner = self._one_hop(chain.question, chain.second)
        # A small ``limit`` may leave some of the second hop's facts out of the result.
        quoted = [where.get(chain.second.facts[i].fact_id) for i in inner.sources]
        subject = where[chain.subject]
        return Answer(f"{_sentence(result.facts[subject].content)} {inner.text}",
                      [subject, *(i for i in quoted if i is not None and i != subject)])

    @staticmethod
    def _items(question: str, result: SearchResult) -> Answer:
        """A gathering question: the distinct items (counted for "how many"), from the
        facts that name them."""
        listed = ", ".join(result.items)
        text = f"{len(result.items)}: {listed}." if parse(question).wants_count else f"{listed}."
        sources = [i for i, f in enumerate(result.facts)
                   if any(item in f.content for item in result.items)][: len(result.items)]
        return Answer(text, sources)

    @staticmethod
    def _versions(question: str, result: SearchResult) -> Answer:
        """A changing value: the version asked for, then the one it is compared with
        ("Before that:" for the present, "Later:" for the past)."""
        where = {f.fact_id: i for i, f in enumerate(result.facts)}
        chosen = [where[v] for v in result.versions if v in where]
        parts = [_sentence(result.facts[i].content) for i in chosen]
        if len(parts) > 1:
            joiner = "Later:" if parse(question).wants_past else "Before that:"
            parts = [parts[0], joiner, *parts[1:]]
        return Answer(" ".join(parts), chosen)


def _sentence(content: str) -> str:
    text = " ".join(content.split())
    return text if text.endswith((".", "!", "?")) else text + "."
