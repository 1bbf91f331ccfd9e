"""The ``forget`` command: retract facts learned by mistake, hive-wide."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from hive_cli import operations
from hive_cli.errors import CliFailure, UsageProblem
from hive_cli.options import Hive, Json
from hive_cli.render import Renderer
from hive_cli.transport_factory import check_available
from hive_core.errors import HiveError
from hive_core.hive_config import HiveConfig
from hive_core.messages import MessageType


def forget_command(
    hive: Hive,
    fact_id: Annotated[list[str] | None, typer.Option(
        "--fact-id", help="A fact id to forget (repeatable).")] = None,
    match: Annotated[str | None, typer.Option(
        "--match", help="Forget the facts whose text contains this (case-insensitive).")] =
        None,
    yes: Annotated[bool, typer.Option(
        "--yes", help="Forget them. Without it, only show what would be forgotten.")] = False,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait.")] = 60.0,
    json_out: Json = False,
) -> None:
    """Retract facts hive-wide: a tombstone on every replica, never returned again, kept
    across restarts. Without --yes it lists what would go and forgets nothing (exit 1).

    \b
    Examples:
      amplihack-hive forget --hive ops --match "Project Osprey is cancelled"
      amplihack-hive forget --hive ops --match "Project Osprey is cancelled" --yes
      amplihack-hive forget --hive ops --fact-id f_0123456789abcdef0123 --yes
    """
    if bool(fact_id) == (match is not None):
        raise UsageProblem("give --fact-id F (repeatable) or --match TEXT, not both")
    config = HiveConfig.load(hive)
    check_available(config)
    agent = operations.require_live(config, None)[0]
    payload: dict[str, object] = {"fact_ids": list(fact_id)} if fact_id else {"match": match}
    payload["dry_run"] = not yes
    with operations.connected(config) as link:
        reply = link.request_many(MessageType.FORGET, {agent: payload}, timeout)[agent]
    if isinstance(reply, HiveError):
        raise reply
    doc = {"hive": hive, "dry_run": not yes, **reply,
           "ok": not reply["failed"] and (yes or not reply["matched"])}
    out = Renderer(json_out)
    if json_out:
        out.json(doc)
    else:
        verb = "forgotten" if yes else "would be forgotten"
        for fact in reply["matched"]:
            out.message(f"{verb}: {escape(fact['fact_id'])} {escape(fact['content'])}")
        for missing in reply["not_found"]:
            out.message(f"not found: {escape(missing)}")
        if reply["partial"]:
            out.note("[yellow]the search was partial: some shards did not answer, so other "
                     "matching facts may remain[/]")
    if reply["failed"]:
        failed = ", ".join(f["fact_id"] for f in reply["failed"])
        reason = reply["failed"][0]["error"]
        raise CliFailure(f"could not forget {failed} on every replica: {reason}")
    if not yes and reply["matched"]:
        raise CliFailure(f"nothing forgotten: add --yes to forget these "
                         f"{len(reply['matched'])} fact(s)")
    if not reply["matched"] and not json_out:
        out.message("no fact matched; nothing forgotten")
