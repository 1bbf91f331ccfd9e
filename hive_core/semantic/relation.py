"""The relation a sentence states, without who it is about: the text a "relation" vector embeds.

In a static (averaged word) embedding, a whole sentence's vector is dominated by its rare
words, and in "How many pets does Victor Lindqvist have?" those are the name -- which BM25
already matches, and which every fact about Victor shares. What separates "Victor Lindqvist
adopted a hamster named Toffee." from "Victor Lindqvist moved to Oslo." is the rest: "pets"
against "adopted a hamster named". So both sides are embedded with the names taken out:

* a question (:func:`question_text`) loses its names and identifiers (the parsed query's
  anchors) and its question words ("what", "how many", "does", ...);
* a fact (:func:`fact_text`) loses the names it shares with the question (``names`` given), or
  every capitalised word (``names`` None: what the fact is about *and* the items it adds).

Both are plain token lists joined by spaces: the embedder sees words, not punctuation.
"""

from __future__ import annotations

from collections.abc import Collection

from hive_core.text import normalize_token, surface_tokens

# Words that say a sentence is a question, not what it asks about. ("name" and "names" stay:
# "What did Mei name her dog?" is about naming.)
QUESTION_WORDS = frozenset(
    "what which who whom whose where when why how many much does do did is are was were "
    "the a an of list all tell me please give show".split())


def _named(token: str, names: Collection[str] | None) -> bool:
    if names is None:
        return token[:1].isupper()
    term = normalize_token(token)
    return term is not None and term in names


def question_text(question: str, anchors: Collection[str]) -> str:
    """``question`` without its names (``anchors``, as terms) and its question words."""
    return " ".join(t for t in surface_tokens(question)
                    if t.lower() not in QUESTION_WORDS and not _named(t, anchors))


def fact_text(content: str, names: Collection[str] | None,
              subject: Collection[str] = ()) -> str:
    """``content`` without the tokens whose term is in ``names`` (None: without every
    capitalised token), nor those of ``subject`` (the question's words for what it is about
    when it names nothing, "chess club": taken out of the question too)."""
    return " ".join(t for t in surface_tokens(content)
                    if not _named(t, names) and not (subject and _named(t, subject)))
