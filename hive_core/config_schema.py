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

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hive_core.errors import ConfigError

Whole = Annotated[int, Field(strict=True)]
Seconds = Annotated[float, Field(strict=True, gt=0)]


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
    key_prefix: str = "amplihack"
    transport_options: dict[str, Any] = Field(default_factory=dict)
    state_store: str = "auto"
    agents: list[_AgentFile] = Field(default_factory=list)


def check(data: Any) -> dict[str, Any]:
    """``data`` as read from YAML, checked: the keys given (defaults are the dataclass's),
    or a :class:`ConfigError` naming the first bad key."""
    if not isinstance(data, dict):
        raise ConfigError("config must be a YAML mapping")
    try:
        _HiveFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "config"
        if first["type"] == "extra_forbidden":
            raise ConfigError(f"{where}: unknown key") from None
        value = first.get("input")
        shown = "" if isinstance(value, dict | list) else f" (got {value!r})"
        raise ConfigError(f"{where}: {first['msg'].rstrip('.')}{shown}") from None
    return data
