"""Changing values and neighbouring turns, checked against what the turns say, at N=1 and N=7.

The versions a question asks about are ordered by the turns' *time*, never by the order the
facts arrived in: every test learns the newest value first.
"""

from __future__ import annotations

import pytest

from agent_runtime.answering import ExtractiveAnswerer
from agent_runtime.learning import RuleBasedExtractor, facts_of_turns
from hive_core import DistributedHiveGraph, context
from hive_core.evaluation.dataset import Question, answered, position
from hive_core.text import tokenize

DAY = 86_400.0
CHATTER = [f"The Osprey standup number {i} ran long." for i in range(30)] + [
    "Ada Okafor brought pastries for everyone.", "Ravi Gupta is out sick today.",
    "Project Osprey slides need another pass.", "The Osprey demo went fine today."]


def turn(session: str, i: int, text: str, day: float) -> dict:
    return {"session": session, "turn": i, "content": text, "time": day * DAY}


def hive(agents: int, turns: list[dict]) -> DistributedHiveGraph:
    graph = DistributedHiveGraph("v", replication_factor=3)
    for i in range(agents):
        graph.register_agent(f"a{i}")
    facts = facts_of_turns(RuleBasedExtractor(), turns)
    # Newest first: arrival order must not decide which value is current.
    facts.sort(key=lambda f: -f.created_at)
    for i in range(0, len(facts), 5):
        graph.promote_facts(f"a{i % agents}", facts[i:i + 5])
    return graph


LEADS = [turn("d1", 0, "Project Osprey is led by Ada Okafor.", 1),
         turn("d5", 3, "Project Osprey is now led by Ravi Gupta.", 5),
         turn("d9", 7, "Project Osprey is now led by Mei Tanaka.", 9)]
LEADS += [turn("chat", i, text, 2 + i % 7) for i, text in enumerate(CHATTER)]


def ask(graph: DistributedHiveGraph, question: str) -> str:
    result = graph.search(question, 10, asking_agent="a0")
    return ExtractiveAnswerer().answer(question, result).text


@pytest.mark.parametrize("agents", [1, 7])
def test_the_present_leads_with_the_newest_value_and_names_the_old(agents: int) -> None:
    graph = hive(agents, LEADS)
    try:
        text = ask(graph, "Who leads Project Osprey now?")
        assert position("Mei Tanaka", text) == text.index("Mei Tanaka") >= 0
        assert 0 <= text.index("Mei Tanaka") < text.index("Ravi Gupta")  # named after
        assert "Ada Okafor" not in text.split("Before that:")[0]
    finally:
        graph.close()


@pytest.mark.parametrize("agents", [1, 7])
def test_the_past_before_a_pivot_and_originally(agents: int) -> None:
    graph = hive(agents, LEADS)
    try:
        before = Question("Who led Project Osprey before Mei Tanaka?", "past", ("Ravi Gupta",),
                          stale=("Mei Tanaka",))
        assert answered(before, ask(graph, before.text))
        first = Question("Who originally led Project Osprey?", "past", ("Ada Okafor",),
                         stale=("Mei Tanaka", "Ravi Gupta"))
        assert answered(first, ask(graph, first.text))
        # Without a cue about time the ranking is BM25's own: no version is promoted.
        plain = graph.search("Who led Project Osprey?", 10, asking_agent="a0")
        assert plain.versions == []
    finally:
        graph.close()


# -- neighbouring turns ----------------------------------------------------------------------
PAIRS = [("Mei Tanaka", "beagle", "Biscuit"), ("Omar Haddad", "poodle", "Waffles"),
         ("Lena Schmidt", "terrier", "Pepper"), ("Ivan Petrov", "collie", "Nugget")]


def conversation() -> list[dict]:
    turns: list[dict] = []
    for s, (person, breed, name) in enumerate(PAIRS):
        pro = "He" if person.split()[0] in ("Omar", "Ivan") else "She"
        lines = [f"{person} asked me to review a pull request.",
                 f"{person} is out sick today." if s % 2 else f"{person} flew to Lisbon.",
                 f"I walked to the station with {person} on Monday.",
                 f"{pro} told me {pro.lower()} adopted a {breed} named {name}.",
                 "Thanks, that helps."]
        turns += [turn(f"s{s}", i, text, s) for i, text in enumerate(lines)]
    return turns


def adoption_rank(graph: DistributedHiveGraph, person: str, name: str) -> int:
    """Where the turn with the dog's name ranks among the adoption turns (0 = first)."""
    result = graph.search(f"What dog did {person} adopt?", 10, asking_agent="a0")
    adoptions = [f.content for f in result.facts if "adopted" in f.content]
    return next((i for i, c in enumerate(adoptions) if name in c), 99)


@pytest.mark.parametrize("agents", [1, 7])
def test_a_turn_is_found_through_the_neighbour_that_names_its_subject(agents: int) -> None:
    graph = hive(agents, conversation())
    try:
        for person, _breed, name in PAIRS:
            # The answer turn names only the dog; its neighbour names the person: it ranks
            # above every other adoption turn, and the answer line is that turn.
            assert adoption_rank(graph, person, name) == 0, person
            question = f"What dog did {person} adopt?"
            assert name in ask(graph, question).split(".")[0], question
            assert len(graph.search(question, 10, asking_agent="a0").shards_searched) <= 5
        context.CONTEXT_WEIGHT, saved = 0.0, context.CONTEXT_WEIGHT
        try:
            # Without neighbour evidence the adoption turns tie: the name cannot decide.
            firsts = sum(adoption_rank(graph, p, n) == 0 for p, _b, n in PAIRS)
            assert firsts <= 2
        finally:
            context.CONTEXT_WEIGHT = saved
    finally:
        graph.close()


def test_a_neighbour_lends_only_the_question_terms_a_fact_lacks() -> None:
    """Two turns about one person do not lift each other for saying her name twice; a turn
    that does not name her gains her name from its neighbour (scores worked out by hand)."""
    from hive_core.facts import HiveFact
    from hive_core.store.base import ScoredFact

    def at(text: str, turn_: int, score: float) -> ScoredFact:
        return ScoredFact(HiveFact(content=text, metadata={"session": "s", "turn": turn_}),
                          score)

    weights = {t: 1.0 for t in tokenize("Mei Tanaka dog")}  # mei, tanaka, dog
    lunch = at("I had lunch with Mei Tanaka today.", 0, 2.0)  # mei, tanaka
    dog = at("Mei Tanaka adopted a dog.", 1, 3.0)  # mei, tanaka, dog
    pronoun = at("She said the dog is called Biscuit.", 5, 1.0)  # dog
    intro = at("I sat next to Mei Tanaka.", 4, 2.0)  # mei, tanaka
    ranked = context.rerank([lunch, dog, pronoun, intro], {}, weights)
    got = {sf.fact.content: sf.score for sf in ranked}
    half = context.CONTEXT_WEIGHT
    assert got == pytest.approx({
        lunch.fact.content: 2.0 + half * 3.0 * (1 / 3),  # "dog" is all it lacks
        dog.fact.content: 3.0,  # lunch has nothing dog lacks
        pronoun.fact.content: 1.0 + half * 2.0,  # both names lent by the intro
        intro.fact.content: 2.0 + half * 1.0,  # "dog" from the pronoun turn
    })


def test_n1_and_n7_rank_neighbours_identically() -> None:
    turns = conversation() + LEADS
    one, seven = hive(1, turns), hive(7, turns)
    try:
        for person, _breed, _name in PAIRS:
            for q in (f"What dog did {person} adopt?", f"Where did {person} fly?"):
                a, b = one.search(q, 10, asking_agent="a0"), seven.search(q, 10, "a3")
                assert [f.fact_id for f in a.facts] == [f.fact_id for f in b.facts], q
                assert a.scores == pytest.approx(b.scores)
    finally:
        one.close()
        seven.close()


def test_position_keys_are_postings_not_terms_and_retract_removes_them() -> None:
    graph = hive(7, conversation())
    try:
        result = graph.search("What dog did Mei Tanaka adopt?", 10, asking_agent="a0")
        fact = next(f for f in result.facts if "Biscuit" in f.content)
        key = context.fact_keys(fact.metadata)[0]
        assert key.startswith(context.KEY_PREFIX)
        holders = list(graph.ring.get_agents(key))
        assert all(graph.shard_store(a).score([key], {"biscuit": 1.0}, 5) for a in holders)
        # The key is no term: it changes no fact's length and no collection statistic.
        facts = facts_of_turns(RuleBasedExtractor(), conversation())
        assert graph.collection().length == sum(len(tokenize(f.content)) for f in facts)
        assert graph.retract_fact(fact.fact_id)
        assert not any(graph.shard_store(a).score([key], {"biscuit": 1.0}, 5) for a in holders)
    finally:
        graph.close()


def test_position_postings_survive_a_kuzu_restart(tmp_path) -> None:
    def kuzu_hive() -> DistributedHiveGraph:
        graph = DistributedHiveGraph("k", replication_factor=2, shard_backend="kuzu",
                                     storage_path=tmp_path)
        for i in range(3):
            graph.register_agent(f"a{i}")
        return graph

    graph = kuzu_hive()
    try:
        graph.promote_facts("a0", facts_of_turns(RuleBasedExtractor(), conversation()))
    finally:
        graph.close()
    graph = kuzu_hive()  # the shards replay their logs, position postings included
    try:
        for person, _breed, name in PAIRS:
            assert adoption_rank(graph, person, name) == 0, person
    finally:
        graph.close()
