"""What ``learn`` reads: one turn per line, plain text or JSONL with a ``content`` field.

The input is read twice, a line at a time, so memory stays bounded whatever its size: a
first pass checks every line (and counts the turns), a second one yields the turns to send.
A bad line 4,000 thus never leaves a hive that learned lines 1-3,999. Stdin is spooled to
a temporary file as it is read (both passes need it). A line is read with a cap of the
hive's ``max_turn_bytes``: a longer one is refused, naming its line, without ever holding it
whole. Blank lines are skipped. The input is JSONL when the file name ends in ``.jsonl`` or
its first non-blank line starts with ``{``; then every line must be a JSON object with a
non-empty string ``content``.

Every turn keeps where it stands in its conversation -- ``session`` (the file's name,
"stdin" or "text", or a JSONL line's ``session`` field) and ``turn`` (its place among the
input's turns, blank lines not counted, or a JSONL ``turn`` field) -- because a turn's
meaning leans on its neighbours; the facts of a turn carry both in their metadata
(``HiveFact.metadata["session"]`` and ``["turn"]``).

A turn also has a *time*, what "newest" means when a value changes ("the new deadline
is ..."): a JSONL line's ``time`` (ISO 8601 date or date-time, or epoch seconds), else the
moment ``learn`` began, the same for every turn of one input, whose order is then its turn
index. It becomes the facts' ``created_at``; parallel agents cannot reorder it.

A JSONL line may rate its facts with ``confidence`` (0 to 1; extraction alone rates 0.8): in
a hive with a parent, facts rated at or above 0.9 escalate to it and reach the other groups
(agent_runtime.federation).
"""

from __future__ import annotations

import io
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, TypeVar

from hive_cli.errors import CliFailure
from hive_core.config_schema import DEFAULT_MAX_TURN_BYTES

T = TypeVar("T")
MAX_TURN_BYTES = DEFAULT_MAX_TURN_BYTES  # a hive's own limit is its max_turn_bytes
MAX_TURNS = 10_000_000
SPOOL_CHUNK = 1024 * 1024


class BadInput(CliFailure):
    """The content given to ``learn`` cannot be learned as it is."""


# {"content": str, "session": str, "turn": int, "time": float[, "confidence": float]}
Turn = dict[str, Any]


def parse_turns(lines: Iterable[str], source: str, jsonl: bool | None = None,
                session: str | None = None, max_turn_bytes: int = MAX_TURN_BYTES,
                began: float | None = None) -> Iterator[Turn]:
    """Turns from lines, lazily; raises :class:`BadInput` naming the first bad line (when
    the iteration reaches it: :class:`TurnSource` checks everything before sending)."""
    session = session or source
    began = round(time.time(), 3) if began is None else began
    count = 0
    for number, line in enumerate(lines, start=1):
        size = len(line.encode("utf-8", "surrogatepass"))
        if size > max_turn_bytes:
            raise _too_long(source, number, size, max_turn_bytes)
        if not line.strip():
            continue
        if jsonl is None:
            jsonl = line.lstrip().startswith("{")
        count += 1
        if count > MAX_TURNS:
            raise BadInput(f"{source}: more than {MAX_TURNS:,} turns; split the input")
        # The turn's place is its count, not its line: a blank line between two turns
        # does not part them (hive_core.context lends meaning between turns t and t + 1).
        turn = (_jsonl_turn(line, source, number, session, count) if jsonl else
                {"content": line.strip(), "session": session, "turn": count})
        turn.setdefault("time", began)
        yield turn


def _too_long(source: str, number: int, size: int, limit: int) -> BadInput:
    return BadInput(f"{source}: line {number} is {size:,} bytes; the limit per turn is "
                    f"{limit:,} bytes (max_turn_bytes in the hive config)")


class TurnSource:
    """A learn input, read line by line: :meth:`check` it all, then iterate its turns.

    ``total`` is known after :meth:`check`. Memory is bounded by one line (at most
    ``max_turn_bytes``), however large the input.
    """

    def __init__(self, opener: Callable[[], IO[bytes]], source: str, session: str,
                 jsonl: bool | None, max_turn_bytes: int) -> None:
        self._open = opener
        self.source = source
        self.session = session
        self.jsonl = jsonl
        self.max_turn_bytes = max_turn_bytes
        self.began = round(time.time(), 3)  # the same in both passes
        self.total = 0

    def check(self) -> int:
        """Read everything once; raise :class:`BadInput` on the first bad line."""
        self.total = sum(1 for _ in self)
        if not self.total:
            raise BadInput(f"{self.source} has no turns to learn (it is empty or blank)")
        return self.total

    def __iter__(self) -> Iterator[Turn]:
        return parse_turns(self._lines(), self.source, self.jsonl, self.session,
                           self.max_turn_bytes, self.began)

    def _lines(self) -> Iterator[str]:
        """Decoded lines (split as ``str.splitlines`` splits), numbered as in the file;
        a line longer than the limit is refused after reading at most the limit of it."""
        cap = self.max_turn_bytes + 3  # room for the line end: "\r\n"
        offset = number = 0
        with self._open() as fh:
            while True:
                raw = fh.readline(cap)
                if not raw:
                    return
                if len(raw) == cap and not raw.endswith(b"\n"):
                    size = len(raw) + _rest_of_line(fh)
                    raise _too_long(self.source, number + 1, size, self.max_turn_bytes)
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise BadInput(f"{self.source} is not UTF-8 text (byte "
                                   f"{offset + exc.start})") from exc
                offset += len(raw)
                for line in text.splitlines():
                    number += 1
                    yield line


def _rest_of_line(fh: IO[bytes]) -> int:
    """Bytes up to the end of the current line (read in chunks, never held)."""
    n = 0
    while True:
        chunk = fh.readline(SPOOL_CHUNK)
        n += len(chunk.rstrip(b"\r\n"))
        if not chunk or chunk.endswith(b"\n"):
            return n


def _jsonl_turn(line: str, source: str, number: int, session: str, place: int) -> Turn:
    """The turn of JSONL line ``number`` (named in errors); ``place``: its turn number
    unless it gives one (the count of turns so far, blank lines not counted)."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{source}: line {number} is not valid JSON ({exc.msg})") from exc
    content = obj.get("content") if isinstance(obj, dict) else None
    if not isinstance(content, str) or not content.strip():
        raise BadInput(f"{source}: line {number} has no non-empty string 'content' field")
    own_session, turn = obj.get("session", session), obj.get("turn", place)
    if not isinstance(own_session, str) or not own_session.strip():
        raise BadInput(f"{source}: line {number}: 'session' must be a non-empty string")
    if not isinstance(turn, int) or isinstance(turn, bool) or turn < 0:
        raise BadInput(f"{source}: line {number}: 'turn' must be an integer >= 0")
    out: Turn = {"content": content.strip(), "session": own_session, "turn": turn}
    if obj.get("time") is not None:
        out["time"] = _epoch(obj["time"], source, number)
    rating = obj.get("confidence")
    if rating is not None:
        if isinstance(rating, bool) or not isinstance(rating, int | float) or not (
                0 <= rating <= 1):
            raise BadInput(f"{source}: line {number}: 'confidence' must be a number from 0 "
                           "to 1")
        out["confidence"] = float(rating)
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


def read_turns(file: Path | None, text: str | None,
               max_turn_bytes: int = MAX_TURN_BYTES) -> list[Turn]:
    """Every turn of an input, in memory (small inputs and tests; ``learn`` streams)."""
    source = open_turns(file, text, max_turn_bytes)
    source.check()
    return list(source)


def open_turns(file: Path | None, text: str | None,
               max_turn_bytes: int = MAX_TURN_BYTES) -> TurnSource:
    """The turns of ``--file`` (``-`` is stdin) or ``--text`` (exactly one must be given),
    checked: a bad line raises :class:`BadInput` here, before anything is sent."""
    if text is not None:
        data = text.encode("utf-8", "surrogatepass")
        source = TurnSource(lambda: io.BytesIO(data), "--text", "text", False, max_turn_bytes)
    elif file is None:
        raise BadInput("nothing to learn: give --file F, --text T, or - for stdin")
    elif str(file) == "-":
        spool = _spool(sys.stdin.buffer)
        source = TurnSource(lambda: _Rewound(spool), "stdin", "stdin", None, max_turn_bytes)
    else:
        if file.is_dir():
            raise BadInput(f"{file} is a directory, not a file")
        jsonl = True if file.suffix == ".jsonl" else None
        source = TurnSource(lambda: _open_file(file), str(file), file.name, jsonl,
                            max_turn_bytes)
    source.check()
    return source


def _open_file(file: Path) -> IO[bytes]:
    try:
        return file.open("rb")
    except IsADirectoryError as exc:
        raise BadInput(f"{file} is a directory, not a file") from exc
    except OSError as exc:
        raise BadInput(f"cannot read {file}: {exc.strerror or exc}") from exc


def _spool(stream: IO[bytes]) -> IO[bytes]:
    """Stdin copied to an unnamed temporary file, a chunk at a time (read twice)."""
    # Kept open on purpose: both passes read it; it is deleted when the process exits.
    spool = tempfile.TemporaryFile()  # noqa: SIM115
    while chunk := stream.read(SPOOL_CHUNK):
        spool.write(chunk)
    return spool


class _Rewound:
    """The spooled stdin from its start, for one pass (the spool stays open for the next)."""

    def __init__(self, spool: IO[bytes]) -> None:
        self._spool = spool

    def __enter__(self) -> IO[bytes]:
        self._spool.seek(0)
        return self._spool

    def __exit__(self, *exc: object) -> None:
        return None


def round_robin(turns: list[T], agents: list[str]) -> dict[str, list[T]]:
    """Turn i goes to agent i mod N (N = len(agents)); order kept within each agent."""
    out: dict[str, list[T]] = {a: [] for a in agents}
    for i, turn in enumerate(turns):
        out[agents[i % len(agents)]].append(turn)
    return out
