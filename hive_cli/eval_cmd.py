"""The ``eval`` command: options and wiring; the work is in :mod:`hive_cli.evaluation`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from hive_cli import evaluation, operations
from hive_cli.errors import UsageProblem
from hive_cli.options import Json, name_check
from hive_cli.render import Renderer
from hive_cli.transport_factory import check_available
from hive_core.atomic import write_private
from hive_core.evaluation.dataset import EvalSet
from hive_core.hive_config import HiveConfig
from hive_core.semantic import installed as semantic_installed
from hive_core.transports.registry import names as transport_names


def eval_command(
    hive: Annotated[str | None, typer.Option(
        "--hive", callback=name_check("hive"),
        help="Evaluate this running hive (its agents learn the eval's turns first). "
             "Default: a throwaway hive built for the run.")] = None,
    agents: Annotated[int, typer.Option(
        min=1, max=200, help="Throwaway hive: number of agent processes.")] = 5,
    transport: Annotated[str, typer.Option(
        help="Throwaway hive: " + " | ".join(transport_names()))] = "local",
    connection_string: Annotated[str | None, typer.Option(
        help="Throwaway hive: broker connection string (never printed).")] = None,
    shard_backend: Annotated[str, typer.Option(help="Throwaway hive: kuzu | memory")] = "kuzu",
    semantic: Annotated[bool | None, typer.Option(
        "--semantic/--no-semantic", show_default="on when the [semantic] extra is installed",
        help="Throwaway hive: re-rank by meaning ([semantic] extra). --hive: its config's.")
    ] = None,
    suite: Annotated[str, typer.Option(help="science | long-horizon | all")] = "all",
    turns: Annotated[int, typer.Option(min=100, max=200_000,
                                       help="long-horizon: turns to generate.")] = 3000,
    questions: Annotated[int, typer.Option(min=1, max=5000,
                                           help="long-horizon: questions to ask.")] = 120,
    seed: Annotated[int, typer.Option(help="long-horizon: generator seed.")] = 7,
    limit: Annotated[int, typer.Option(min=1, max=100, help="Facts per answer (k).")] = 10,
    compare: Annotated[bool, typer.Option(
        help="Also ask a one-shard hive in this process (n1) and a central BM25.")] = True,
    learn: Annotated[bool, typer.Option(
        help="--hive: learn the eval's turns first (skip if already learned).")] = True,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds per question / start.")] =
        60.0,
    output: Annotated[Path | None, typer.Option(
        help="Also write the JSON report to this file.")] = None,
    json_out: Json = False,
) -> None:
    """Score the hive on built-in question sets: retrieval@k and answers per category.

    \b
    Examples:
      amplihack-hive eval                                  # 5 agents, throwaway, all suites
      amplihack-hive eval --agents 20 --suite long-horizon --json
      amplihack-hive eval --suite long-horizon --no-semantic  # lexical ranking only
      amplihack-hive eval --hive prod --no-learn --output report.json
    """
    evalsets = evaluation.build_suites(suite, turns, questions, seed)
    out = Renderer(json_out)
    if output is not None and not output.parent.is_dir():
        raise UsageProblem(f"--output {output}: folder {output.parent} does not exist")
    if hive is not None:
        config = HiveConfig.load(hive)
        check_available(config)
        label = f"hive {hive}"
        runs = _run(config, evalsets, compare, learn, limit, timeout, out)
    else:
        if semantic is None:  # as `create`: on where it can be
            semantic = semantic_installed()
        with out.progress("eval agents ready", agents) as bar, evaluation.throwaway_hive(
                agents, transport, connection_string, shard_backend, timeout, bar,
                semantic) as config:
            label = f"{agents} agents ({transport}, {shard_backend}" + (
                ", semantic)" if semantic else ")")
            runs = _run(config, evalsets, compare, True, limit, timeout, out)
    document = {"hive": label, "k": limit, "suites": [r.to_dict() for r in runs]}
    if output is not None:
        write_private(output, json.dumps(document, indent=2) + "\n")
    if json_out:
        out.json(document)
    else:
        out.eval_report(document)


def _run(config: HiveConfig, evalsets: list[EvalSet], compare: bool, learn: bool,
         limit: int, timeout: float, out: Renderer) -> list[evaluation.SuiteRun]:
    live = operations.require_live(config, None)
    runs = []
    systems = 3 if compare else 1
    baselines = evaluation.Baselines(config.semantic) if compare else None
    try:
        with operations.connected(config) as link:
            hive = evaluation.ProcessHive(link, live, timeout)
            for evalset in evalsets:
                facts = None
                if learn:
                    turns = [t.to_dict() for t in evalset.turns]
                    with out.progress(f"{evalset.name}: turns learned", len(turns)) as bar:
                        facts = evaluation.learn_into(link, live, turns, max(timeout, 120.0),
                                                      bar)
                with out.progress(f"{evalset.name}: answers",
                                  len(evalset.questions) * systems) as bar:
                    runs.append(evaluation.run_suite(evalset, hive, facts, baselines, limit,
                                                     bar))
    finally:
        if baselines is not None:
            baselines.close()
    return runs
