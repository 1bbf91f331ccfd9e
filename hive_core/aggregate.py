"""Questions that gather: "How many pets does Tomas Silva have?", "List the projects ...".

The answer is not one fact but the distinct things several facts name. On the merged pool of
the routed search (the same on every hive size), facts that hold the question's subject (its
names; without names, its last definite phrase: "the chess club", hive_core.query) and one
of its other words (the relation: "pets", "named", "joined"; "everyone" or "people" name no
relation: then every fact about the subject) are the group -- and, with the semantic re-rank
on, those it judged to state the relation in other words (``result.related``,
:mod:`hive_core.semantic.rerank`: "adopted a hamster named Toffee" for "pets"); the *items*
are the names each of them adds -- runs of capitalised words that are not the subject (one
capitalised word opening a sentence is grammar, not a name). The group goes first in the
result, so the facts behind a list are the facts shown, and the answer counts or lists the
items ("3: Ziggy, Bramble, Sesame."). The search still asks at most ``query_fanout`` shards;
the pool is larger than ``limit`` (``POOL``) so that all the items of a subject with much
chatter about it can be among the facts gathered.
"""

from __future__ import annotations

from itertools import pairwise
from typing import TYPE_CHECKING

from hive_core.facts import HiveFact
from hive_core.query import ParsedQuery
from hive_core.text import has_digit, normalize_token, surface_tokens, terms_of, token_spans

if TYPE_CHECKING:
    from hive_core.search import SearchResult

POOL = 30
STATED_TOP = 5  # the best facts checked for a number given outright
# Words for "whoever belongs" ("List everyone on Project Osprey", "How many people joined
# ..."): they say who is counted, not how they belong, so no fact need repeat them; a
# question left with no other relation word gathers every fact about its subject.
ANYONE = frozenset(("everyon", "everybody", "anyon", "peopl", "person", "member"))
# Capitalised by the calendar, not names of things a group holds ("Jonas Weber joined the
# chess club on Monday." says when, not who).
CALENDAR = frozenset(
    "monday tuesday wednesday thursday friday saturday sunday january february march april "
    "may june july august september october november december".split())


def wanted(query: ParsedQuery) -> bool:
    return query.wants_count or query.wants_list


def pool(query: ParsedQuery, limit: int) -> int:
    return max(limit, POOL) if wanted(query) else limit


def items_of(fact: HiveFact, subject: frozenset[str]) -> list[str]:
    """The names ``fact`` adds to its subject, in the order written."""
    spans: list[list[tuple[int, int, str]]] = []
    text = fact.content
    for start, end, token in token_spans(text):
        named = token[:1].isupper() and normalize_token(token) not in subject
        if named and normalize_token(token) is not None:
            if spans and spans[-1] and not text[spans[-1][-1][1]:start].strip():
                spans[-1].append((start, end, token))
            else:
                spans.append([(start, end, token)])
        elif token[:1].isupper() or normalize_token(token) in subject:
            spans.append([])  # a subject word or a stopword breaks a run
    out = []
    for run in spans:
        if not run or (run[0][0] == 0 and len(run) == 1):
            continue
        out.append(text[run[0][0]:run[-1][1]])
    return out


def _counted(question: str) -> str | None:
    """The term of what "how many" counts ("users" in "How many users does ... have?")."""
    words = [w.lower() for w in surface_tokens(question)]
    for i, word in enumerate(words[:-1]):
        if word == "many" and i > 0 and words[i - 1] == "how":
            return normalize_token(words[i + 1])
    return None


def states_quantity(fact: HiveFact, noun: str) -> bool:
    """Whether ``fact`` gives the number outright ("The beta has 2,500 users.")."""
    tokens = [t for _, _, t in token_spans(fact.content)]
    return any(has_digit(a) and normalize_token(b) == noun
               for a, b in pairwise(tokens))


def gather(result: SearchResult, query: ParsedQuery) -> SearchResult:
    """Put the group first and record its distinct items (``result.items``)."""
    if not result.facts or not wanted(query) or not query.subject:
        return result
    noun = _counted(query.text) if query.wants_count else None
    if noun is not None and any(states_quantity(f, noun) for f in result.facts[:STATED_TOP]):
        return result  # a number someone stated is the answer, not a count of names
    subject = query.subject
    relation = {t for t in query.terms if t not in subject and t not in ANYONE}
    terms = [terms_of(f.content) for f in result.facts]
    group = [i for i, ts in enumerate(terms)
             if subject <= ts and (not relation or relation & ts
                                   or result.facts[i].fact_id in result.related)]
    items: dict[str, str] = {}
    named: list[int] = []
    for i in group:
        found = [x for x in items_of(result.facts[i], subject)
                 if x.casefold() not in items and x.casefold() not in CALENDAR]
        for item in found:
            items[item.casefold()] = item
        if found:
            named.append(i)
    if not named:
        return result
    first = set(named)
    result.reorder([result.facts[i] for i in named]
                   + [f for i, f in enumerate(result.facts) if i not in first])
    result.items = list(items.values())
    return result
