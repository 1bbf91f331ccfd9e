from __future__ import annotations

import pytest

from hive_core.facts import RETRACTED, HiveAgent, HiveEdge, HiveFact, fact_id_for


def test_fact_id_is_content_addressed_and_normalised() -> None:
    a = HiveFact("Project  Falcon ships in March", concept="Falcon")
    b = HiveFact("project falcon ships in march", concept="other", source_agent="x")
    assert a.fact_id == b.fact_id == fact_id_for("Project Falcon ships in March")
    assert a.content_hash == b.content_hash
    assert HiveFact("Project Falcon ships in April").fact_id != a.fact_id


@pytest.mark.parametrize(("given", "expected"), [(1.7, 1.0), (-0.2, 0.0), (0.42, 0.42)])
def test_confidence_is_clamped(given: float, expected: float) -> None:
    assert HiveFact("x is y", confidence=given).confidence == expected


@pytest.mark.parametrize(("given", "expected"), [(3.0, 2.0), (-1.0, 0.0), (1.5, 1.5)])
def test_agent_trust_is_clamped(given: float, expected: float) -> None:
    assert HiveAgent("a", trust=given).trust == expected


def test_fact_round_trips_as_plain_data() -> None:
    fact = HiveFact("CVE-2024-3094 hit 10.0.1.0/24", concept="INC-1", confidence=0.8,
                    source_agent="a1", tags=("sec", "cve"), created_at=123.5,
                    metadata={"episode": "e1", "n": [1, 2]})
    again = HiveFact.from_dict(fact.to_dict())
    assert again == fact
    assert again.metadata == fact.metadata
    assert again.tags == ("sec", "cve")


def test_invalid_facts_and_edges_are_rejected() -> None:
    with pytest.raises(ValueError):
        HiveFact("   ")
    with pytest.raises(ValueError):
        HiveFact("x", status="maybe")
    with pytest.raises(ValueError):
        HiveEdge("a", "b", "LIKES")


def test_retracted_copy_keeps_identity() -> None:
    fact = HiveFact("a fact")
    gone = fact.retracted()
    assert gone.status == RETRACTED and gone.fact_id == fact.fact_id and fact.status != RETRACTED
