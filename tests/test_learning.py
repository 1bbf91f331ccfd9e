"""The offline extractor: one fact per sentence or clause, values verbatim, main entities."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from agent_runtime.learning import (
    AnthropicExtractor,
    RuleBasedExtractor,
    episode_id,
    main_entity,
    make_extractor,
    parse_llm_facts,
    split_clauses,
    split_sentences,
)
from hive_core.errors import AgentError, ConfigError

TURN = (
    "Incident INC-2041 was caused by CVE-2024-3094 in xz-utils 5.6.0. "
    "It was patched on 2024-03-29, and its blast radius covered 10.0.1.0/24; "
    "the on-call was Dr. Maya Patel. Alice, Bob, and Carol joined the review on Mar. 30. "
    "What should we do next? Thanks!\n"
    "- The Q3 budget grew by 3.5% to $4.7M after Kubernetes moved to v1.29."
)


def contents(turn: str) -> list[str]:
    return [f.content for f in RuleBasedExtractor().extract(turn)]


def test_one_fact_per_sentence_or_clause() -> None:
    assert contents(TURN) == [
        "Incident INC-2041 was caused by CVE-2024-3094 in xz-utils 5.6.0.",
        "Incident INC-2041 was patched on 2024-03-29.",
        "Incident INC-2041's blast radius covered 10.0.1.0/24.",
        "The on-call was Dr. Maya Patel.",
        "Alice, Bob, and Carol joined the review on Mar. 30.",
        "The Q3 budget grew by 3.5% to $4.7M after Kubernetes moved to v1.29.",
    ]


def test_numbers_identifiers_and_dates_are_preserved() -> None:
    text = " ".join(contents(TURN))
    for value in ("INC-2041", "CVE-2024-3094", "xz-utils", "5.6.0", "2024-03-29",
                  "10.0.1.0/24", "Mar. 30", "3.5%", "$4.7M", "v1.29", "Q3"):
        assert value in text


def test_sentence_splitting_respects_abbreviations_and_versions() -> None:
    assert split_sentences("Dr. Patel shipped v1.29.3 on Jan. 5. E.g. rollouts. Done now.") == [
        "Dr. Patel shipped v1.29.3 on Jan. 5.", "E.g. rollouts.", "Done now."]
    assert split_sentences("- first item here\n2) second item here") == [
        "first item here", "second item here"]


def test_clauses_split_only_between_real_clauses() -> None:
    assert split_clauses("The deadline moved to 2024-06-01, and the budget grew to $4.7M.") == [
        "The deadline moved to 2024-06-01.", "The budget grew to $4.7M."]
    one = "Alice, Bob, and Carol joined the Atlas review."
    assert split_clauses(one) == [one]


@pytest.mark.parametrize(("sentence", "entity"), [
    ("Alice Chen leads the Atlas project.", "Alice Chen"),
    ("Incident INC-2041 was caused by CVE-2024-3094.", "Incident INC-2041"),
    ("The Atlas project deadline moved to 2024-06-01.", "Atlas"),
    ("CVE-2024-3094 was patched on 2024-03-29.", "CVE-2024-3094"),
    ("Subnet 10.0.1.0/24 hosts the payment gateway.", "Subnet 10.0.1.0/24"),
    ("The payment gateway p95 latency is 180 ms.", "payment gateway p95"),
    ("The Q3 budget for Atlas is $4.7M.", "Atlas"),
    ("Yesterday Alice met Bob.", "Alice"),
    ("On March 3, 2024 the team shipped release 2.4.", "team"),
    ("The on-call was Dr. Maya Patel.", "Dr. Maya Patel"),
])
def test_concept_is_the_main_entity(sentence: str, entity: str) -> None:
    assert main_entity(sentence) == entity
    [fact] = RuleBasedExtractor().extract(sentence)
    assert fact.concept == entity


def test_pronoun_sentences_carry_the_subject_and_share_the_episode() -> None:
    facts = RuleBasedExtractor().extract(
        "CVE-2024-3094 affects xz-utils 5.6.0. It was patched on 2024-03-29. "
        "This patch fixes the backdoor.")
    assert [f.content for f in facts] == [
        "CVE-2024-3094 affects xz-utils 5.6.0.",
        "CVE-2024-3094 was patched on 2024-03-29.",
        "This patch fixes the backdoor.",  # a demonstrative with its own noun is kept
    ]
    assert [f.concept for f in facts[:2]] == ["CVE-2024-3094"] * 2
    assert {f.metadata["episode"] for f in facts} == {episode_id(
        "CVE-2024-3094 affects xz-utils 5.6.0. It was patched on 2024-03-29. "
        "This patch fixes the backdoor.")}
    assert [f.metadata["position"] for f in facts] == [0, 1, 2]
    assert all(f.source_agent == "" and f.confidence < 0.9 for f in facts)


def test_questions_filler_and_dangling_pronouns_are_not_facts() -> None:
    assert contents("What is the deadline? Thanks! It works.") == []


def test_a_pronoun_turn_whose_subject_is_in_another_turn_is_kept_as_said() -> None:
    # The neighbouring turn names her; retrieval joins the two (hive_core.context).
    assert contents("She mentioned that her sister is called Anneliese.") == [
        "She mentioned that her sister is called Anneliese."]


def test_extraction_is_deterministic() -> None:
    a, b = RuleBasedExtractor().extract(TURN), RuleBasedExtractor().extract(TURN)
    assert [f.to_dict() | {"created_at": 0} for f in a] == [
        f.to_dict() | {"created_at": 0} for f in b]


class StubMessages:
    def __init__(self, text: str) -> None:
        self.text = text
        self.calls: list[dict] = []

    def create(self, **kwargs):
        self.calls.append(kwargs)
        return SimpleNamespace(content=[SimpleNamespace(type="text", text=self.text)])


def test_anthropic_extractor_parses_the_model_answer_without_network() -> None:
    messages = StubMessages('Here: [{"content": "INC-2041 was caused by CVE-2024-3094.", '
                            '"concept": "INC-2041"}]')
    extractor = AnthropicExtractor(SimpleNamespace(messages=messages), model="m",
                                   prompt="security analyst")
    [fact] = extractor.extract("INC-2041 was caused by CVE-2024-3094.")
    assert (fact.content, fact.concept) == ("INC-2041 was caused by CVE-2024-3094.", "INC-2041")
    assert fact.metadata["episode"] == episode_id("INC-2041 was caused by CVE-2024-3094.")
    assert messages.calls[0]["model"] == "m" and "security analyst" in messages.calls[0]["system"]


def test_a_bad_model_answer_raises_instead_of_falling_back() -> None:
    with pytest.raises(AgentError):
        parse_llm_facts("I could not find any facts.")
    with pytest.raises(AgentError):
        parse_llm_facts('[{"concept": "x"}]')


def test_extractor_choice_follows_the_api_key() -> None:
    assert isinstance(make_extractor({}), RuleBasedExtractor)
    try:
        import anthropic  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="anthropic"):
            make_extractor({"ANTHROPIC_API_KEY": "sk-test"})
    else:
        assert isinstance(make_extractor({"ANTHROPIC_API_KEY": "sk-test"}), AnthropicExtractor)


def test_a_turn_is_hashed_once_however_many_facts_it_has(monkeypatch) -> None:
    """The episode id is computed once per turn: hashing the whole turn again for each of
    its facts made extraction quadratic (100 KB took 6.8 s, now 0.08 s)."""
    from agent_runtime import learning

    calls: list[int] = []
    real = learning.content_hash

    def counting(text: str) -> str:
        calls.append(len(text))
        return real(text)

    monkeypatch.setattr(learning, "content_hash", counting)
    turn = " ".join(f"Service svc-{i} runs on host h{i}." for i in range(300))
    facts = learning.RuleBasedExtractor().extract(turn)
    assert len(facts) == 300 and calls == [len(turn)]
    assert {f.metadata["episode"] for f in facts} == {learning.episode_id(turn)}
