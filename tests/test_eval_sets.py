"""The built-in question sets are right by construction: checked here by scanning the turns.

Every check recomputes its expectation from the turns alone (with the dataset's own keyword
matching), so a generator that wrote a value it did not ask about, asked about a stale value,
or placed an update before what it updates, fails here.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from functools import cache

import pytest

from hive_core.evaluation.dataset import (
    EvalSet,
    Question,
    Turn,
    answered,
    contains_all,
    position,
    retrieved,
)
from hive_core.evaluation.longhorizon import (
    CATEGORIES,
    CLUBS,
    PEOPLE,
    PET_NAMES,
    PROJECTS,
    build_long_horizon,
)
from hive_core.evaluation.science import DOMAINS, science_suite

BUILDS = [(3000, 7), (3000, 8), (600, 3)]  # (n_turns, seed)


@cache
def long_horizon(n_turns: int = 3000, seed: int = 7) -> EvalSet:
    return build_long_horizon(n_turns=n_turns, n_questions=120, seed=seed)


class Index:
    """The turns, searchable by keywords (whole words, as the judge matches them)."""

    def __init__(self, turns: Sequence[Turn]) -> None:
        self.turns = list(turns)
        self.folded = [t.content.casefold() for t in turns]

    def where(self, *keywords: str) -> list[int]:
        """Positions (log order) of the turns holding every keyword."""
        folded = [k.casefold() for k in keywords]
        return [i for i, text in enumerate(self.folded)
                if all(k in text for k in folded)
                and contains_all(keywords, self.turns[i].content)]


@cache
def index(n_turns: int = 3000, seed: int = 7) -> Index:
    return Index(long_horizon(n_turns, seed).turns)


def subject(question: Question) -> str:
    """The one project, club, pet or person the question is about (in that order of say)."""
    for names in (PROJECTS, CLUBS, PET_NAMES, PEOPLE):
        found = [n for n in names if position(n, question.text) >= 0]
        if found:
            assert len(found) == 1, question
            return found[0]
    raise AssertionError(f"no subject in {question.text!r}")


def of(eval_set: EvalSet, category: str) -> list[Question]:
    return [q for q in eval_set.questions if q.category == category]


# -- shape -----------------------------------------------------------------------------------------

def test_same_seed_same_set_other_seed_other_set() -> None:
    assert build_long_horizon(seed=7) == build_long_horizon(seed=7)
    other = build_long_horizon(seed=8)
    assert other.turns != long_horizon().turns
    assert other.questions != long_horizon().questions


@pytest.mark.parametrize("n_turns", [0, 1, 37, 250, 1000, 3000, 4321])
def test_exactly_n_turns_in_sessions_of_20_to_60(n_turns: int) -> None:
    turns = build_long_horizon(n_turns=n_turns, seed=5).turns
    assert len(turns) == n_turns
    sessions = Counter(t.session for t in turns)
    assert list(sessions) == [f"day-{i:03d}" for i in range(1, len(sessions) + 1)]
    lengths = list(sessions.values())
    assert all(20 <= n <= 60 for n in lengths[:-1]) and all(1 <= n <= 60 for n in lengths[-1:])
    for session, n in sessions.items():
        assert [t.turn for t in turns if t.session == session] == list(range(n))


def test_default_build_is_fast_and_balanced() -> None:
    t0 = time.perf_counter()
    eval_set = build_long_horizon()
    assert time.perf_counter() - t0 < 1.0
    assert eval_set.name == "long-horizon"
    assert len(eval_set.questions) == 120
    counts = Counter(q.category for q in eval_set.questions)
    assert set(counts) == set(CATEGORIES)
    assert min(counts.values()) >= 8 and max(counts.values()) - min(counts.values()) <= 1
    assert len({q.text for q in eval_set.questions}) == 120


@pytest.mark.parametrize("n_questions", [0, 9, 20, 1000])
def test_n_questions_caps_the_total_round_robin(n_questions: int) -> None:
    counts = Counter(q.category for q in build_long_horizon(n_questions=n_questions).questions)
    assert sum(counts.values()) <= n_questions
    if n_questions <= 120:
        assert sum(counts.values()) == n_questions
        assert not counts or max(counts.values()) - min(counts[c] for c in CATEGORIES) <= 1


def test_a_short_log_still_asks_every_category() -> None:
    eval_set = long_horizon(600, 3)
    assert len(eval_set.turns) == 600
    assert set(eval_set.categories()) == set(CATEGORIES)


def test_mostly_chatter_that_reuses_the_names() -> None:
    eval_set, idx = long_horizon(), index()
    assert len({t.content for t in eval_set.turns}) < len(eval_set.turns) / 2  # chatter repeats
    for q in of(eval_set, "current"):  # the subject is named far more often than answered
        assert len(idx.where(subject(q))) > len(idx.where(*q.needed))


# -- each category, checked against the turns --------------------------------------------------

@pytest.mark.parametrize(("n_turns", "seed"), BUILDS)
def test_non_spread_answers_sit_in_one_turn(n_turns: int, seed: int) -> None:
    eval_set, idx = long_horizon(n_turns, seed), index(n_turns, seed)
    for q in eval_set.questions:
        if not q.spread:
            assert idx.where(*q.keywords), q
            assert idx.where(*q.needed), q


@pytest.mark.parametrize(("n_turns", "seed"), BUILDS)
def test_spread_evidence_is_in_the_turns(n_turns: int, seed: int) -> None:
    eval_set, idx = long_horizon(n_turns, seed), index(n_turns, seed)
    for q in eval_set.questions:
        if q.spread:
            assert q.category in ("count", "list", "multi-hop"), q
            for item in q.needed:
                assert idx.where(item), (q, item)


@pytest.mark.parametrize(("n_turns", "seed"), BUILDS)
def test_one_off_values_are_never_reused(n_turns: int, seed: int) -> None:
    eval_set, idx = long_horizon(n_turns, seed), index(n_turns, seed)
    for q in eval_set.questions:
        if q.category in ("needle", "numbers", "context"):
            assert len(idx.where(*q.keywords)) == 1, q
        if q.category == "list" and subject(q) in PEOPLE:  # pets, languages
            assert all(len(idx.where(item)) == 1 for item in q.keywords), q


@pytest.mark.parametrize(("n_turns", "seed"), BUILDS)
def test_current_value_is_stated_after_every_stale_one(n_turns: int, seed: int) -> None:
    eval_set, idx = long_horizon(n_turns, seed), index(n_turns, seed)
    turns = eval_set.turns
    assert [(t.session, t.turn) for t in turns] == sorted((t.session, t.turn) for t in turns)
    for q in of(eval_set, "current"):
        s = subject(q)
        newest = idx.where(s, *q.keywords)
        assert newest and q.stale and not set(q.keywords) & set(q.stale), q
        for value in q.stale:
            stale = idx.where(s, value)
            assert stale, (q, value)
            assert min(newest) >= max(stale), (q, value)
            assert turns[min(stale)].session < turns[min(newest)].session, (q, value)


@pytest.mark.parametrize(("n_turns", "seed"), BUILDS)
def test_past_value_came_right_before_the_later_ones(n_turns: int, seed: int) -> None:
    eval_set, idx = long_horizon(n_turns, seed), index(n_turns, seed)
    for q in of(eval_set, "past"):
        s, (value,) = subject(q), q.keywords
        first = min(idx.where(s, value))
        assert q.stale[0] in q.text, q  # "... before <the next value>"
        for later in q.stale:
            assert first < min(idx.where(s, later)), (q, later)


@pytest.mark.parametrize(("n_turns", "seed"), BUILDS)
def test_counts_match_distinct_items_named_with_the_subject(n_turns: int, seed: int) -> None:
    eval_set, idx = long_horizon(n_turns, seed), index(n_turns, seed)
    for q in of(eval_set, "count"):
        s, (count,) = subject(q), q.keywords
        assert count.isdigit() and 2 <= int(count) <= 5, q
        assert len(set(q.evidence)) == len(q.evidence) == int(count), q
        homes = [idx.where(s, item) for item in q.evidence]
        assert all(homes), q
        sessions = {eval_set.turns[h[0]].session for h in homes}
        assert len(sessions) == int(count), q  # stated in separate sessions
    for q in of(eval_set, "list"):
        s = subject(q)
        assert 2 <= len(set(q.keywords)) == len(q.keywords) <= 5, q
        assert all(idx.where(s, item) for item in q.keywords), q


@pytest.mark.parametrize(("n_turns", "seed"), BUILDS)
def test_two_hops_both_hold(n_turns: int, seed: int) -> None:
    eval_set, idx = long_horizon(n_turns, seed), index(n_turns, seed)
    for q in of(eval_set, "multi-hop"):
        s, (person, value) = subject(q), q.evidence
        assert q.keywords == (value,), q
        assert idx.where(person, value), q  # the second hop: the person's attribute
        assert idx.where(s, person), q  # the first hop: the project's lead, the pet's owner
        if s in PROJECTS:  # and the lead never changes
            leads = {p for i in idx.where(s) for p in PEOPLE
                     if p in eval_set.turns[i].content
                     and any(position(w, eval_set.turns[i].content) >= 0
                             for w in ("lead", "leads", "led"))}
            assert leads == {person}, q


@pytest.mark.parametrize(("n_turns", "seed"), BUILDS)
def test_context_subject_is_named_only_in_the_turn_before(n_turns: int, seed: int) -> None:
    eval_set, idx = long_horizon(n_turns, seed), index(n_turns, seed)
    turns = eval_set.turns
    wordings: Counter[str] = Counter()
    for q in of(eval_set, "context"):
        (i,) = idx.where(*q.keywords)
        s, answer, before = subject(q), turns[i], turns[i - 1]
        assert before.session == answer.session and before.turn == answer.turn - 1, q
        assert position(s, answer.content) < 0 and position(s, before.content) >= 0, q
        assert not any(position(p, answer.content) >= 0 for p in PEOPLE), q
        wordings[q.text.replace(s, "someone")] += 1
    assert max(wordings.values()) >= 2  # same wording: only the subject tells them apart


# -- a perfect system passes ---------------------------------------------------------------------

@pytest.mark.parametrize(("n_turns", "seed"), BUILDS)
def test_a_perfect_memory_passes_every_question(n_turns: int, seed: int) -> None:
    eval_set, idx = long_horizon(n_turns, seed), index(n_turns, seed)
    for q in eval_set.questions:
        if q.spread:
            facts = [eval_set.turns[idx.where(item)[0]].content for item in q.needed]
            assert retrieved(q, facts, k=len(facts)), q
            continue
        hits = idx.where(*q.needed)
        fact = eval_set.turns[hits[-1] if q.category == "current" else hits[0]].content
        assert retrieved(q, [fact]), q
        if q.category != "past":  # a past value's turn names the later value first
            assert answered(q, fact), (q, fact)


def test_a_stale_answer_fails() -> None:
    for q in of(long_horizon(), "current"):
        assert not answered(q, f"{q.stale[-1]}, formerly {q.keywords[0]}")
        assert answered(q, f"{q.keywords[0]} (it used to be {q.stale[-1]})")


# -- science -------------------------------------------------------------------------------------

def test_science_suite_three_questions_per_domain_each_in_one_lesson_turn() -> None:
    suite = science_suite()
    assert suite.name == "science" and suite == science_suite()
    assert len(suite.questions) == 15
    assert Counter(q.category for q in suite.questions) == {d: 3 for d in DOMAINS}
    lessons = Counter(t.session for t in suite.turns)
    assert lessons.keys() == {f"science-{d}" for d in DOMAINS}
    assert all(8 <= n <= 12 for n in lessons.values())
    idx = Index(suite.turns)
    for session, n in lessons.items():
        assert [t.turn for t in suite.turns if t.session == session] == list(range(n))
    for q in suite.questions:
        (i,) = idx.where(*q.keywords)  # exactly one turn answers it
        turn = suite.turns[i]
        assert turn.session == f"science-{q.category}", q
        assert retrieved(q, [turn.content]) and answered(q, turn.content), q
        assert q.text.endswith("?") and not q.spread and not q.stale
