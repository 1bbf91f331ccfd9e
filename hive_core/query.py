"""A question, parsed once: what routing, scoring and answer shaping all read.

The question used to be tokenised four times on its way (terms to route, names to weigh,
cues for the present, words to compare with facts), each pass with its own idea of a term.
:func:`parse` makes one :class:`ParsedQuery` in one pass over the tokens, with the one
tokenizer of :mod:`hive_core.text`:

* ``terms`` -- every distinct question term, most specific first (identifiers, then names,
  then long words; ties keep question order). Routing takes the first ``query_fanout``;
  the order depends on the question alone, never on the hive, so every hive size picks the
  same terms;
* ``anchors`` -- its names and identifiers: what the question is *about*;
* ``subject`` -- who or what a gathering question gathers about: its anchors, or, when it
  names nothing ("How many members does the chess club have?"), the words of its last
  definite phrase ("chess club"); hive_core.aggregate groups facts by it;
* cues -- ``wants_current`` ("now", "latest", ...), ``wants_past`` ("before", "previous",
  "used to", ...), ``wants_count`` ("how many", "list all", ...) and ``wants_list`` ("list
  ...", "what are ...", "which <plural> ...", "who works on / is in / joined ..."), for
  answer shaping.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise

from hive_core.text import normalize_token, specificity, surface_tokens

CURRENT_CUES = frozenset(
    "current currently latest now today newest recent recently still anymore nowadays".split())
PAST_CUES = frozenset("before previous previously former formerly earlier originally old "
                      "initially used".split())
COUNT_CUES = frozenset("count number total".split())
# "Who works on Project Osprey?" asks for everyone; "Who leads Project Osprey?" for one.
WHO_ALL = frozenset("are joined work works belong belongs".split())
WHO_IS_IN = frozenset("in on part".split())  # "who is in / on / part of ..."


@dataclass(frozen=True, slots=True)
class ParsedQuery:
    text: str
    terms: tuple[str, ...]
    anchors: frozenset[str]
    wants_current: bool
    wants_past: bool
    wants_count: bool
    wants_list: bool = False
    subject: frozenset[str] = frozenset()

    def routed(self, fanout: int) -> list[str]:
        """The at most ``fanout`` terms the question is searched by."""
        return list(self.terms[:fanout])

    def emphasis(self, factor: float) -> dict[str, float]:
        """Weight multipliers for what the question is about (its names and identifiers):
        in "Who leads Project Osprey?" the rare verb "leads" can out-score the name
        "Osprey" by idf alone; the name is what the asker means."""
        return {} if factor == 1.0 else dict.fromkeys(self.anchors, factor)


def _definite(words: list[str]) -> frozenset[str]:
    """The terms after the question's last "the" ("chess club" in "How many members does
    the chess club have?"): what a question without names is about."""
    if "the" not in words:
        return frozenset()
    last = len(words) - 1 - words[::-1].index("the")
    return frozenset(t for w in words[last + 1:] if (t := normalize_token(w)) is not None)


def _who_all(words: list[str]) -> bool:
    """"Who works on ...", "Who is in ...": a question after every member."""
    return len(words) > 2 and words[0] == "who" and (
        words[1] in WHO_ALL or (words[1] == "is" and words[2] in WHO_IS_IN))


def _plural(word: str) -> bool:
    """"projects", "languages" -- not "boss", "status" or "is"."""
    return len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is"))


def _noun_current(words: list[str], i: int) -> bool:
    """"current" ending a question is the noun ("the SI unit of electric current"), not
    "the current deadline"."""
    return words[i] == "current" and i == len(words) - 1


@lru_cache(maxsize=4096)
def parse(question: str) -> ParsedQuery:
    """The question's terms, names and cues, in one pass (cached: an agent often sees the
    same question several times on its way through routing and answering)."""
    ranked: dict[str, tuple[int, int, int]] = {}
    anchors: set[str] = set()
    words: list[str] = []
    for position, surface in enumerate(surface_tokens(question)):
        words.append(surface.lower())
        term = normalize_token(surface)
        if term is None:
            continue
        # A question's first word is capitalised by grammar, not because it is a name.
        shown = surface if position > 0 else surface.lower()
        rank, length = specificity(term, shown)
        if rank >= 2:
            anchors.add(term)
        previous = ranked.get(term)
        if previous is None or (rank, length) > previous[:2]:
            ranked[term] = (rank, length, previous[2] if previous else position)
    ordered = sorted(ranked.items(), key=lambda kv: (-kv[1][0], -kv[1][1], kv[1][2]))
    pairs = set(pairwise(words))
    wants_count = ("how", "many") in pairs or ("list", "all") in pairs or any(
        w in COUNT_CUES for w in words)
    wants_list = bool(words) and (words[0] == "list" or ("what", "are") in pairs or (
        words[0] == "which" and len(words) > 1 and _plural(words[1])) or _who_all(words))
    gathers = wants_count or wants_list
    return ParsedQuery(
        text=question,
        terms=tuple(term for term, _ in ordered),
        anchors=frozenset(anchors),
        subject=frozenset(anchors) or (_definite(words) if gathers else frozenset()),
        wants_current=any(w in CURRENT_CUES and not _noun_current(words, i)
                          for i, w in enumerate(words)),
        wants_past=any(w in PAST_CUES for w in words if w != "used") or ("used", "to") in pairs,
        wants_count=wants_count,
        wants_list=wants_list,
    )
