"""The relation re-rank (hive_core.semantic.rerank, the semantic path's default): name
stripping, the score against a hand-computed reference, parity between hive sizes, and on the
long-horizon eval with the real model, the gain over BM25 alone.

References: the stripped texts are written out by hand; the bonus is a float cosine of a
hand-made concept embedder (names on their own, dominating axis, as in a static embedding)
times ``weight * sum of the question's term weights``, added to the lexical-only score.
"""

from __future__ import annotations

import math
import re

import pytest
from semantic_helpers import require_model

from agent_runtime.answering import ExtractiveAnswerer
from agent_runtime.inprocess import InProcessHive
from hive_core.distributed import DistributedHiveGraph
from hive_core.errors import ConfigError
from hive_core.evaluation.longhorizon import build_long_horizon
from hive_core.evaluation.runner import SystemReport, evaluate
from hive_core.facts import HiveFact
from hive_core.query import parse
from hive_core.semantic import semantic_index
from hive_core.semantic.relation import fact_text, question_text
from hive_core.semantic.rerank import RelationRerank, holds
from hive_core.semantic.retrieval import SemanticIndex


# -- what is embedded --------------------------------------------------------------------------
@pytest.mark.parametrize(("question", "want"), [
    ("How many pets does Victor Lindqvist have?", "pets have"),
    ("What is Lars Eriksen's job?", "job"),
    ("In which city is Mei Tanaka's home?", "In city home"),
    ("List the languages Diego Alvarez is studying.", "languages studying"),
    ("What did Ingrid Novak name her new dog?", "name her new dog"),
])
def test_a_question_loses_its_names_and_question_words(question: str, want: str) -> None:
    assert question_text(question, parse(question).anchors) == want


def test_a_fact_loses_every_capitalised_word_or_only_the_names_it_shares() -> None:
    fact = "Victor Lindqvist adopted a hamster named Toffee."
    assert fact_text(fact, None) == "adopted a hamster named"
    assert fact_text(fact, frozenset({"victor", "lindqvist"})) == "adopted a hamster named Toffee"
    assert fact_text("Mei Tanaka's home is in Dublin.", frozenset({"mei", "tanaka"})) == \
        "home is in Dublin"
    assert holds(HiveFact(content=fact), frozenset({"victor", "lindqvist"}))
    assert not holds(HiveFact(content="Victor Hugo adopted a cat."),
                     frozenset({"victor", "lindqvist"}))


def test_bad_relation_settings_are_refused() -> None:
    for bad in ({"pool": 0}, {"weight": -1.0}, {"weight": float("nan")}, {"names": "some"},
                {"group_cosine": 1.5}, {"group_cosine": float("nan")}):
        with pytest.raises(ConfigError, match="relation re-rank"):
            RelationRerank(**bad)


# -- ranking against a reference ---------------------------------------------------------------
class _Names:
    """Concept axes; a name is its own heavy axis, as rare words dominate a static embedding."""

    name = "names"
    AXES = ({"victor", "lindqvist"}, {"maria", "lopez"}, {"pets", "hamster", "adopted", "cat"},
            {"moved", "oslo", "lives"}, {"chess", "club", "joined"})
    HEAVY = 2  # the first two axes (names) weigh 5 per word

    def embed(self, texts):
        out = []
        for text in texts:
            words = re.findall(r"[a-z]+", text.lower())
            vec = [float(sum(w in axis for w in words)) * (5.0 if i < self.HEAVY else 1.0)
                   for i, axis in enumerate(self.AXES)]
            out.append([*vec, 0.1])
        return out


TARGET = "Victor Lindqvist adopted a hamster named Toffee."
OTHER = "Maria Lopez adopted two pets named Pip and Pop."
FACTS = [TARGET, OTHER, "Victor Lindqvist moved to Oslo.",
         "Victor Lindqvist joined the chess club.", "Victor Lindqvist lives near the harbour.",
         "Victor Lindqvist likes the rain."]
QUESTION = "Does Victor Lindqvist have pets?"


def _graph(n: int, semantic: SemanticIndex | None,
           facts: list[str] = FACTS) -> DistributedHiveGraph:
    graph = DistributedHiveGraph("rel", replication_factor=2)
    graph.semantic = semantic
    for i in range(n):
        graph.register_agent(f"a{i}")
    graph.promote_facts("a0", [HiveFact(content=c) for c in facts])
    return graph


def _cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(
        sum(x * x for x in a) * sum(y * y for y in b))


@pytest.mark.parametrize("subject_only", [True, False])
def test_the_subjects_paraphrase_is_pulled_up_by_the_reference_bonus(subject_only: bool) -> None:
    embedder = _Names()
    settings = RelationRerank(pool=10, weight=1.0, subject_only=subject_only)
    lexical, one, five = (_graph(1, None), _graph(1, SemanticIndex(embedder, relation=settings)),
                          _graph(5, SemanticIndex(embedder, relation=settings)))
    try:
        base = lexical.search(QUESTION, 10, asking_agent="a0")
        assert base.facts[0].content != TARGET  # BM25 alone: a shorter fact about Victor wins
        bm25 = {f.content: s for f, s in zip(base.facts, base.scores, strict=True)}
        scale = sum(base.weights.values())
        q = embedder.embed(["have pets"])[0]
        want = {}
        for text, score in bm25.items():
            gains = not subject_only or "Victor Lindqvist" in text
            stripped = " ".join(w for w in text.split() if not w[:1].isupper())
            want[text] = score + (scale * _cos(q, embedder.embed([stripped])[0]) if gains else 0)
        a = one.search(QUESTION, 10, asking_agent="a0")
        b = five.search(QUESTION, 10, asking_agent="a3")
        # Without subject_only, another person's same-shaped sentence (which also matches
        # "pets") takes the top: what subject_only is for.
        assert a.facts[0].content == (TARGET if subject_only else OTHER)
        assert {f.content: s for f, s in zip(a.facts, a.scores, strict=True)} == pytest.approx(
            want, abs=0.03 * scale)  # int8 against float cosine
        assert [f.fact_id for f in a.facts] == [f.fact_id for f in b.facts] and a.scores == b.scores
        assert len(b.shards_searched) <= five.settings.query_fanout
        assert (want[OTHER] == bm25[OTHER]) is subject_only  # another person's fact: no gain
    finally:
        for graph in (lexical, one, five):
            graph.close()


# -- the group of a gathering question ---------------------------------------------------------
COUNTED = "How many pets does Victor Lindqvist have?"  # name-free: "pets have"
HAMSTER = "Victor Lindqvist adopted a hamster named Toffee."  # no relation word: meaning only
GROUP_FACTS = [HAMSTER,
               "Victor Lindqvist has a pet rabbit named Olive.",  # says "pet": joins lexically
               "Victor Lindqvist flew to Austin for a conference.",
               "Victor Lindqvist moved to Oslo.",
               "Maria Lopez adopted a cat named Pip."]  # not the subject: never in the group
# Hand-computed float cosines with "pets have" under _Names, of the facts without names:
# "adopted a hamster named" (pets axis twice), "flew to for a conference" (the constant
# only, as "has a pet rabbit named"), "moved to" (the moves axis).
REFERENCE = {HAMSTER: 2.01 / math.sqrt(1.01 * 4.01), GROUP_FACTS[1]: 0.01 / 1.01 / 0.1,
             GROUP_FACTS[2]: 0.01 / 1.01 / 0.1, GROUP_FACTS[3]: 0.01 / 1.01}


@pytest.mark.parametrize(("group_cosine", "want"), [
    (None, {"Olive"}),  # the group stays lexical, as without semantic
    (0.5, {"Toffee", "Olive"}),  # the hamster (0.997) joins; Austin (0.099) does not
    (0.05, {"Toffee", "Olive", "Austin"}),  # a threshold too low lets the trip in
])
def test_a_fact_joins_the_group_by_its_relation_cosine(group_cosine: float | None,
                                                       want: set[str]) -> None:
    settings = RelationRerank(pool=10, group_cosine=group_cosine)
    graphs = {n: _graph(n, SemanticIndex(_Names(), relation=settings), GROUP_FACTS)
              for n in (1, 5)}
    lexical = _graph(1, None, GROUP_FACTS)
    try:
        plain = lexical.search(COUNTED, 10, asking_agent="a0")
        assert plain.items == ["Olive"] and plain.related == {}  # the lexical path: as before
        one, five = (graphs[1].search(COUNTED, 10, asking_agent="a0"),
                     graphs[5].search(COUNTED, 10, asking_agent="a4"))
        assert set(one.items) == want and len(one.items) == len(want)
        assert one.items == five.items and one.related == five.related
        assert ExtractiveAnswerer().answer(COUNTED, one).text.startswith(f"{len(want)}: ")
        content = {f.fact_id: f.content for f in one.facts}
        related = {content[i]: c for i, c in one.related.items()}
        expected = {t for t, c in REFERENCE.items()
                    if group_cosine is not None and c >= group_cosine}
        assert set(related) == expected
        assert related == pytest.approx({t: REFERENCE[t] for t in expected}, abs=0.02)
    finally:
        for graph in (*graphs.values(), lexical):
            graph.close()


# -- the long-horizon eval with the real model -------------------------------------------------
def _seed7_reports(hives: dict[str, InProcessHive]) -> dict[str, SystemReport]:
    """Each in-process hive learns the long-horizon set (seed 7) and answers it; closed."""
    evalset = build_long_horizon(3000, 240, 7)
    try:
        for hive in hives.values():
            hive.learn([t.to_dict() for t in evalset.turns])
        return {r.name: r for r in evaluate(evalset, hives, k=10)}
    finally:
        for hive in hives.values():
            hive.close()


def test_on_the_long_horizon_eval_the_re_rank_beats_bm25_by_three_points() -> None:
    """Measured +7.9 / +9.1 / +11.3 points on seeds 7 / 11 / 23 (bench.eval_quality); three is
    the bar the default was chosen on, and the hive sizes must still agree."""
    require_model()

    index = semantic_index()
    reports = _seed7_reports({"bm25": InProcessHive(1), "one": InProcessHive(1, semantic=index),
                              "four": InProcessHive(4, semantic=index)})
    bm25, one, four = (reports[n].overall().retrieval_pct for n in ("bm25", "one", "four"))
    assert one >= bm25 + 3.0, (bm25, one)
    assert [o.retrieved for o in reports["one"].outcomes] == \
        [o.retrieved for o in reports["four"].outcomes]
    assert four == one


def test_on_the_long_horizon_eval_meaning_completes_the_counts_and_lists() -> None:
    """Measured on seed 7: count answers 4.8% -> 33.3%, list 9.5% -> 57.1% with the group
    decided by meaning too (seeds 11, 23, 31, 41: 0-9.5% -> 24-38% and 5-19% -> 52-57%);
    the same judgement finds the newest version of a value said in other words: current
    values 58.3% -> 79.2% (hive_core.versions)."""
    require_model()
    from hive_core.semantic.embedder import open_embedder

    embedder = open_embedder()
    lexical_group = SemanticIndex(embedder, relation=RelationRerank(group_cosine=None))
    index = SemanticIndex(embedder)
    reports = _seed7_reports({"lexical": InProcessHive(1, semantic=lexical_group),
                              "one": InProcessHive(1, semantic=index),
                              "four": InProcessHive(4, semantic=index)})
    before, after = reports["lexical"].by_category(), reports["one"].by_category()
    assert after["count"].answer_pct >= before["count"].answer_pct + 15.0
    assert after["list"].answer_pct >= before["list"].answer_pct + 25.0
    assert after["current"].answer_pct >= before["current"].answer_pct + 15.0
    for cat in set(after) - {"count", "list", "current"}:  # nothing else changes
        assert after[cat].answer_pct == before[cat].answer_pct, cat
    assert [o.answered for o in reports["one"].outcomes] == \
        [o.answered for o in reports["four"].outcomes]


# -- versions stated in other words ---------------------------------------------------------------
class _Attributes:
    """Concept axes for the attributes of a project (names never reach an embedder here: the
    relation texts leave them out)."""

    name = "attributes"
    AXES = ({"deadline", "due", "slipped", "moved"}, {"led", "leads", "lead"})

    def embed(self, texts):
        return [[float(sum(w in axis for w in re.findall(r"[a-z]+", t.lower())))
                 for axis in self.AXES] + [0.01] for t in texts]


DEADLINES = [  # (day, fact): the newest deadline does not say "deadline"
    (1, "The deadline for Project Heron is 2026-02-25."),
    (2, "Project Heron's deadline moved to 2026-04-14."),
    (3, "Project Heron slipped again and is now due on 2026-06-29."),
    (4, "Project Heron is now led by Arjun Mehta."),  # newer still, another attribute
    (4, "Project Heron had a long retro."),
]


@pytest.mark.parametrize("agents", [1, 5])
def test_a_current_value_stated_in_other_words_is_the_newest_version(agents: int) -> None:
    """Lexically only the facts that say "deadline" are versions, so the answer was the
    superseded 2026-04-14; with the re-rank, the fact it judged to state the deadline in
    other words is one too, and the newest."""
    question = "What is the current deadline of Project Heron?"
    results = {}
    for name, semantic in (("lexical", None),
                           ("semantic", SemanticIndex(_Attributes(),
                                                      relation=RelationRerank(pool=10)))):
        graph = DistributedHiveGraph("ver", replication_factor=2)
        graph.semantic = semantic
        for i in range(agents):
            graph.register_agent(f"a{i}")
        graph.promote_facts("a0", [HiveFact(content=text, created_at=day * 86_400.0)
                                   for day, text in DEADLINES])
        try:
            result = graph.search(question, 10, asking_agent=f"a{agents - 1}")
            results[name] = ExtractiveAnswerer().answer(question, result).text
        finally:
            graph.close()
    assert results["lexical"].startswith("Project Heron's deadline moved to 2026-04-14.")
    assert results["semantic"].startswith(
        "Project Heron slipped again and is now due on 2026-06-29.")
    assert "2026-04-14" in results["semantic"]  # the one it replaced is named
    assert "Arjun Mehta" not in results["semantic"]
