"""The shape of ``config.yaml``, checked before a :class:`HiveConfig` is built from it.

A hand-edited file is the one input no command line checked: ``replication_factor: abc``
used to surface as "internal error: ValueError", 2.7 was taken as a replication factor, and
an unknown agent key showed Python's TypeError. Pydantic checks types strictly (no "3" for
3, no 2.7 for an integer), forbids unknown keys, and the first problem becomes one line that
names the key ("agents.1.colour: unknown key"). Semantic checks (names, transports,
backends) stay in :class:`HiveConfig`, which every code path -- CLI, agents, library --
goes through.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hive_core.errors import ConfigError

Whole = Annotated[int, Field(strict=True)]
# nan fails every comparison and inf passes "> 0": both are refused by name, not by accident.
Seconds = Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)]
# A turn (one line learned) is extracted in one piece by one agent: bounded by default at
# 64 KiB (a long message, not a document), configurable per hive up to 4 MiB.
MIN_TURN_BYTES = 1024
DEFAULT_MAX_TURN_BYTES = 64 * 1024
MAX_TURN_BYTES_CAP = 4 * 1024 * 1024


class _AgentFile(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str
    prompt: str = ""
    kuzu_db: str | None = None


class _HiveFile(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str
    transport: str = "local"
    connection_string: str | None = None
    storage_path: str | None = None
    shard_backend: str = "kuzu"
    replication_factor: Annotated[Whole, Field(ge=1, le=16)] = 3
    query_fanout: Annotated[Whole, Field(ge=1, le=64)] = 5
    search_timeout: Seconds = 2.0
    max_turn_bytes: Annotated[Whole, Field(ge=MIN_TURN_BYTES, le=MAX_TURN_BYTES_CAP)] = (
        DEFAULT_MAX_TURN_BYTES)
    key_prefix: str = "amplihack"
    transport_options: dict[str, Any] = Field(default_factory=dict)
    state_store: str = "auto"
    parent: str | None = None
    # Re-rank the lexical pool by meaning (hive_core.semantic; needs the [semantic] extra).
    semantic: bool = False
    agents: list[_AgentFile] = Field(default_factory=list)


def check(data: Any) -> dict[str, Any]:
    """``data`` as read from YAML, checked: the keys given (defaults are the dataclass's),
    or a :class:`ConfigError` naming the first bad key."""
    if not isinstance(data, dict):
        raise ConfigError("config must be a YAML mapping")
    try:
        _HiveFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_first_problem(exc)) from None
    return data


def check_fields(values: Mapping[str, Any]) -> None:
    """Each of ``values`` (fields of a config built in code: CLI flags, environment
    overrides) against the type and bounds its key has in the file, so a value no file
    could hold (2.7 replicas, ``True`` agents, an infinite timeout) is refused the same way.
    Keys the file does not have are left to their own checks."""
    instance = _HiveFile.model_construct()
    for key, value in values.items():
        if key not in _HiveFile.model_fields or key == "agents":
            continue
        try:
            _HiveFile.__pydantic_validator__.validate_assignment(instance, key, value)
        except ValidationError as exc:
            raise ConfigError(_first_problem(exc)) from None


# Pydantic's phrasing for the problems a hand-edited file has most, said as what to write.
_PHRASES = {
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "int_parsing": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number (not nan or inf)",
    "string_type": "must be text",
    "dict_type": "must be a mapping (key: value)",
    "list_type": "must be a list",
    "model_type": "must be a mapping (key: value)",
    "missing": "is required",
}


def _first_problem(exc: ValidationError) -> str:
    """``key.path: what is wrong (got VALUE)``, one line."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "config"
    if first["type"] == "extra_forbidden":
        return f"{where}: unknown key"
    what = _PHRASES.get(first["type"]) or first["msg"].rstrip(".").replace(
        "Input should be", "must be")
    value = first.get("input")
    if isinstance(value, bool) and first["type"] in ("int_type", "float_type"):
        what += ", not true/false"
    if isinstance(value, dict | list) or first["type"] == "missing":
        return f"{where}: {what}"
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return f"{where}: {what} (got {shown})"
