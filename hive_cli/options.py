"""The options several commands share, typed once (Typer reads the annotations)."""

from __future__ import annotations

import math
from typing import Annotated, Any

import typer

from hive_cli.errors import UsageProblem
from hive_core.errors import ConfigError, HiveError
from hive_core.hive_config import HiveConfig, hive_names, validate_name


def name_check(kind: str):
    def check(value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return validate_name(kind, value)
        except ConfigError as exc:
            raise typer.BadParameter(str(exc)) from exc
    return check


def agent_list(value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [n.strip() for n in value.split(",")]
    if not any(names) or not all(names):
        raise typer.BadParameter("give agent names separated by commas, e.g. agent_0,agent_1")
    try:
        return [validate_name("agent", n) for n in names]
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from exc


def refuse_non_finite(command: Any) -> Any:
    """Make every subcommand of ``command`` refuse ``nan`` and ``inf`` for a number option.

    Typer checks a float option's ``min`` (nan fails it) but has no upper bound by default,
    so ``--timeout inf`` would wait forever; checking the parsed values once here covers
    every command's options, present and future. Returns ``command``.
    """
    for sub in getattr(command, "commands", {}).values():
        refuse_non_finite(sub)
        parsed = sub.invoke

        def invoke(ctx: Any, _parsed: Any = parsed) -> Any:
            for key, value in ctx.params.items():
                if isinstance(value, float) and not math.isfinite(value):
                    raise UsageProblem(f"--{key.replace('_', '-')} must be a finite number "
                                       f"(got {value})")
            return _parsed(ctx)

        sub.invoke = invoke
    return command


def complete_hive(incomplete: str) -> list[str]:
    """Shell completion: the hives under $AMPLIHACK_HOME that start with what was typed."""
    return [name for name in hive_names() if name.startswith(incomplete)]


def complete_agent(ctx: typer.Context, incomplete: str) -> list[str]:
    """Shell completion: the agents of the --hive given so far (none before --hive)."""
    hive = ctx.params.get("hive")
    if not hive:
        return []
    try:
        names = HiveConfig.load(hive).agent_names()
    except HiveError:
        return []
    done, _, last = incomplete.rpartition(",")  # --agents a,b,<TAB>
    prefix = f"{done}," if done else ""
    taken = set(done.split(","))
    return [prefix + n for n in names if n.startswith(last) and n not in taken]


def default_hive() -> str:
    """``--hive`` when it is not given and $AMPLIHACK_HIVE is not set: the only hive there
    is (a tool with one project needs no name); "" when there is none or several, which
    :func:`hive_check` turns into one line saying what to give (a default that raised would
    also break shell completion, which reads defaults)."""
    known = hive_names()
    return known[0] if len(known) == 1 else ""


def hive_check(value: str | None) -> str | None:
    if value == "":
        known = hive_names()
        if not known:
            raise UsageProblem("no hive exists yet: create one (amplihack-hive create "
                               "--name N)")
        shown = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
        raise UsageProblem(f"give --hive NAME or set AMPLIHACK_HIVE ({len(known)} hives: "
                           f"{shown})")
    return name_check("hive")(value)


Hive = Annotated[str, typer.Option(
    "--hive", help="Hive name (default: $AMPLIHACK_HIVE, or the only hive there is).",
    envvar="AMPLIHACK_HIVE", default_factory=default_hive, show_default=False,
    callback=hive_check, autocompletion=complete_hive)]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
AgentOpt = Annotated[str | None, typer.Option(
    "--agent", help="Agent name.", callback=name_check("agent"),
    autocompletion=complete_agent)]
AgentsOpt = Annotated[str | None, typer.Option(
    "--agents", help="Comma-separated agent names (default: all).",
    autocompletion=complete_agent)]


def usage(fn):
    """Run ``fn``; a ConfigError from values typed on the command line is a usage error."""
    try:
        return fn()
    except ConfigError as exc:
        raise UsageProblem(str(exc)) from exc
