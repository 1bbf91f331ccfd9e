"""Answer quality on the built-in long-horizon eval, in-process, at several hive sizes.

    python -m bench.eval_quality --agents 1,100 --turns 3000 --questions 240

The same questions go to a central BM25 over all turns and to in-process hives of each size
(the agents' own extraction, routed search and answerer; only the transport is in-process,
so this measures ranking, not messaging -- ``amplihack-hive eval`` runs agent processes).
Prints retrieval@10 and answer accuracy per category, whether every hive size returned the
same top-10 as the first, shards asked, query latency and the facts each agent holds.
``--semantic`` turns on hive_core.semantic (the [semantic] extra) in every hive size: the
lexical pool re-ranked by vectors without names (``--relation``, ``--relation-pool``,
``--gather-pool``, ``--relation-weight``, ``--all-facts``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from agent_runtime.inprocess import InProcessHive
from hive_core.errors import ConfigError
from hive_core.evaluation.central import CentralBm25
from hive_core.evaluation.longhorizon import build_long_horizon
from hive_core.evaluation.runner import Reply, SystemReport, evaluate, percentile
from hive_core.evaluation.science import science_suite
from hive_core.semantic.embedder import EMBEDDERS, open_embedder
from hive_core.semantic.rerank import NAMES, RelationRerank
from hive_core.semantic.retrieval import RELATION, SemanticIndex


class _Recording:
    """A system that keeps its replies, for the parity check between hive sizes."""

    def __init__(self, system: InProcessHive | CentralBm25) -> None:
        self.system, self.replies = system, []

    def ask(self, question: str, k: int) -> Reply:
        reply = self.system.ask(question, k)
        self.replies.append(reply)
        return reply


def _table(reports: Sequence[SystemReport]) -> None:
    names = [r.name for r in reports]
    cats = list(reports[0].by_category())
    print(f"{'category':<12} {'n':>4} " + " ".join(f"{n + ' R@10':>14} {'ans':>5}" for n in names))
    for cat in [*cats, "all"]:
        cells = []
        for r in reports:
            s = r.overall() if cat == "all" else r.by_category()[cat]
            cells.append(f"{s.retrieval_pct:>14.1f} {s.answer_pct:>5.1f}")
        n = reports[0].overall().n if cat == "all" else reports[0].by_category()[cat].n
        print(f"{cat:<12} {n:>4} " + " ".join(cells))


def _semantic(args: argparse.Namespace) -> SemanticIndex:
    try:
        relation = RelationRerank(args.relation_pool, args.relation_weight, args.relation,
                                  not args.all_facts, args.gather_pool)
        return SemanticIndex(open_embedder(args.embedder), relation)
    except ConfigError as exc:
        raise SystemExit(f"eval_quality: {exc}") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", default="1,100", help="hive sizes, comma-separated")
    parser.add_argument("--turns", type=int, default=3000)
    parser.add_argument("--questions", type=int, default=240)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--suite", choices=("long-horizon", "science"), default="long-horizon")
    parser.add_argument("--semantic", action="store_true",
                        help="re-rank by meaning (needs the [semantic] extra)")
    parser.add_argument("--embedder", default="wordllama", choices=sorted(EMBEDDERS))
    parser.add_argument("--relation", default=RELATION.names, choices=NAMES,
                        help="semantic: re-rank the lexical pool by vectors without names "
                        "(a fact's capitalised words: all, or those shared with the "
                        "question)")
    parser.add_argument("--relation-pool", type=int, default=RELATION.pool)
    parser.add_argument("--gather-pool", type=int, default=RELATION.gather_pool)
    parser.add_argument("--relation-weight", type=float, default=RELATION.weight)
    parser.add_argument("--all-facts", action="store_true",
                        help="relation re-rank: facts without the question's names gain too")
    args = parser.parse_args(argv)
    semantic = _semantic(args) if args.semantic else None
    sizes = [int(x) for x in args.agents.split(",")]
    evalset = (science_suite() if args.suite == "science" else
               build_long_horizon(args.turns, args.questions, args.seed))
    turns = [t.to_dict() for t in evalset.turns]
    systems: dict[str, _Recording] = {"central": _Recording(CentralBm25(evalset.turns))}
    hives: list[InProcessHive] = []
    try:
        for n in sizes:
            hive = InProcessHive(n, semantic=semantic)
            hives.append(hive)
            t0 = time.perf_counter()
            stored = hive.learn(turns)
            per_agent = hive.facts_per_agent()
            print(f"N={n}: {len(turns)} turns -> {stored} facts in "
                  f"{time.perf_counter() - t0:.1f}s; facts held per agent: mean "
                  f"{sum(per_agent) / len(per_agent):.0f} "
                  f"({100.0 * sum(per_agent) / len(per_agent) / stored:.1f}% of all)")
            systems[f"N={n}"] = _Recording(hive)
        if semantic is not None:
            print(f"semantic {semantic.embedder.name} {semantic.relation}")
        reports = evaluate(evalset, systems, k=10)
        print(f"\n{evalset.name}: {len(evalset.questions)} questions, seed {args.seed}, "
              f"{len(evalset.turns)} turns")
        _table(reports)
        first = f"N={sizes[0]}"
        for r in reports:
            ms = [o.seconds * 1000.0 for o in r.outcomes]
            shards = [o.shards for o in r.outcomes]
            same = ""
            if r.name.startswith("N=") and r.name != first:
                a, b = systems[first].replies, systems[r.name].replies
                equal = sum(x.facts == y.facts and x.answer == y.answer
                            for x, y in zip(a, b, strict=True))
                same = f", identical to {first}: {equal}/{len(a)}"
            print(f"{r.name}: shards asked median {percentile(shards, 50):g} max "
                  f"{max(shards)}, query p50 {percentile(ms, 50):.2f} ms p95 "
                  f"{percentile(ms, 95):.2f} ms{same}")
    finally:
        for hive in hives:
            hive.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
