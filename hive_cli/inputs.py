"""What ``learn`` reads: one turn per line, plain text or JSONL with a ``content`` field.

The whole input is read and checked before anything is sent, so a bad line 4,000 never leaves
a hive that learned lines 1-3,999. Blank lines are skipped. The input is JSONL when the file
name ends in ``.jsonl`` or its first non-blank line starts with ``{``; then every line must be
a JSON object with a non-empty string ``content``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path

from hive_cli.errors import CliFailure

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


def parse_turns(lines: Iterable[str], source: str, jsonl: bool | None = None) -> list[str]:
    """Turns from lines; raises :class:`BadInput` naming the first bad line."""
    turns: list[str] = []
    for number, line in enumerate(lines, start=1):
        size = len(line.encode("utf-8"))
        if size > MAX_TURN_BYTES:
            raise BadInput(f"{source}: line {number} is {size:,} bytes; the limit per turn "
                           f"is {MAX_TURN_BYTES:,} bytes")
        if not line.strip():
            continue
        if jsonl is None:
            jsonl = line.lstrip().startswith("{")
        turns.append(_jsonl_content(line, source, number) if jsonl else line.strip())
        if len(turns) > MAX_TURNS:
            raise BadInput(f"{source}: more than {MAX_TURNS:,} turns; split the input")
    if not turns:
        raise BadInput(f"{source} has no turns to learn (it is empty or blank)")
    return turns


def _jsonl_content(line: str, source: str, number: int) -> str:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{source}: line {number} is not valid JSON ({exc.msg})") from exc
    content = obj.get("content") if isinstance(obj, dict) else None
    if not isinstance(content, str) or not content.strip():
        raise BadInput(f"{source}: line {number} has no non-empty string 'content' field")
    return content.strip()


def read_turns(file: Path | None, text: str | None) -> list[str]:
    """Turns from ``--file`` (``-`` is stdin) or ``--text`` (exactly one must be given)."""
    if text is not None:
        return parse_turns(text.splitlines(), "--text", jsonl=False)
    if file is None:
        raise BadInput("nothing to learn: give --file F, --text T, or - for stdin")
    if str(file) == "-":
        return parse_turns(_lines(sys.stdin.buffer.read(), "stdin"), "stdin")
    try:
        raw = file.read_bytes()
    except IsADirectoryError as exc:
        raise BadInput(f"{file} is a directory, not a file") from exc
    jsonl = True if file.suffix == ".jsonl" else None
    return parse_turns(_lines(raw, str(file)), str(file), jsonl=jsonl)


def round_robin(turns: list[str], agents: list[str]) -> dict[str, list[str]]:
    """Turn i goes to agent i mod N (N = len(agents)); order kept within each agent."""
    out: dict[str, list[str]] = {a: [] for a in agents}
    for i, turn in enumerate(turns):
        out[agents[i % len(agents)]].append(turn)
    return out
