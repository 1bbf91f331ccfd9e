"""Gathering questions and the past before a pivot, through hives of 1 and 6 shards, judged
by what the turns say (hive_core.evaluation.dataset's judge, independent of the engine)."""

from __future__ import annotations

import pytest

from agent_runtime.answering import ExtractiveAnswerer
from agent_runtime.learning import RuleBasedExtractor, facts_of_turns
from hive_core import DistributedHiveGraph
from hive_core.evaluation.dataset import Question, answered, retrieved
from hive_core.query import parse

DAY = 86_400.0
CHATTER = ["{p} was in meetings all day.", "{p} is out sick today.",
           "I had lunch with {p} today.", "{p} brought pastries for everyone.",
           "{p} recommended a podcast about typography."]
PEOPLE = ["Tomas Silva", "Mei Tanaka", "Ravi Gupta"]
PETS = {"Tomas Silva": [("hamster", "Ziggy"), ("dog", "Bramble"), ("cat", "Sesame")],
        "Mei Tanaka": [("parrot", "Kiwi"), ("cat", "Olive")], "Ravi Gupta": []}
LINES = [
    ("Project Slate Kestrel is due on 2026-08-30.", 1),
    ("The new deadline for Project Slate Kestrel is 2026-09-24.", 5),
    ("The new deadline for Project Slate Kestrel is 2026-10-08.", 9),
    ("The Slate Kestrel deadline came up in the retro again.", 3),
    ("The status of Project Teal Coyote is blocked.", 2),
    ("Project Teal Coyote is now in beta.", 6),
    ("Project Teal Coyote is now on hold.", 8),
    ("The Project Amber Falcon beta has 2,500 users.", 4),
]
# A group without a name: only its common words say which ("the chess club").
CLUBS = [
    "Priya Raman joined the chess club.", "The chess club meets on Thursday evenings.",
    "Lars Eriksen joined the book club.", "Jonas Weber joined the chess club on Monday.",
    "The chess club is looking for new members.",
    "Ana Lopez was added to Project Teal Coyote.",
    "Ben Ito started working on Project Teal Coyote.",
]


def turns() -> list[dict]:
    out: list[dict] = []
    day = 0
    for person in PEOPLE:
        for template in CHATTER:
            day += 1
            out.append({"session": f"d{day}", "turn": 0, "content": template.format(p=person),
                        "time": day * DAY})
        for kind, name in PETS[person]:
            day += 1
            out.append({"session": f"d{day}", "turn": 0, "time": day * DAY,
                        "content": f"{person} adopted a {kind} named {name}."})
    for i, (text, d) in enumerate(LINES):
        out.append({"session": "p", "turn": i, "content": text, "time": d * DAY})
    for i, text in enumerate(CLUBS):
        out.append({"session": "clubs", "turn": i, "content": text, "time": (20 + i) * DAY})
    return out


@pytest.fixture(params=[1, 6])
def hive(request):
    graph = DistributedHiveGraph("s", replication_factor=3)
    for i in range(request.param):
        graph.register_agent(f"a{i}")
    facts = facts_of_turns(RuleBasedExtractor(), turns())
    for i in range(0, len(facts), 4):
        graph.promote_facts(f"a{i % request.param}", facts[i:i + 4])
    yield graph
    graph.close()


def ask(graph: DistributedHiveGraph, question: str) -> tuple[list[str], str]:
    result = graph.search(question, 10, asking_agent="a0")
    return ([f.content for f in result.facts],
            ExtractiveAnswerer().answer(question, result).text)


def test_counts_and_lists_gather_distinct_names(hive) -> None:
    for question, keywords, evidence in [
        ("How many pets has Tomas Silva named?", ("3",), ("Ziggy", "Bramble", "Sesame")),
        ("What are the names of Mei Tanaka's pets?", ("Kiwi", "Olive"), ()),
    ]:
        q = Question(question, "agg", keywords, spread=True, evidence=evidence)
        facts, answer = ask(hive, question)
        assert retrieved(q, facts), (question, facts)
        assert answered(q, answer), (question, answer)
    # The subject's own name and the chatter about them are not items.
    _, answer = ask(hive, "How many pets has Tomas Silva named?")
    assert "Tomas" not in answer and answer.startswith("3: ")


def test_a_group_named_by_common_words_gathers_its_members_not_its_weekday(hive) -> None:
    """No name in the question: its last definite phrase ("the chess club") is the subject;
    the book club's member and the day someone joined are not members."""
    for question in ("How many people joined the chess club?", "Who joined the chess club?"):
        _, answer = ask(hive, question)
        assert "Lars" not in answer and "Monday" not in answer, (question, answer)
    _, answer = ask(hive, "How many people joined the chess club?")
    assert answer.startswith("2: ") and "Priya Raman" in answer and "Jonas Weber" in answer
    _, answer = ask(hive, "Who joined the chess club?")
    assert answered(Question("Who joined the chess club?", "list",
                             ("Priya Raman", "Jonas Weber")), answer), answer


def test_everyone_on_a_project_is_everyone_said_to_belong_however_it_was_said(hive) -> None:
    """"everyone" says who is listed, not how they belong: every fact about the project that
    adds a name counts, the project's status lines add none."""
    _, answer = ask(hive, "List everyone on Project Teal Coyote.")
    assert sorted(answer.rstrip(".").split(", ")) == ["Ana Lopez", "Ben Ito"], answer


def test_a_number_stated_outright_is_not_a_count_of_names(hive) -> None:
    q = Question("How many users does the Project Amber Falcon beta have?", "numbers",
                 ("2,500 users",))
    assert parse(q.text).wants_count
    assert answered(q, ask(hive, q.text)[1])


def test_the_past_before_a_pivot_value_or_state(hive) -> None:
    for q in (Question("What was the deadline of Project Slate Kestrel before it moved to "
                       "2026-09-24?", "past", ("2026-08-30",), stale=("2026-09-24",)),
              Question("What was the status of Project Teal Coyote before it was in beta?",
                       "past", ("blocked",), stale=("in beta", "on hold"))):
        assert answered(q, ask(hive, q.text)[1]), q.text


def test_list_cues() -> None:
    assert parse("List the languages Diego Alvarez is studying.").wants_list
    assert parse("Which projects does Ravi Gupta work on?").wants_list
    assert not parse("Which team is Ravi Gupta on?").wants_list
    assert not parse("What is the status of Project Teal Coyote?").wants_list
    for everyone in ("Who works on Project Teal Coyote?", "Who is in the chess club?",
                     "Who joined the chess club?", "Who are the members of the book club?"):
        assert parse(everyone).wants_list, everyone
    for one in ("Who leads Project Teal Coyote?", "Who is the lead of Project Teal Coyote?",
                "Who is Mei Tanaka?"):
        assert not parse(one).wants_list, one


def test_the_subject_of_a_gathering_question() -> None:
    assert parse("How many members does the chess club have?").subject == {"chess", "club"}
    assert parse("List the members of the book club.").subject == {"book", "club"}
    named = parse("How many pets does Tomas Silva have?")
    assert named.subject == named.anchors and len(named.anchors) == 2
    assert parse("What is the status of the release?").subject == frozenset()  # gathers not
