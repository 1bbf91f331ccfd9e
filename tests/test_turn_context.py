"""A turn that opens with a pronoun names the subject of the turn before it.

"He said he finally bought a Skoda." is learned as "Diego Alvarez said he finally bought a
Skoda." when the turn before it named Diego Alvarez -- even when another agent learned that
turn (``learn`` deals turn i to agent i mod N). The references are written out by hand: the
facts a reader would write down.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent_runtime.inprocess import InProcessHive
from agent_runtime.learn_requests import LearnBudget
from agent_runtime.learning import RuleBasedExtractor, antecedent, facts_of_turns
from agent_runtime.turn_context import with_before
from tests.cli_helpers import CliHive

PAIRS = [  # (the turn that names someone, the pronoun turn, a question, the answer it needs)
    ("I walked to the station with Diego Alvarez at the offsite.",
     "He said he finally bought a Skoda.", "Which car did Diego Alvarez buy?", "Skoda"),
    ("I sat next to Mei Tanaka at dinner on Friday.",
     "She told me she just adopted a beagle named Biscuit.",
     "What is the name of the dog Mei Tanaka adopted?", "Biscuit"),
    ("Ravi Gupta and I had a long chat before the standup.",
     "He mentioned that his sister is called Anneliese.",
     "What is the name of Ravi Gupta's sister?", "Anneliese"),
]
FILLER = [  # other people and other pets: what a question must not be answered with
    "Amara Diallo has a new dog named Mittens.", "Lars Eriksen bought a Peugeot last year.",
    "Diego Alvarez lives in Berlin.", "Mei Tanaka is on the growth team.",
    "Ravi Gupta was in meetings all day.", "Priya Raman's sister is called Rosalind.",
]


def conversation() -> list[dict]:
    """One session: filler, then each pair on consecutive turns."""
    lines = [*FILLER[:3]]
    for intro, said, _, _ in PAIRS:
        lines += [intro, said]
    lines += FILLER[3:]
    return [{"content": text, "session": "day-1", "turn": i} for i, text in enumerate(lines)]


@pytest.mark.parametrize(("turn", "name"), [
    ("I sat next to Ravi Gupta at dinner on Friday.", "Ravi Gupta"),
    ("Mei Tanaka's birthday is in March.", "Mei Tanaka"),  # not "Mei Tanaka's"
    ("Project Atlas kicked off. It is due in May.", "Project Atlas"),  # carried through
    ("The deploy went fine.", ""),  # not a name: nothing to carry across turns
    ("I had lunch today.", ""),
    ("", ""),
])
def test_the_antecedent_is_the_name_a_turn_ends_with(turn: str, name: str) -> None:
    assert antecedent(turn) == name


def test_a_pronoun_turn_takes_the_name_of_the_turn_before() -> None:
    extract = RuleBasedExtractor().extract
    intro, said = PAIRS[0][:2]
    assert [f.content for f in extract(said, intro)] == [
        "Diego Alvarez said he finally bought a Skoda."]
    assert [f.concept for f in extract(said, intro)] == ["Diego Alvarez"]
    assert [f.content for f in extract(said)] == [said]  # no turn before: kept as said
    assert [f.content for f in extract(said, "The deploy went fine.")] == [said]
    # A turn that names its own subject ignores the turn before.
    assert [f.content for f in extract("Lars Eriksen bought a Peugeot.", intro)] == [
        "Lars Eriksen bought a Peugeot."]


def test_with_before_attaches_the_previous_turn_of_the_same_conversation() -> None:
    turns = [
        {"content": "I met Ada Okafor.", "session": "a", "turn": 0},
        {"content": "Lars Eriksen is here.", "session": "b", "turn": 0},
        {"content": "She said hello.", "session": "a", "turn": 2},  # a gap: still the next
        {"content": "He left early.", "session": "b", "turn": 1, "before": "kept as given"},
        {"content": "Nobody else came.", "session": "a", "turn": 3},
        {"content": "It rained.", "session": "c", "turn": 0},  # first of its conversation
        "Omar Haddad called.", "He was late.",  # plain strings: one conversation
        {"no content": True},  # malformed: passed on for the agent to refuse
    ]
    original = json.dumps(turns)
    out = list(with_before(turns))
    assert json.dumps(turns) == original  # the caller's items are not modified
    assert [t.get("before") if isinstance(t, dict) else None for t in out] == [
        None, None, "I met Ada Okafor.", "kept as given", None, None, None,
        "Omar Haddad called.", None]
    assert out[7] == {"content": "He was late.", "before": "Omar Haddad called."}


def test_facts_of_turns_learns_the_named_facts_and_never_the_turn_before() -> None:
    facts = facts_of_turns(RuleBasedExtractor(), list(with_before(conversation())))
    texts = {f.content for f in facts}
    assert {"Diego Alvarez said he finally bought a Skoda.",
            "Mei Tanaka told me she just adopted a beagle named Biscuit.",
            "Ravi Gupta mentioned that his sister is called Anneliese."} <= texts
    assert not any(t.startswith(("He ", "She ")) for t in texts)
    # The turn before is context: a turn learned alone with it adds only its own facts.
    [alone] = facts_of_turns(RuleBasedExtractor(), [
        {"content": PAIRS[0][1], "before": PAIRS[0][0], "session": "s", "turn": 1}])
    assert alone.content == "Diego Alvarez said he finally bought a Skoda."
    assert (alone.metadata["session"], alone.metadata["turn"]) == ("s", 1)
    assert "before" not in alone.metadata


def test_the_turn_before_is_held_to_the_turn_size_limit() -> None:
    budget = LearnBudget(max_turn_bytes=100)
    budget.check([{"content": "He left.", "before": "x" * 100}])
    with pytest.raises(ValueError, match="limit per turn is 100 bytes"):
        budget.check([{"content": "He left.", "before": "x" * 101}])
    with pytest.raises(ValueError, match="'before': str"):
        facts_of_turns(RuleBasedExtractor(), [{"content": "He left.", "before": 3}])


@pytest.mark.parametrize("agents", [1, 3])
def test_a_pronoun_turn_is_found_by_the_name_at_any_hive_size(agents: int) -> None:
    """In-process hives batch 200 turns per agent: the pairs straddle no batch here, the CLI
    test below makes every pair straddle two agents."""
    hive = InProcessHive(agents)
    try:
        hive.learn(conversation())
        for _, _, question, value in PAIRS:
            reply = hive.ask(question, 10)
            assert value in reply.answer, (question, reply.answer)
    finally:
        hive.close()


@pytest.mark.slow
def test_a_pronoun_turn_learned_by_another_agent_process_names_its_subject(
        tmp_path: Path) -> None:
    """Three agent processes; turn i goes to agent i mod 3, so the two turns of every pair
    are learned by different agents. Before the CLI sent the turn before, each "He said..."
    was stored as said and these questions were answered with the filler."""
    hive = CliHive(tmp_path / "home", "pairs")
    talk = tmp_path / "talk.jsonl"
    talk.write_text("".join(json.dumps(t) + "\n" for t in conversation()))
    hive.ok("create", "--name", "pairs", "--agents", "3", "--shard-backend", "memory",
            "--no-semantic")
    hive.ok("start", "--hive", "pairs")
    try:
        hive.ok("learn", "--hive", "pairs", "--file", str(talk))
        for _, said, question, value in PAIRS:
            doc = json.loads(hive.ok("ask", "--hive", "pairs", "--json", question))
            assert value in doc["answer"], (question, doc["answer"])
            best = doc["facts"][0]["content"]
            assert value in best and said not in best  # the named fact, not the raw turn
    finally:
        hive.ok("stop", "--hive", "pairs")
