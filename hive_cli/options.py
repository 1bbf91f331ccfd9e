"""The options several commands share, typed once (Typer reads the annotations)."""

from __future__ import annotations

from typing import Annotated

import typer

from hive_cli.errors import UsageProblem
from hive_core.errors import ConfigError
from hive_core.hive_config import validate_name


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


Hive = Annotated[str, typer.Option("--hive", help="Hive name.", callback=name_check("hive"))]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
AgentOpt = Annotated[str | None, typer.Option(
    "--agent", help="Agent name.", callback=name_check("agent"))]
AgentsOpt = Annotated[str | None, typer.Option(
    "--agents", help="Comma-separated agent names (default: all).")]


def usage(fn):
    """Run ``fn``; a ConfigError from values typed on the command line is a usage error."""
    try:
        return fn()
    except ConfigError as exc:
        raise UsageProblem(str(exc)) from exc
