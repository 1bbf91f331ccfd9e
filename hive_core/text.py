"""Tokens and key terms: the one definition shared by placement, routing and search.

Placement puts a fact's postings on the ring owners of its terms, the router sends a question
to the owners of *its* terms, and shards score with the same tokens. If these three disagreed
on what a term is, a question would be routed to a shard that does not hold its postings, so
there is exactly one tokenizer and it lives here.

The tokenizer keeps identifiers whole: ``CVE-2024-3094``, ``10.0.1.0/24``, ``$4.7M``, ``p95``,
``v1.29`` and ``INC-2041`` are single tokens, because those are what operators ask about.
Numbers keep their thousands separators inside the token and lose them in the term
(``$1,200`` and ``$1200`` are one term); an en dash (U+2013) joins like a hyphen;
possessives and contractions, with a straight or a typographic (U+2019) apostrophe, stay
with their word and are folded away (``Chen's`` -> ``chen``; ``didn't`` -> a stopword),
so "'s" never becomes a term ``s`` that matches every other possessive.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache

# A token: an optional currency sign, a word, then any number of (joiner, word) pairs where
# the joiner is one of - . / : _ or an en dash (or a comma between digit groups of three)
# and both sides are alphanumeric; an optional apostrophe suffix ('s, n't, 're, ...); an
# optional trailing %.
_TOKEN = re.compile(
    r"[$€£]?[0-9A-Za-z]+"
    r"(?:(?:[-\u2013./:_]|(?<=[0-9]),(?=[0-9]{3}(?![0-9])))[0-9A-Za-z]+)*"
    r"(?:['\u2019][A-Za-z]{1,2}(?![A-Za-z]))?%?")
_APOSTROPHE = re.compile(r"['\u2019][a-z]{1,2}$")
# A contraction's word once its n't is gone (the rest are stopwords or plain words).
_NOT_BASES = {"ca": "can", "wo": "will", "sha": "shall"}

STOPWORDS = frozenset(
    """
    a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom whose why will with would you your yours yourself
    yourselves tell know please currently current give show list many much
    """.split()
)


# Irregular past forms that matter in what teams say about each other ("is now led by" must
# meet "Who leads"; "bought" must meet "buy"), folded to their stem before any suffix rule.
# Only forms that are rarely anything else ("left", "saw" and "found" are not here).
_IRREGULAR = {
    "led": "lead", "took": "tak", "taken": "tak", "bought": "buy", "sold": "sell",
    "paid": "pay", "sent": "send", "spent": "spend", "wrote": "writ", "written": "writ",
    "began": "begin", "begun": "begin", "chose": "choos", "chosen": "choos", "drove": "driv",
    "flew": "fly", "flown": "fly", "grew": "grow", "grown": "grow", "held": "hold",
    "kept": "keep", "knew": "know", "known": "know", "taught": "teach", "thought": "think",
    "told": "tell", "won": "win", "built": "build", "brought": "bring", "caught": "catch",
    "went": "go", "gone": "go", "became": "becom", "came": "com", "felt": "feel",
    "heard": "hear", "met": "meet", "ran": "run", "goes": "go",
    "made": "mak", "got": "get", "gotten": "get", "stood": "stand", "understood": "understand",
}


def _stem(word: str) -> str:
    """A deliberately light stemmer, never applied to identifiers (anything not all letters).

    Folds plurals, possessives, ``-ed``, a final silent ``e`` and common irregular past
    forms, so that "owns", "owned" and "owner's" ... "own", "move", "moves", "moved" and
    "leads", "led" all meet; terms are only ever compared with other terms, so a stem need
    not be a word.
    """
    irregular = _IRREGULAR.get(word)
    if irregular is not None:
        return irregular
    if not word.isalpha() or len(word) <= 3:
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith(("ss", "us", "is")):
        pass
    elif (word.endswith("es") and word[-3] in "sxz") or word.endswith(("ches", "shes")):
        word = word[:-2]
    elif word.endswith("s"):
        word = word[:-1]
    if word.endswith("ed") and len(word) > 4 and not word.endswith("eed"):
        word = word[:-2]
        if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "lsz":
            word = word[:-1]  # shipped -> ship
    if word.endswith("e") and len(word) >= 4 and not word.endswith("ee"):
        word = word[:-1]
    return word


@lru_cache(maxsize=1 << 17)
def normalize_token(token: str) -> str | None:
    """The term a surface token stands for, or None for a stopword (cached: vocabularies
    are small next to the number of tokens, and this runs for every word ingested)."""
    term = token.lower().replace("\u2013", "-")
    if "," in term:
        term = term.replace(",", "")
    if "'" in term or "\u2019" in term:
        if term.endswith(("n't", "n\u2019t")):
            term = term[:-3]
            term = _NOT_BASES.get(term, term)
        else:
            term = _APOSTROPHE.sub("", term)
    if not term or term in STOPWORDS:
        return None
    return _stem(term)


def token_spans(text: str) -> list[tuple[int, int, str]]:
    """Surface tokens with their (start, end) offsets, for callers that need adjacency."""
    return [(m.start(), m.end(), m.group()) for m in _TOKEN.finditer(text)]


def tokenize(text: str) -> list[str]:
    """Normalised terms of ``text`` in order, stopwords removed, duplicates kept."""
    norm = normalize_token
    return [t for t in map(norm, _TOKEN.findall(text)) if t is not None]


@lru_cache(maxsize=1 << 12)
def terms_of(text: str) -> frozenset[str]:
    """The distinct terms of ``text`` (cached: a question's answer stages -- gathering,
    versions, the context and relation re-ranks, two hops, the answer's pick -- each ask
    it of the same pool facts, and an agent sees the same facts question after question;
    4,096 sentences' terms take ~3 MB)."""
    return frozenset(tokenize(text))


def term_counts(text: str) -> dict[str, int]:
    """Term frequencies of ``text`` (what a shard stores per document)."""
    return dict(Counter(tokenize(text)))


def key_terms(text: str) -> list[str]:
    """Distinct terms of ``text`` in first-seen order."""
    return list(dict.fromkeys(tokenize(text)))


def has_digit(token: str) -> bool:
    """Whether a token holds a digit (an identifier, a number, a date, a value)."""
    return any(c.isdigit() for c in token)


def specificity(term: str, surface: str) -> tuple[int, int]:
    """How much a query term is likely to narrow the search, without asking any shard.

    Identifiers (digits or joiners) first, then proper nouns, then long words. The rank must
    not depend on the hive's size or contents, so that N=1 and N=100 choose the same terms.
    """
    if has_digit(term) or any(c in "-./:_$%" for c in term):
        rank = 3
    elif surface[:1].isupper():
        rank = 2
    elif len(term) >= 7:
        rank = 1
    else:
        rank = 0
    return rank, len(term)


def surface_tokens(text: str) -> list[str]:
    """The tokens of ``text`` as written (before normalisation)."""
    return _TOKEN.findall(text)


def query_terms(question: str, max_terms: int) -> list[str]:
    """The at most ``max_terms`` terms a question is searched by, most specific first
    (:meth:`hive_core.query.ParsedQuery.routed`; names and cues are there too)."""
    from hive_core.query import parse

    return parse(question).routed(max_terms)


def overlap(a: Iterable[str], b: Iterable[str]) -> float:
    """Jaccard overlap of two term collections (0 when both are empty)."""
    sa, sb = set(a), set(b)
    if not sa and not sb:
        return 0.0
    return len(sa & sb) / len(sa | sb)
