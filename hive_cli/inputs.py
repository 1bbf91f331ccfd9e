"""What ``learn`` reads: one turn per line, plain text or JSONL with a ``content`` field.

The whole input is read and checked before anything is sent, so a bad line 4,000 never leaves
a hive that learned lines 1-3,999. Blank lines are skipped. The input is JSONL when the file
name ends in ``.jsonl`` or its first non-blank line starts with ``{``; then every line must be
a JSON object with a non-empty string ``content``.

Every turn keeps where it stands in its conversation -- ``session`` (the file's name, "stdin"
or "text", or a JSONL line's ``session`` field) and ``turn`` (its line number, or a JSONL
``turn`` field) -- because a turn's meaning leans on its neighbours; the facts of a turn carry
both in their metadata (``HiveFact.metadata["session"]`` and ``["turn"]``).

A turn also has a *time*, what "newest" means when a value changes ("the new deadline
is ..."): a JSONL line's ``time`` (ISO 8601 date or date-time, or epoch seconds), else the
moment ``learn`` began, the same for every turn of one input, whose order is then its turn
index. It becomes the facts' ``created_at``; parallel agents cannot reorder it.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from hive_cli.errors import CliFailure

T = TypeVar("T")
MAX_TURN_BYTES = 1024 * 1024
MAX_TURNS = 1_000_000


class BadInput(CliFailure):
    """The content given to ``learn`` cannot be learned as it is."""


def _lines(raw: bytes, source: str) -> list[str]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(f"{source} is not UTF-8 text (byte {exc.start})") from exc
    return text.splitlines()


Turn = dict[str, Any]  # {"content": str, "session": str, "turn": int, "time": float}


def parse_turns(lines: Iterable[str], source: str, jsonl: bool | None = None,
                session: str | None = None) -> list[Turn]:
    """Turns from lines; raises :class:`BadInput` naming the first bad line."""
    session = session or source
    began = round(time.time(), 3)
    turns: list[Turn] = []
    for number, line in enumerate(lines, start=1):
        size = len(line.encode("utf-8"))
        if size > MAX_TURN_BYTES:
            raise BadInput(f"{source}: line {number} is {size:,} bytes; the limit per turn "
                           f"is {MAX_TURN_BYTES:,} bytes")
        if not line.strip():
            continue
        if jsonl is None:
            jsonl = line.lstrip().startswith("{")
        turn = (_jsonl_turn(line, source, number, session) if jsonl else
                {"content": line.strip(), "session": session, "turn": number})
        turn.setdefault("time", began)
        turns.append(turn)
        if len(turns) > MAX_TURNS:
            raise BadInput(f"{source}: more than {MAX_TURNS:,} turns; split the input")
    if not turns:
        raise BadInput(f"{source} has no turns to learn (it is empty or blank)")
    return turns


def _jsonl_turn(line: str, source: str, number: int, session: str) -> Turn:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{source}: line {number} is not valid JSON ({exc.msg})") from exc
    content = obj.get("content") if isinstance(obj, dict) else None
    if not isinstance(content, str) or not content.strip():
        raise BadInput(f"{source}: line {number} has no non-empty string 'content' field")
    own_session, turn = obj.get("session", session), obj.get("turn", number)
    if not isinstance(own_session, str) or not own_session.strip():
        raise BadInput(f"{source}: line {number}: 'session' must be a non-empty string")
    if not isinstance(turn, int) or isinstance(turn, bool) or turn < 0:
        raise BadInput(f"{source}: line {number}: 'turn' must be an integer >= 0")
    out: Turn = {"content": content.strip(), "session": own_session, "turn": turn}
    if obj.get("time") is not None:
        out["time"] = _epoch(obj["time"], source, number)
    return out


def _epoch(value: Any, source: str, number: int) -> float:
    """A JSONL ``time``: epoch seconds, or an ISO 8601 date or date-time (UTC if no zone)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return moment.timestamp()
    raise BadInput(f"{source}: line {number}: 'time' must be an ISO 8601 date or date-time "
                   "(2026-03-14, 2026-03-14T09:30:00Z) or epoch seconds >= 0")


def read_turns(file: Path | None, text: str | None) -> list[Turn]:
    """Turns from ``--file`` (``-`` is stdin) or ``--text`` (exactly one must be given)."""
    if text is not None:
        return parse_turns(text.splitlines(), "--text", jsonl=False, session="text")
    if file is None:
        raise BadInput("nothing to learn: give --file F, --text T, or - for stdin")
    if str(file) == "-":
        return parse_turns(_lines(sys.stdin.buffer.read(), "stdin"), "stdin")
    try:
        raw = file.read_bytes()
    except IsADirectoryError as exc:
        raise BadInput(f"{file} is a directory, not a file") from exc
    jsonl = True if file.suffix == ".jsonl" else None
    return parse_turns(_lines(raw, str(file)), str(file), jsonl=jsonl, session=file.name)


def round_robin(turns: list[T], agents: list[str]) -> dict[str, list[T]]:
    """Turn i goes to agent i mod N (N = len(agents)); order kept within each agent."""
    out: dict[str, list[T]] = {a: [] for a in agents}
    for i, turn in enumerate(turns):
        out[agents[i % len(agents)]].append(turn)
    return out
