"""The benchmark's corpus is reproducible and its answers are right; the benchmark measures the
engine's behaviour properties (N shards answer like one). No timing is asserted here."""

from __future__ import annotations

import pytest

from bench.core import main, run_benchmark
from bench.corpus import build_corpus


def test_same_seed_same_corpus_other_seed_other_corpus() -> None:
    a, b = build_corpus(500, 60, seed=3), build_corpus(500, 60, seed=3)
    assert [f.content for f in a.facts] == [f.content for f in b.facts]
    assert [f.created_at for f in a.facts] == [f.created_at for f in b.facts]
    assert [(q.text, q.expected) for q in a.questions] == [
        (q.text, q.expected) for q in b.questions
    ]
    other = build_corpus(500, 60, seed=4)
    assert [f.content for f in other.facts] != [f.content for f in a.facts]


def test_size_unique_ids_and_every_expected_fact_exists() -> None:
    corpus = build_corpus(2000, 200, seed=7)
    ids = [f.fact_id for f in corpus.facts]
    assert len(ids) == 2000
    assert len(set(ids)) == len(ids)
    assert len(corpus.questions) == 200
    known = set(ids)
    for q in corpus.questions:
        assert q.expected and set(q.expected) <= known, q.text
    kinds = {q.kind for q in corpus.questions}
    assert {"deadline-current", "incident-cve", "metric-latency", "log"} <= kinds


def test_current_deadline_question_expects_the_latest_deadline_fact() -> None:
    corpus = build_corpus(3000, 400, seed=11)
    by_id = {f.fact_id: f for f in corpus.facts}
    checked = 0
    for q in corpus.questions:
        if q.kind != "deadline-current":
            continue
        expected = by_id[q.expected[0]]
        (code,) = expected.tags
        chain = [f for f in corpus.facts if f.concept == "project deadline" and f.tags == (code,)]
        assert expected.created_at == max(f.created_at for f in chain)
        assert chain[-1] is expected  # later facts supersede earlier ones, in corpus order too
        checked += 1
    assert checked > 0


def test_tiny_run_answers_like_one_memory_through_few_shards() -> None:
    m = run_benchmark(agents=5, facts=300, questions=30, seed=7)
    assert m["facts"] == 300 and m["questions"] == 30
    assert m["identical_top10_pct"] == 100.0
    assert m["recall10_n"] == m["recall10_1"] and m["mrr_n"] == m["mrr_1"]
    assert m["shards_median"] <= 5
    assert m["shards_max"] <= 5
    assert m["partial_results"] == 0
    assert m["replica_facts"] == 300 * 3
    assert m["targets"]["identical top-10 at N and 1 >= 99%"] is True


def test_bad_arguments_are_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--agents", "0"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--agents" in err
