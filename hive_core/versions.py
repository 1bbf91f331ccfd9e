"""Versions of one attribute: the value in force now, and the one before it.

"What is the current deadline of Project Falcon?" matches the initial deadline and every
update about as well; BM25 cannot know which is in force. Facts that contain the question's
*subject* (its names and identifiers) and its *attribute* (the question's other content
terms before any "before": "deadline") are versions of one value -- and so are those the
semantic re-rank judged to state the attribute in other words (``result.related``,
hive_core.semantic.rerank: "slipped again and is now due on 2026-06-29" for "deadline";
on the eval, current-value answers 58 -> 79% on seed 7, 46 -> 88% on seed 41); their turn's time
(``created_at``, then the turn index) orders them. A question about the present leads with
the newest and names the one it replaced; a question about the past ("before", "previous",
"originally") leads with the older value:

* "... before <X>" -- X is a *pivot*: the answer is the newest version older than the first
  fact that names the subject and X ("Who led Project Falcon before Ravi Gupta?");
* "originally", "initially", "first" -- the oldest version;
* otherwise ("previous", "used to", "former") -- the version before the newest.

Why at question time and not as SUPERSEDES edges written at learn time: agents learn in
parallel, so the update can be stored before the fact it replaces reaches its shards (a
learn-time link would miss it and need repair); the turn's time orders versions whatever
order they arrived in. This runs on the merged top-k, which every hive size computes
identically, so N=1 and N=100 still agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from hive_core.facts import HiveFact
from hive_core.query import ParsedQuery
from hive_core.text import has_digit, normalize_token, surface_tokens, terms_of

ORIGIN_CUES = frozenset("original originally initial initially first".split())
PIVOT_WORDS = frozenset("before prior".split())
if TYPE_CHECKING:
    from hive_core.search import SearchResult

POOL = 30  # facts searched for a question about versions (the k asked for are returned)
# Words of a question that say *when*, not *what*: never an attribute.
TIME_WORDS = frozenset(
    "now today latest newest recent recently still anymore nowadays previous previously "
    "former formerly earlier originally original old initially initial used prior first "
    "new".split())


def _split(query: ParsedQuery) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """(subject, pivot, attribute): the names before "before" are the subject, those after
    it the pivot; the attribute is the other words before it ("who was the *lead* of Project
    Falcon before Ada Okafor *took over*": "took over" describes the pivot)."""
    subject: set[str] = set()
    pivot: set[str] = set()
    words_after: set[str] = set()
    attribute: set[str] = set()
    after = False
    for surface in surface_tokens(query.text):
        if surface.lower() in PIVOT_WORDS:
            after = True
            continue
        term = normalize_token(surface)
        if term is None:
            continue
        if term in query.anchors:
            (pivot if after else subject).add(term)
        elif surface.lower() not in TIME_WORDS and term not in TIME_WORDS:
            (words_after if after else attribute).add(term)
    # "before it was on track": no name after "before", so its words are the pivot.
    return (frozenset(subject), frozenset((pivot or words_after) - subject),
            frozenset(attribute))


def _order(fact: HiveFact) -> tuple[float, int, str]:
    turn = fact.metadata.get("turn")
    return (fact.created_at, turn if isinstance(turn, int) else 0, fact.fact_id)


def pool(query: ParsedQuery, limit: int) -> int:
    """How many facts to search for: more than ``limit`` when versions are asked about, so
    the older and newer values are among them even when chatter about the subject ranks
    close."""
    return max(limit, POOL) if query.wants_current or query.wants_past else limit


def arrange(result: SearchResult, query: ParsedQuery, limit: int) -> SearchResult:
    """Reorder ``result`` so the version the question asks for comes first, followed by
    the version it is compared with (``result.versions`` names both), and cut it to
    ``limit`` facts."""
    _arrange(result, query)
    del result.facts[limit:]
    del result.scores[limit:]
    return result


def _arrange(result: SearchResult, query: ParsedQuery) -> None:
    if not result.facts or not (query.wants_current or query.wants_past):
        return
    subject, pivot, attribute = _split(query)
    if not subject or not attribute:
        return
    terms = [terms_of(f.content) for f in result.facts]
    # A value named by its digits ("before it moved to 2026-09-24") was stated as digits
    # before too, whatever the verb ("is due on 2026-08-30"): such facts are versions.
    numeric = query.wants_past and any(has_digit(t) for t in pivot)
    versions = sorted((f for f, ts in zip(result.facts, terms, strict=True)
                       if subject <= ts and (attribute & ts or f.fact_id in result.related
                                             or (numeric and any(has_digit(t) for t in
                                                                 ts - subject - pivot)))),
                      key=_order)
    # Before a pivot one older version is enough (_choose); else two sayings at different
    # times are needed (facts all said at once are not versions of anything).
    enough = bool(versions) if query.wants_past and pivot else \
        len({v.created_at for v in versions}) >= 2
    if not enough:
        if query.wants_current:
            _newest_by_concept(result, subject, terms)
        return
    chosen = _choose(versions, result.facts, terms, query, subject, pivot)
    if chosen is None:
        return
    first, compared = chosen
    ahead = [first] + ([compared] if compared is not None else [])
    ids = {f.fact_id for f in ahead}
    result.reorder(ahead + [f for f in result.facts if f.fact_id not in ids])
    result.versions = [f.fact_id for f in ahead]


def _newest_by_concept(result: SearchResult, subject: frozenset[str],
                       terms: Sequence[frozenset[str]]) -> None:
    """When no two facts share the question's attribute words ("What version is
    checkout-api running now?" against "checkout-api was upgraded to v1.23"), facts that hold
    the subject and were filed under one concept ("service version") are the versions: each
    such group keeps the ranks it earned, reassigned newest first."""
    groups: dict[str, list[int]] = {}
    for i, (fact, ts) in enumerate(zip(result.facts, terms, strict=True)):
        if subject <= ts and fact.concept:
            groups.setdefault(fact.concept.casefold(), []).append(i)
    facts = list(result.facts)
    for slots in groups.values():
        if len(slots) > 1:
            newest = sorted((facts[i] for i in slots), key=_order, reverse=True)
            for slot, fact in zip(slots, newest, strict=True):
                facts[slot] = fact
    result.reorder(facts)


def _choose(versions: Sequence[HiveFact], facts: Sequence[HiveFact],
            terms: Sequence[frozenset[str]],
            query: ParsedQuery, subject: frozenset[str], pivot: frozenset[str]
            ) -> tuple[HiveFact, HiveFact | None] | None:
    """(the version asked for, the one to name beside it)."""
    if not query.wants_past:
        return versions[-1], versions[-2]
    # The past before a pivot: the newest version said before the first fact that names
    # the subject and the pivot.
    if pivot:
        named = [f for f, ts in zip(facts, terms, strict=True) if (subject | pivot) <= ts]
        if not named:
            return None
        since = min(_order(f) for f in named)
        older = [v for v in versions if _order(v) < since]
        if not older:
            return None
        later = [v for v in versions if _order(v) >= since]
        return older[-1], (later[0] if later else None)
    words = {w.lower() for w in surface_tokens(query.text)}
    if words & ORIGIN_CUES:
        return versions[0], versions[-1]
    return versions[-2], versions[-1]
