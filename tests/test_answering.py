"""The extractive answerer: one line of the best facts, their sources beside it."""

from __future__ import annotations

from agent_runtime.answering import NO_ANSWER, ExtractiveAnswerer
from hive_core.facts import HiveFact
from hive_core.search import SearchResult


def result(scored: list[tuple[str, str, float]], failed: list[str] | None = None):
    facts = [HiveFact(content=c, source_agent=a) for c, a, _ in scored]
    return SearchResult(facts=facts, scores=[s for *_, s in scored],
                        shards_failed=failed or [])


def test_answer_is_one_line_of_the_best_facts_and_names_its_sources() -> None:
    res = result([
        ("CVE-2024-3094 was patched on 2024-03-29.", "a0", 12.0),
        ("CVE-2024-3094 affects xz-utils 5.6.0", "a2", 9.0),
        ("The patch window is Sunday.", "a1", 2.0),  # far below the best: left out
    ])
    answer = ExtractiveAnswerer().answer("When was CVE-2024-3094 patched?", res)
    assert answer.text == ("CVE-2024-3094 was patched on 2024-03-29. "
                           "CVE-2024-3094 affects xz-utils 5.6.0.")
    assert answer.sources == [0, 1]
    assert "a0" not in answer.text and res.facts[0].fact_id not in answer.text


def test_answer_is_capped_and_says_when_nothing_matched() -> None:
    res = result([(f"Fact number {i} about Atlas.", "a0", 5.0) for i in range(6)])
    assert len(ExtractiveAnswerer(max_facts=2).answer("Atlas?", res).sources) == 2
    nothing = ExtractiveAnswerer().answer("anything?", SearchResult())
    assert nothing.text == NO_ANSWER and nothing.sources == []


def test_a_partial_search_does_not_change_the_answer_text() -> None:
    """Partial results are reported beside the answer (partial, shards_failed), and the
    CLI prints them; the answer line stays what the facts say."""
    res = result([("Atlas ships in June.", "a0", 3.0)], failed=["a4"])
    assert ExtractiveAnswerer().answer("When does Atlas ship?", res).text == \
        "Atlas ships in June."


def test_the_best_facts_episode_comes_with_it() -> None:
    turn = {"episode": "e-17"}
    facts = [
        HiveFact("INC-2041 was caused by CVE-2024-3094.", source_agent="a0", metadata=turn),
        HiveFact("Atlas ships in June.", source_agent="a1", metadata={"episode": "e-2"}),
        HiveFact("The IOCs of INC-2041 are 10.0.1.7 and evil.example.", source_agent="a0",
                 metadata=turn),
    ]
    res = SearchResult(facts=facts, scores=[10.0, 6.0, 1.0])
    answerer = ExtractiveAnswerer()
    assert answerer.chosen(res) == [0, 2, 1]  # the same turn's low-scoring IOC fact is kept
    assert answerer.chosen(SearchResult(facts=facts[:2], scores=[10.0, 6.0])) == [0, 1]


def test_facts_about_other_named_things_are_left_out() -> None:
    res = result([
        ("Project Osprey is led by Hannah Schmidt.", "a3", 30.0),
        ("Maria Okafor leads Project Heron.", "a0", 26.0),  # close score, other project
        ("Osprey's pilot moved 14 jobs to Temporal.", "a4", 25.0),
        ("Project Kestrel builds the onboarding flow.", "a2", 12.0),
    ])
    answerer = ExtractiveAnswerer()
    assert answerer.chosen(res, "Who leads Project Osprey?") == [0, 2]
    assert answerer.chosen(res, "who leads it?") == [0, 1, 2]  # no names: scores decide
