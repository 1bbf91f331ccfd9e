"""Learning: a dialogue turn in, facts out.

Offline by default. :class:`RuleBasedExtractor` is deterministic: one fact per sentence or
independent clause, the text kept verbatim (numbers, identifiers and dates are never
rewritten), ``concept`` set to the clause's main entity. Each fact remembers its *episode*
(the turn it came from) in ``metadata["episode"]``, because answers often need two sentences
of one turn; and a sentence whose subject is only a pronoun gets the turn's subject written
into its content ("It was patched" -> "CVE-2024-3094 was patched"), so the fact still matches
a question about that subject on its own. A turn that *opens* with such a pronoun ("He said he
bought a Skoda.") takes the subject the turn before it ended with, when that is a name
(``before``, the previous turn of the same conversation: :mod:`agent_runtime.turn_context`
attaches it to the LEARN items that need it) -- so "Which car did Diego Alvarez buy?" finds it.

:class:`AnthropicExtractor` is used only when ``ANTHROPIC_API_KEY`` is set (``anthropic`` is
the optional ``llm`` extra, imported lazily). It fails loudly on a bad answer: there is no
silent fallback to the rule-based extractor.
"""

from __future__ import annotations

import bisect
import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from hive_core.errors import AgentError, ConfigError
from hive_core.facts import HiveFact, content_hash, said_later
from hive_core.text import STOPWORDS, token_spans

RULE_CONFIDENCE = 0.8  # below the escalation threshold: rule-extracted facts stay in the hive
LLM_CONFIDENCE = 0.85
DEFAULT_ANTHROPIC_MODEL = "claude-3-5-haiku-latest"


@runtime_checkable
class Extractor(Protocol):
    def extract(self, turn: str, before: str = "") -> list[HiveFact]:
        """Facts stated in one turn (no source agent: promotion stamps it)."""
        ...


LEARN_USAGE = ("LEARN needs a payload {'turns': [str or {'content': str, 'session': str, "
               "'turn': int, 'time': epoch seconds, 'confidence': 0..1, 'before': str}, ...]}")


def _turn(item: Any) -> tuple[str, dict[str, Any]]:
    """A LEARN turn's text and its place (session, turn index) when given."""
    if isinstance(item, str):
        return item, {}
    if not isinstance(item, dict) or not isinstance(item.get("content"), str):
        raise ValueError(LEARN_USAGE)
    where: dict[str, Any] = {}
    if item.get("session") is not None:
        if not isinstance(item["session"], str):
            raise ValueError(LEARN_USAGE)
        where["session"] = item["session"]
    if item.get("turn") is not None:
        if not isinstance(item["turn"], int) or isinstance(item["turn"], bool):
            raise ValueError(LEARN_USAGE)
        where["turn"] = item["turn"]
    if item.get("time") is not None:
        if isinstance(item["time"], bool) or not isinstance(item["time"], int | float):
            raise ValueError(LEARN_USAGE)
        where["time"] = float(item["time"])
    if item.get("before") is not None:  # the previous turn: context, never a fact itself
        if not isinstance(item["before"], str):
            raise ValueError(LEARN_USAGE)
        where["before"] = item["before"]
    if item.get("confidence") is not None:
        rating = item["confidence"]
        if isinstance(rating, bool) or not isinstance(rating, int | float) or not (
                0.0 <= rating <= 1.0):
            raise ValueError(LEARN_USAGE)
        where["confidence"] = float(rating)
    return item["content"], where


def facts_of_turns(extractor: Extractor, turns: Sequence[Any]) -> list[HiveFact]:
    """The distinct facts of LEARN turns (text, or ``{"content", "session", "turn",
    "time"}``), each carrying its place in the conversation and, as ``created_at``, its turn's
    time: what an agent stores for a LEARN, and what an in-process evaluation learns, so the
    two cannot drift apart."""
    facts: dict[str, HiveFact] = {}
    places: dict[str, set[tuple[str, int]]] = {}
    for item in turns:
        content, where = _turn(item)
        when = where.pop("time", None)
        rating = where.pop("confidence", None)
        before = where.pop("before", "")
        for fact in extractor.extract(content, before):
            fact.metadata.update(where)
            if when is not None:
                fact = fact.stamped(when)
            if rating is not None:
                fact = fact.rated(rating)
            held = facts.get(fact.fact_id)
            if held is None or said_later(held.to_dict(), fact.to_dict()):
                facts[fact.fact_id] = fact  # a sentence said twice: its latest saying
            if "session" in where and "turn" in where:
                places.setdefault(fact.fact_id, set()).add((where["session"], where["turn"]))
    for fid, fact in facts.items():
        # Every place it was said is posted (hive_core.context), whatever the batching.
        own = (fact.metadata.get("session"), fact.metadata.get("turn"))
        others = sorted(places.get(fid, set()) - {own})
        if others:
            fact.metadata["seen_at"] = [list(p) for p in others]
    return list(facts.values())


def episode_id(turn: str) -> str:
    """Stable id of a turn: the same turn learned twice is one episode."""
    return "ep_" + content_hash(turn)[:16]


def make_fact(content: str, concept: str, episode: str, position: int,
              confidence: float) -> HiveFact:
    """A fact of the turn whose :func:`episode_id` is ``episode`` (computed once per turn:
    hashing the whole turn again for each of its facts made extraction quadratic -- 100 KB
    took 6.8 s)."""
    return HiveFact(content=content, concept=concept, confidence=confidence,
                    metadata={"episode": episode, "position": position})


# -- sentences and clauses -----------------------------------------------------------------
_ABBREVIATIONS = frozenset(
    "dr mr mrs ms prof sr jr st vs etc inc ltd corp co no e.g i.e approx dept fig est "
    "jan feb mar apr jun jul aug sep sept oct nov dec u.s u.k a.m p.m".split()
)
_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*\s+")
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+")
_CLAUSE_JOIN = re.compile(r",\s+(?:and|but|while|whereas|so)\s+|\s*;\s+")
_SUBJECT_START = frozenset(
    "it he she they we i this that these those the a an its his her their our my".split()
)
_MIN_CLAUSE_WORDS = 4


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``; lines are boundaries, abbreviations and ``v1.29`` are not."""
    out: list[str] = []
    for raw_line in text.splitlines():
        line = _BULLET.sub("", raw_line).strip()
        start = 0
        for m in _SENTENCE_END.finditer(line):
            # The word before the stop, scanned back over that word only: slicing
            # line[start:stop] for every stop re-read an unsplit prefix ("Dr. Dr. ...")
            # each time, quadratic in the line.
            i = m.start()
            while i > start and not line[i - 1].isspace():
                i -= 1
            word = line[i:m.start()]
            following = line[m.end():m.end() + 1]
            initial = len(word) == 1 and word.isupper()
            if word.lower() in _ABBREVIATIONS or initial or following.islower():
                continue
            out.append(line[start:m.end()].strip())
            start = m.end()
        if line[start:].strip():
            out.append(line[start:].strip())
    return out


def _words(text: str) -> int:
    return len(text.split())


_WORD = re.compile(r"\S+")
_FIRST_WORDS = re.compile(rf"\s*(\S+)(?:\s+\S+){{{_MIN_CLAUSE_WORDS - 1}}}")


def split_clauses(sentence: str) -> list[str]:
    """Independent clauses: split at ``;`` and at ``, and``/``, but``/... between clauses.

    A split needs two real clauses (each at least four words, the second starting like a
    subject), so lists such as "Alice, Bob, and Carol joined" stay one fact.

    One pass over the sentence: the joins are found once, the words before a join are counted
    from the word starts (a binary search), and the words after it are checked by matching
    four of them at the join -- never by re-reading the rest of the sentence, which made a
    100 KB run of clauses quadratic (one copy and one count of the remainder per join).
    """
    starts = [m.start() for m in _WORD.finditer(sentence)]
    parts: list[str] = []
    seg = 0  # where the clause being built starts
    for m in _CLAUSE_JOIN.finditer(sentence):
        if bisect.bisect_left(starts, m.start()) - bisect.bisect_left(starts, seg) \
                < _MIN_CLAUSE_WORDS:
            continue
        following = _FIRST_WORDS.match(sentence, m.end())
        if following is None:
            continue
        first = following.group(1).strip("\"'(")
        if not (first.lower() in _SUBJECT_START or first[:1].isupper() or first[:1].isdigit()):
            continue
        left = sentence[seg:m.start()].rstrip(" ,;")
        left = left[:1].upper() + left[1:] if seg else left  # a clause after a split
        parts.append(left if left.endswith((".", "!")) else left + ".")
        seg = m.end()
    rest = sentence[seg:]
    parts.append(rest[:1].upper() + rest[1:] if seg else rest)
    return parts


# -- main entity -----------------------------------------------------------------------------
_NOT_NAMES = frozenset(
    "january february march april may june july august september october november december "
    "monday tuesday wednesday thursday friday saturday sunday yesterday today tomorrow "
    "tonight then however meanwhile later also after before during since note update "
    "reminder please finally first next overall".split()
)
_AUXILIARIES = frozenset(
    "is are was were be been being has have had will would can could should must may might "
    "does did do means meant".split()
)
_VALUE = re.compile(
    r"^(?:[$€£]?\d+(?:[.,]\d+)*[%kKmMbB]?|\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}/\d{2,4}"
    r"|\d{1,2}:\d{2}(?::\d{2})?|v\d+(?:\.\d+)*)$"
)
_IRREGULAR_PAST = frozenset(
    "grew made took went ran began became rose fell came saw found gave kept left lost met "
    "paid said sent set shut sold spent told won wrote built broke brought bought caught chose "
    "drove held led put hit cut".split()
)
_PRONOUNS = {"it": "", "he": "", "she": "", "they": "", "this": "", "that": "",
             "its": "'s", "his": "'s", "her": "'s", "their": "'s"}
_DEMONSTRATIVES = frozenset({"this", "that"})
_POSSESSIVE = re.compile(r"['\u2019]s?$")
_HONORIFICS = frozenset({"dr", "mr", "mrs", "ms", "prof"})


def _is_value(token: str) -> bool:
    """Numbers, amounts, dates, times and versions: preserved, but never a main entity."""
    return bool(_VALUE.match(token))


def _is_identifier(token: str) -> bool:
    has_digit = any(c.isdigit() for c in token)
    has_alpha = any(c.isalpha() for c in token)
    joined = any(c in "-./:_" for c in token)
    return not _is_value(token) and (has_digit or (joined and has_alpha))


def _name_token(token: str) -> int:
    """0: not part of a name; 1: weak (lowercase or short ids: xz-utils, p95); 2: strong."""
    low = token.lower()
    if low in STOPWORDS or low in _NOT_NAMES or _is_value(token):
        return 0
    if _is_identifier(token):
        digits = any(c.isdigit() for c in token)
        joined = any(c in "-./:_" for c in token)
        strong = len(token) >= 4 and (any(c.isupper() for c in token) or (digits and joined))
        return 2 if strong else 1
    return 2 if token[:1].isupper() else 0


def _name_spans(sentence: str) -> list[tuple[int, str]]:
    """(strength, text) of runs of adjacent name tokens, in sentence order."""
    spans: list[tuple[int, str]] = []
    run_start = run_end = prev_end = -1
    strength = 0
    prev = ""
    for start, end, tok in token_spans(sentence):
        score = _name_token(tok)
        gap = sentence[prev_end:start]
        adjacent = run_start >= 0 and (
            gap.isspace() or (gap == ". " and prev.lower() in _HONORIFICS))
        if score and adjacent:
            run_end, strength = end, max(strength, score)
        else:
            if run_start >= 0:
                spans.append((strength, sentence[run_start:run_end]))
            run_start, run_end, strength = (start, end, score) if score else (-1, -1, 0)
        prev_end, prev = end, tok
    if run_start >= 0:
        spans.append((strength, sentence[run_start:run_end]))
    return spans


def main_entity(sentence: str) -> str:
    """The sentence's main entity: the first strong name-like span, else its subject.

    Name-like spans are runs of adjacent capitalised words and identifiers ("Alice Chen",
    "Incident INC-2041", "Subnet 10.0.1.0/24"). A capitalised first word counts (statements
    start with their subject far more often than with a verb) unless it is a stopword or a
    sentence opener such as "Yesterday". Without a strong span, the subject noun phrase
    (words before the first auxiliary, articles dropped) is the entity: "payment gateway p95".
    """
    spans = _name_spans(sentence)
    strong = [text for strength, text in spans if strength >= 2]
    if strong:
        return strong[0]
    return _subject_phrase(token_spans(sentence)) or (spans[0][1] if spans else "")


def _looks_like_verb(word: str) -> bool:
    low = word.lower()
    if low in _AUXILIARIES or low in _IRREGULAR_PAST:
        return True
    return low.isalpha() and (low.endswith("ed") or (low.endswith("s") and not
                                                     low.endswith(("ss", "us", "is"))))


def _subject_phrase(tokens: Sequence[tuple[int, int, str]]) -> str:
    """Up to three words of the subject: after articles, before the verb or a stopword."""
    words: list[str] = []
    for _, _, tok in tokens:
        low = tok.lower()
        if words and (low in STOPWORDS or _looks_like_verb(tok)):
            break
        if low in _AUXILIARIES:
            break
        if low in STOPWORDS or low in _NOT_NAMES or _is_value(tok):
            continue
        words.append(tok)
        if len(words) == 3:
            break
    return " ".join(words)


def _pronoun_subject(clause: str) -> tuple[str, str] | None:
    """(pronoun, suffix) when the clause's subject is only a pronoun."""
    parts = clause.split(None, 2)
    if not parts:
        return None
    low = parts[0].lower()
    if low not in _PRONOUNS:
        return None
    if low in _DEMONSTRATIVES:  # "This was ..." is a pronoun, "This patch ..." is not
        nxt = parts[1].lower() if len(parts) > 1 else ""
        if nxt not in _AUXILIARIES:
            return None
    return parts[0], _PRONOUNS[low]


def carry_subject(clause: str, subject: str) -> str:
    """Write ``subject`` in place of a leading subject pronoun ("Its CVE" -> "X's CVE")."""
    found = _pronoun_subject(clause)
    if found is None or not subject:
        return clause
    pronoun, suffix = found
    return subject + suffix + clause[len(pronoun):]


# -- the extractors --------------------------------------------------------------------------
class RuleBasedExtractor:
    """Deterministic, offline: one fact per sentence or clause (see module docstring)."""

    def __init__(self, *, confidence: float = RULE_CONFIDENCE, min_words: int = 2) -> None:
        self.confidence = confidence
        self.min_words = min_words

    def extract(self, turn: str, before: str = "") -> list[HiveFact]:
        """The facts of ``turn``; ``before`` is the turn said right before it (context: a
        pronoun opening ``turn`` may name the subject ``before`` ended with)."""
        episode = episode_id(turn)
        statements, _ = self._statements(turn, antecedent(before) if before else "")
        return [make_fact(content, concept, episode, position, self.confidence)
                for position, (content, concept) in enumerate(statements)]

    def _statements(self, turn: str, subject: str) -> tuple[list[tuple[str, str]], str]:
        """(content, concept) of each statement of ``turn``, and the subject it ends with;
        ``subject``: the one it starts with (what a leading pronoun refers to)."""
        out: list[tuple[str, str]] = []
        for sentence in split_sentences(turn):
            if sentence.rstrip("\"')").endswith("?"):
                continue  # a question states nothing
            for clause in split_clauses(sentence):
                if _words(clause) < self.min_words:
                    continue
                if _pronoun_subject(clause) is not None:
                    if subject:
                        out.append((carry_subject(clause, subject), subject))
                    elif _words(clause) >= _MIN_CLAUSE_WORDS:
                        # "She said she bought a Subaru." with no name before it: kept as
                        # said (hive_core.context may still find its subject next to it).
                        out.append((clause, ""))
                    # else: "It works." refers to nothing and says next to nothing
                else:
                    concept = main_entity(clause)
                    out.append((clause, concept))
                    subject = concept or subject
        return out, subject


def antecedent(turn: str) -> str:
    """The name a pronoun opening the *next* turn refers to: the subject ``turn`` ends with
    (as within one turn), if that subject is a name ("I sat next to Ravi Gupta at dinner." ->
    "Ravi Gupta"); "" when it is not ("The deploy went fine." says nothing of a "he"). Across
    turns only a name is carried: a guessed common noun would rewrite facts wrongly."""
    _, subject = RuleBasedExtractor()._statements(turn, "")
    subject = _POSSESSIVE.sub("", subject)  # "Mei Tanaka's birthday is ..." -> Mei Tanaka
    return subject if subject and any(s == 2 and t == subject
                                       for s, t in _name_spans(subject)) else ""


def opens_with_pronoun(turn: str) -> bool:
    """Whether ``turn`` starts with a subject pronoun ("She said ..."): the turns that need
    the one before them (cheap: the CLI asks it of every turn it streams)."""
    return _pronoun_subject(turn.lstrip()[:64]) is not None


_LLM_SYSTEM = (
    "You extract facts from one turn of a conversation. Return ONLY a JSON array of objects "
    '{"content": str, "concept": str}: one object per sentence or independent clause that '
    "states something. Copy numbers, identifiers, amounts, versions and dates exactly. Replace "
    "a subject pronoun with the entity it refers to. 'concept' is the fact's main entity. "
    "Skip questions, greetings and filler."
)


class AnthropicExtractor:
    """Extraction by an Anthropic model. ``client`` is an ``anthropic.Anthropic`` (or a stub
    with the same ``messages.create``), so tests never need the network."""

    def __init__(self, client: Any, *, model: str = DEFAULT_ANTHROPIC_MODEL, prompt: str = "",
                 max_tokens: int = 2048) -> None:
        self.client = client
        self.model = model
        self.prompt = prompt
        self.max_tokens = max_tokens

    @classmethod
    def from_env(cls, environ: Mapping[str, str], prompt: str = "") -> AnthropicExtractor:
        try:
            import anthropic
        except ImportError as exc:
            raise ConfigError(
                "ANTHROPIC_API_KEY is set but the 'anthropic' package is not installed: "
                "pip install 'amplihack-hive[llm]' (or unset the key to learn offline)"
            ) from exc
        client = anthropic.Anthropic(api_key=environ["ANTHROPIC_API_KEY"])
        model = environ.get("AMPLIHACK_ANTHROPIC_MODEL") or DEFAULT_ANTHROPIC_MODEL
        return cls(client, model=model, prompt=prompt)

    def extract(self, turn: str, before: str = "") -> list[HiveFact]:
        system = _LLM_SYSTEM + (f"\nThe agent's role: {self.prompt}" if self.prompt else "")
        asked = turn if not before else (
            f"The turn said before it (context only, extract nothing from it):\n{before}\n\n"
            f"The turn to extract facts from:\n{turn}")
        message = self.client.messages.create(
            model=self.model, max_tokens=self.max_tokens, system=system,
            messages=[{"role": "user", "content": asked}])
        text = "".join(getattr(block, "text", "") for block in message.content)
        episode = episode_id(turn)
        return [make_fact(content, concept, episode, i, LLM_CONFIDENCE)
                for i, (content, concept) in enumerate(parse_llm_facts(text))]


def parse_llm_facts(text: str) -> list[tuple[str, str]]:
    """(content, concept) pairs from the model's JSON; raises AgentError if it is not that."""
    start, end = text.find("["), text.rfind("]")
    if start < 0 or end < start:
        raise AgentError(f"the extractor model did not return a JSON array: {text[:120]!r}")
    try:
        items = json.loads(text[start:end + 1])
    except json.JSONDecodeError as exc:
        raise AgentError(f"the extractor model returned invalid JSON: {exc}") from exc
    out = []
    for item in items:
        if not isinstance(item, dict) or not str(item.get("content", "")).strip():
            raise AgentError(f"the extractor model returned a malformed fact: {item!r}")
        out.append((str(item["content"]).strip(), str(item.get("concept", "")).strip()))
    return out


def make_extractor(environ: Mapping[str, str] | None = None, prompt: str = "") -> Extractor:
    """The LLM extractor when ``ANTHROPIC_API_KEY`` is set, else the offline rules."""
    env = os.environ if environ is None else environ
    if env.get("ANTHROPIC_API_KEY"):
        return AnthropicExtractor.from_env(env, prompt)
    return RuleBasedExtractor()
