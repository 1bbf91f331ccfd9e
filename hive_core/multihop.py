"""Two-hop questions: "Where does the person who leads Project Atlas live?".

No one fact answers it: one says who leads Project Atlas (the *subject fact*), another where
that person lives. The question names a thing only through a *referring phrase* -- a
relative clause ("the person who leads Project Atlas"), an of-phrase ("the lead of Project
Atlas") or a possessive ("Miso's owner") around a name -- and asks something else about it.

1. **Detect** (:func:`detect`, from the question alone): a referring phrase that holds a name
   and is *embedded*: the subject of an inverted question with more to say after it ("Where
   does R live?", "Which team is R on?") or itself the object of another relation ("the
   birthday of R", "R's team"). A phrase that is the whole thing asked ("What is Ada's
   job?", "Who was the lead of Project Atlas before Ravi took over?") is one hop; so is a
   question asking only what R is called (the bridge *is* that answer).
2. **First hop**: the ordinary search of the whole question, routed by one term fewer than
   usual (:func:`plan`), so one shard of the question's ``query_fanout`` stays free.
3. **Bridge** (:func:`follow`): the best fact of the first hop that holds the phrase's name
   (one holding the phrase's relation word, "leads", if any does) and another name: that
   other name ("Ada Okafor") is the bridge.
4. **Second hop**: the question with the phrase replaced by the bridge ("Where does Ada
   Okafor live?"), searched like any question except that facts are *found* through the
   bridge's most specific term alone, routed to a shard the question already asked when an
   owner of that term is one, else to the free one (:class:`Hop`). Every term still weighs
   in. So the whole question asks at most ``query_fanout`` shards, and ``shards_searched``
   lists them all.
5. **Check**: the second hop counts only if one of its facts holds the bridge and something
   the rest of the question asks ("live"); then the result leads with the subject fact and
   the second hop's facts, and :attr:`SearchResult.chain` says how it was reached. Otherwise
   the first hop's result stands, with the reason in ``chain.note`` -- and when a bridge was
   found but the budget stopped its hop or the hop answered nothing, the answer says so.

Why N=1 and N=100 agree: every choice above (the terms, the subject fact, the bridge, the
single finding term) depends on the question and on first-hop results that every hive size
computes identically; the free shard makes the budget hold at every size (for any
``query_fanout`` >= 2), so the second hop is never dropped on one hive and run on another.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from hive_core.aggregate import items_of
from hive_core.facts import HiveFact
from hive_core.query import ParsedQuery, parse
from hive_core.search import SearchResult
from hive_core.text import normalize_token, terms_of, token_spans, tokenize

# Words that invert a question before its subject ("Where *does* R live?").
AUXILIARIES = frozenset("do does did is are was were has have had can could will would should "
                        "shall may might must".split())
RELATIVES = frozenset("who that which whose".split())
DETERMINERS = frozenset("the a an".split())
# Words that end the predicate about R ("Who was R *before* Ravi took over?": no predicate).
SUBORDINATORS = frozenset("before after when while since until because if unless although "
                          "though whereas".split())
# What asking only a name of R means: the bridge itself answers.
IDENTITY = frozenset(t for t in map(normalize_token, ("name", "names", "named", "called",
                                                      "call")) if t)
_POSSESSIVE = re.compile(r"['\u2019]s$", re.IGNORECASE)
_MAX_MODIFIERS = 2  # lowercase words between "the" and a relative pronoun or "of"

Token = tuple[int, int, str]  # start, end, surface
RouteCall = Callable[[Sequence[str], Sequence[str]], dict[str, str]]  # (terms, asked) -> route


@dataclass(frozen=True, slots=True)
class Chain:
    """A two-hop question: the referring phrase (``text[start:end]``), the names it is
    anchored on, and its relation words (what links the name to the thing meant)."""

    text: str
    start: int
    end: int
    anchors: frozenset[str]
    relation: frozenset[str]

    def second(self, bridge: str) -> str:
        """The question with the referring phrase replaced by the bridge."""
        return self.text[:self.start] + bridge + self.text[self.end:]


@dataclass(frozen=True, slots=True)
class Hop:
    """What a second-hop search is allowed: facts are found through ``route``'s terms only,
    on the shards it names; ``asked`` (the first hop's shards) are preferred for the rest."""

    route: Mapping[str, str]
    asked: tuple[str, ...]


@dataclass(slots=True)
class Hops:
    """How a two-hop question went (``SearchResult.chain``). ``second`` is set only when the
    second hop was searched and checked out; ``note`` says why not otherwise."""

    question: str = ""  # the second hop's question
    bridge: str = ""
    subject: str = ""  # fact_id of the first hop's fact that named the bridge
    second: SearchResult | None = field(default=None, repr=False)
    first: SearchResult | None = field(default=None, repr=False)  # the first hop's result
    note: str = ""
    over_budget: bool = False  # a bridge was found, but no shard was left to search it
    # The answer must say ``note``: the bridge was found but its second hop searched
    # nothing (budget) or found nothing that answers (the answer is the first hop's).
    tell: bool = False

    def to_dict(self) -> dict[str, object]:
        return {"question": self.question, "bridge": self.bridge, "subject": self.subject,
                "used": self.second is not None, "note": self.note,
                "over_budget": self.over_budget}


def _is_name(tokens: Sequence[Token], i: int) -> bool:
    """A capitalised word that is not a stopword; the question's first word is capitalised
    by grammar, so it counts only as a possessive ("Miso's owner ...")."""
    surface = tokens[i][2]
    if not surface[:1].isupper() or normalize_token(surface) is None:
        return False
    return i > 0 or bool(_POSSESSIVE.search(surface))


def _is_word(tokens: Sequence[Token], i: int) -> bool:
    """A lowercase content word (a noun or a verb; no stopword)."""
    if not 0 <= i < len(tokens):
        return False
    surface = tokens[i][2]
    return surface[:1].islower() and normalize_token(surface) is not None


def _lower(tokens: Sequence[Token], i: int) -> str:
    return tokens[i][2].lower() if 0 <= i < len(tokens) else ""


def _joined(text: str, tokens: Sequence[Token], i: int) -> bool:
    """Token ``i`` follows token ``i - 1`` with nothing but spaces between them."""
    return i > 0 and not text[tokens[i - 1][1]:tokens[i][0]].strip()


def _run_end(text: str, tokens: Sequence[Token], i: int) -> int:
    """The index after the run of names starting at ``i`` ("Project Jade Tortoise")."""
    j = i
    while j < len(tokens) and _is_name(tokens, j) and (j == i or _joined(text, tokens, j)):
        j += 1
        if _POSSESSIVE.search(tokens[j - 1][2]):
            break
    return j


def _determiner_before(tokens: Sequence[Token], i: int) -> int | None:
    """The "the" that opens the noun group ending at token ``i - 1``, if there is one."""
    j = i - 1
    while j >= 0 and i - j <= _MAX_MODIFIERS and _is_word(tokens, j):
        j -= 1
    return j if j < i - 1 and _lower(tokens, j) in DETERMINERS else None


def _name_object(text: str, tokens: Sequence[Token], i: int) -> tuple[int, int, int] | None:
    """A name run at ``i`` (after an optional "the"): (its first token, the token after it,
    the token after the phrase). "the Berlin office": a name after "the" modifies the noun
    that follows, which then belongs to the phrase."""
    the = _lower(tokens, i) in DETERMINERS
    first = i + 1 if the else i
    if first >= len(tokens) or not _is_name(tokens, first):
        return None
    end = _run_end(text, tokens, first)
    if _POSSESSIVE.search(tokens[end - 1][2]):
        return None  # "of Ada's dog": the possessive is the phrase
    return first, end, end + 1 if the and _is_word(tokens, end) else end


def _phrases(text: str, tokens: Sequence[Token]) -> list[tuple[int, int, int, int]]:
    """Referring phrases: (first token, token after, first name token, token after names)."""
    found = []
    for i, (_, _, surface) in enumerate(tokens):
        word = surface.lower()
        if _POSSESSIVE.search(surface) and _is_name(tokens, i) and _is_word(tokens, i + 1):
            start = i
            while start > 0 and _is_name(tokens, start - 1) and _joined(text, tokens, start) \
                    and not _POSSESSIVE.search(tokens[start - 1][2]):
                start -= 1
            found.append((start, i + 2, start, i + 1))  # "Miso's owner"
        elif word == "of" and i > 0 and _is_word(tokens, i - 1):
            the, obj = _determiner_before(tokens, i), _name_object(text, tokens, i + 1)
            if the is not None and obj is not None:
                found.append((the, obj[2], obj[0], obj[1]))  # "the lead of Project Atlas"
        elif word in RELATIVES and i > 0 and _is_word(tokens, i - 1):
            the = _determiner_before(tokens, i)
            j = i + 1
            while j < len(tokens) and not _is_name(tokens, j) and \
                    _lower(tokens, j) not in SUBORDINATORS:
                j += 1
            obj = _name_object(text, tokens, j - 1 if _lower(tokens, j - 1) in DETERMINERS
                               else j) if j < len(tokens) else None
            if the is not None and obj is not None and any(
                    _is_word(tokens, k) for k in range(i + 1, obj[0])):
                found.append((the, obj[2], obj[0], obj[1]))  # "the person who leads ..."
    return found


def _embedded(tokens: Sequence[Token], start: int, end: int) -> bool:
    """Is the phrase tokens[start:end] something the question asks *about*, not what it
    asks? Inside another relation ("the birthday of R", "R's team"), or the subject of an
    inverted question with a predicate after it before any "before"/"when" clause."""
    if _lower(tokens, start - 1) == "of" and _is_word(tokens, start - 2):
        return True
    if _POSSESSIVE.search(tokens[end - 1][2]) and _is_word(tokens, end):
        return True
    return (_lower(tokens, start - 1) in AUXILIARIES and end < len(tokens)
            and _lower(tokens, end) not in SUBORDINATORS)


def detect(question: str) -> Chain | None:
    """The question's first embedded referring phrase, or None (a one-hop question)."""
    tokens = token_spans(question)
    for start, end, first, last in _phrases(question, tokens):
        if not _embedded(tokens, start, end):
            continue
        # A possessive that is itself possessed ("Ada's manager's team"): the phrase ends
        # before its own "'s", which stays with the rest of the question.
        stop = tokens[end - 1][1]
        tail = _POSSESSIVE.search(tokens[end - 1][2])
        if tail and end - 1 > last - 1:
            stop -= len(tail.group())
        text_start, inner = tokens[start][0], question[tokens[start][0]:stop]
        anchors = frozenset(tokenize(" ".join(t[2] for t in tokens[first:last])))
        outside = set(tokenize(question[:text_start] + " " + question[stop:]))
        if not anchors or not outside - IDENTITY:
            continue  # nothing named, or only "what is R called?": the bridge is the answer
        return Chain(question, text_start, stop, anchors,
                     frozenset(tokenize(inner)) - anchors)
    return None


def plan(parsed: ParsedQuery, fanout: int, hop: Hop | None, searched: bool = True
         ) -> tuple[Chain | None, list[str]]:
    """(the question's chain, the terms its first search is routed by). A second hop is
    routed by its :class:`Hop`; a two-hop question leaves one of ``fanout`` shards free for
    its second hop (with ``fanout`` 1 there is none to leave: the second hop then runs only
    if a shard already asked holds the bridge). ``searched`` False (a federated pool, shaped
    by the asker): the first hop only, routed as it is on a hive that goes on to the second
    (which is not federated yet)."""
    if hop is not None:
        return None, list(hop.route)
    chain = detect(parsed.text)
    spare = 1 if chain is not None and fanout > 1 else 0
    return chain if searched else None, parsed.routed(fanout - spare)


def asked(hop: Hop | None) -> tuple[str, ...]:
    return () if hop is None else hop.asked


def pinned(route: dict[str, str], hop: Hop | None) -> dict[str, str]:
    """The route of a search, with a second hop's finding terms on the shards planned."""
    return route if hop is None else {**route, **hop.route}


def left(deadline: float | None) -> float | None:
    """Seconds the asker still waits (0: the second hop's shards fail as out of time)."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _subject(chain: Chain, first: SearchResult) -> tuple[HiveFact, str] | None:
    """The first hop's fact that names the bridge, and the bridge: the best fact holding
    the phrase's names and another name, one with a relation word first if any has one."""
    named = terms_of(chain.text) | chain.anchors
    found = []
    for fact in first.facts:
        terms = terms_of(fact.content)
        if chain.anchors <= terms:
            others = items_of(fact, named)
            if others:
                found.append((bool(chain.relation & terms), fact, others[0]))
    best = next((f for f in found if f[0]), found[0] if found else None)
    return None if best is None else (best[1], best[2])


def _checked(second: SearchResult, question: str, bridge: frozenset[str]
             ) -> HiveFact | None:
    """The second hop's fact that holds the bridge and something else the question asks
    (None: the second hop found nothing about the bridge that answers it)."""
    asked_terms = set(parse(question).terms) - bridge
    for fact in second.facts:
        terms = terms_of(fact.content)
        if bridge <= terms and asked_terms & terms:
            return fact
    return None


SecondHop = Callable[[str, list[str]], SearchResult | None]  # (question, finding terms)


def planned(finding: Sequence[str], searched: Sequence[str], fanout: int, route: RouteCall
            ) -> Hop | None:
    """The second hop of a question whose first hop searched ``searched``: ``finding``
    routed preferring those shards, or None when the shards it adds would take the
    question past ``fanout``."""
    plan_ = route(finding, searched)
    new = [s for s in dict.fromkeys(plan_.values()) if s not in searched]
    if len(searched) + len(new) > fanout:
        return None
    return Hop(plan_, tuple(searched))


def follow(chain: Chain, first: SearchResult, limit: int, fanout: int,
           second_hop: SecondHop) -> SearchResult:
    """Steps 3-5 of the module docstring: ``first`` is the first hop's (shaped) result;
    ``second_hop`` searches the second question, finding facts by the terms given, or
    returns None when the shard budget (``fanout``) leaves no room for it (one hive:
    :func:`planned`; a federation plans it in every hive)."""
    hops = Hops(first=first)
    first.chain = hops
    found = _subject(chain, first)
    if found is None:
        hops.note = "no fact of the first hop names another person or thing"
        return first
    subject, hops.bridge = found
    hops.subject, hops.question = subject.fact_id, chain.second(hops.bridge)
    if first.items or limit < 2:
        hops.note = ("a gathering question is answered by its first hop" if first.items else
                     "a limit of one fact leaves no room for the second hop")
        return first
    bridge = parse(hops.question).terms
    bridge_terms = terms_of(hops.bridge)
    finding = [t for t in bridge if t in bridge_terms][:1]
    second = second_hop(hops.question, finding) if finding else None
    if second is None:
        hops.over_budget = hops.tell = bool(finding)
        hops.note = (f"{hops.bridge} was not searched: the question may ask at most {fanout} "
                     "shards" if finding else f"{hops.bridge} has no term to search by")
        return first
    fact = _checked(second, hops.question, bridge_terms)
    if fact is None and not second.items:
        hops.note = f"no fact about {hops.bridge} answers the rest of the question"
        hops.tell = True
        _merge_shards(first, second)
        return first
    if fact is not None and not second.items and not second.versions:
        second.reorder([fact, *(f for f in second.facts if f.fact_id != fact.fact_id)])
    hops.second = second
    return _combined(first, subject, second, hops, limit)


def _merge_shards(first: SearchResult, second: SearchResult) -> None:
    """Whatever the second hop asked counts for the question, used or not."""
    for name in ("shards_queried", "shards_searched", "terms"):
        mine = getattr(first, name)
        mine += [s for s in getattr(second, name) if s not in mine]
    first.shards_failed = sorted(set(first.shards_failed) | set(second.shards_failed))


def _combined(first: SearchResult, subject: HiveFact, second: SearchResult,
              hops: Hops, limit: int) -> SearchResult:
    """The subject fact, the second hop's facts, then the first hop's others (``limit`` in
    all); each fact with the score of the search that found it. No versions or items: the
    answer is the chain's. The second hop keeps only the facts that fit, so its answer
    quotes none that the result leaves out."""
    second.facts, second.scores = second.facts[:limit - 1], second.scores[:limit - 1]
    score = {f.fact_id: s for f, s in zip(first.facts, first.scores, strict=True)}
    score.update({f.fact_id: s for f, s in zip(second.facts, second.scores, strict=True)})
    facts: dict[str, HiveFact] = {}
    for fact in [subject, *second.facts, *first.facts]:
        facts.setdefault(fact.fact_id, fact)
    out = SearchResult(facts=list(facts.values())[:limit],
                       shards_queried=list(first.shards_queried),
                       shards_searched=list(first.shards_searched),
                       shards_failed=list(first.shards_failed), terms=list(first.terms),
                       chain=hops)
    out.scores = [score[f.fact_id] for f in out.facts]
    out.weights, out.avgdl = first.weights, first.avgdl
    _merge_shards(out, second)
    return out
