"""Agents' logs: the tail of each, several merged by time, followed as they grow.

An agent's log (``logs/AGENT.log``) is what its process writes: logging lines that start
with a time (``2026-12-02 22:35:56,716 INFO hive/agent ...``), the supervisor's start
markers (``--- amplihack-hive: starting agent_0 at 2026-12-02T22:35:56+0000``) and lines
without a time of their own (a traceback), which belong to the line before them. Merging
sorts lines by that time, so the story of a hive reads in order across agents.
"""

from __future__ import annotations

import heapq
import json
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from hive_core.redact import redact_secret

FOLLOW_POLL_S = 0.2
_STAMP = re.compile(r"^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(?:,(\d{3}))?")
_MARKER = re.compile(r"^--- amplihack-hive: .* at (\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})")


def stamp_of(line: str) -> str | None:
    """The line's time as ``YYYY-MM-DD HH:MM:SS,mmm`` (sortable as text), or None."""
    m = _STAMP.match(line) or _MARKER.match(line)
    if m is None:
        return None
    millis = m.group(3) if m.re is _STAMP and m.group(3) else "000"
    return f"{m.group(1)} {m.group(2)},{millis}"


def stamped(lines: list[str]) -> list[tuple[str, str]]:
    """(time, line) for each line; a line without a time takes the one before it."""
    out: list[tuple[str, str]] = []
    last = ""
    for line in lines:
        last = stamp_of(line) or last
        out.append((last, line))
    return out


def merged(tails: dict[str, list[str]], lines: int) -> list[tuple[str, str, str]]:
    """The last ``lines`` of all agents' tails together, by time: (agent, time, line).
    Ties keep each agent's own order (heapq.merge is stable per input)."""
    streams: list[Iterator[tuple[str, str, str]]] = [
        iter([(t, agent, line) for t, line in stamped(tail_lines)])
        for agent, tail_lines in sorted(tails.items())]
    rows = list(heapq.merge(*streams, key=lambda row: row[0]))
    return [(agent, t, line) for t, agent, line in rows[-lines:]] if lines > 0 else []


def render(agent: str, line: str, stamp: str | None, prefix: bool, as_json: bool) -> str:
    line = redact_secret(line)  # an old log, or a library's stray print, may hold one
    if as_json:
        return json.dumps({"agent": agent, "time": stamp, "line": line},
                          ensure_ascii=False) + "\n"
    return f"{agent} | {line}\n" if prefix else f"{line}\n"


def tail(path: Path, lines: int) -> list[str]:
    """The last ``lines`` lines of a log, reading only its end."""
    if lines <= 0:
        return []
    with path.open("rb") as fh:
        fh.seek(0, 2)
        size = fh.tell()
        chunk = 64 * 1024
        data = b""
        while size > 0 and data.count(b"\n") <= lines:
            step = min(chunk, size)
            size -= step
            fh.seek(size)
            data = fh.read(step) + data
    text = data.decode("utf-8", errors="replace")
    return text.splitlines()[-lines:]


def follow(paths: dict[str, Path], prefix: bool, stop: Callable[[], bool] = lambda: False,
           as_json: bool = False) -> None:
    """Print lines appended to the logs until Ctrl-C (or ``stop()``); handles truncation.
    Lines from several agents come in the order they are written (merged by arrival)."""
    offsets = {a: (p.stat().st_size if p.exists() else 0) for a, p in paths.items()}
    while not stop():
        for agent, path in paths.items():
            if not path.exists():
                continue
            size = path.stat().st_size
            if size < offsets[agent]:
                offsets[agent] = 0
            if size == offsets[agent]:
                continue
            with path.open("rb") as fh:
                fh.seek(offsets[agent])
                data = fh.read(size - offsets[agent])
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                continue
            offsets[agent] += cut
            for line in data[:cut].decode("utf-8", errors="replace").splitlines():
                sys.stdout.write(render(agent, line, stamp_of(line), prefix, as_json))
            sys.stdout.flush()
        time.sleep(FOLLOW_POLL_S)

