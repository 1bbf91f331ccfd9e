"""A hive's on-disk configuration: ``$AMPLIHACK_HOME/hives/NAME/config.yaml``.

The CLI writes it, agent processes read it; this module is the one definition of its schema
and of the hive's folder layout::

    $AMPLIHACK_HOME (default ~/.amplihack)/hives/NAME/
        (the folder)         mode 0700: facts, logs and sockets are its owner's only
        config.yaml          mode 0600 (may hold a connection string)
        secret.json          mode 0600: the key every message is signed with (secret_store)
        data/AGENT/          the agent's shard (Kuzu) unless storage_path/kuzu_db say otherwise
        logs/AGENT.log       everything the agent process writes
        run/AGENT.sock       the agent's Unix socket (local transport), mode 0600
        run/AGENT.pid        JSON: pid, create_time, started_at (a reused PID is never signalled)

Writes are atomic (temp file + rename) so a failed command never leaves a half-written config.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from hive_core import config_schema, secret_store
from hive_core.atomic import write_private
from hive_core.config import DEFAULT_QUERY_FANOUT, DEFAULT_REPLICATION_FACTOR, DEFAULTS
from hive_core.errors import ConfigError, HiveNotFound
from hive_core.redact import redact_secret
from hive_core.store import registry as stores
from hive_core.transports import registry as transports

STATE_STORES = ("auto", "dir", "blob")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_KEY_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


def validate_name(kind: str, name: str) -> str:
    """Hive and agent names become folder and file names: letters, digits, ``_ . -`` only."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise ConfigError(
            f"invalid {kind} name {name!r}: use 1-63 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """"; did you mean 'ops'?" for a near miss among ``known``, else ""."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def amplihack_home() -> Path:
    return Path(os.environ.get("AMPLIHACK_HOME") or Path.home() / ".amplihack")


def hives_root() -> Path:
    return amplihack_home() / "hives"


def hive_names() -> list[str]:
    """The hives under $AMPLIHACK_HOME/hives (folders with a config.yaml), sorted."""
    root = hives_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "config.yaml").is_file())


def hive_dir(name: str) -> Path:
    return hives_root() / validate_name("hive", name)


@dataclass(frozen=True, slots=True)
class AgentConfig:
    name: str
    prompt: str = ""
    kuzu_db: str | None = None

    def __post_init__(self) -> None:
        validate_name("agent", self.name)


@dataclass(frozen=True, slots=True)
class HiveConfig:
    name: str
    transport: str = "local"
    connection_string: str | None = None
    storage_path: str | None = None
    shard_backend: str = "kuzu"
    replication_factor: int = DEFAULT_REPLICATION_FACTOR
    query_fanout: int = DEFAULT_QUERY_FANOUT
    search_timeout: float = DEFAULTS.search_timeout
    # The largest turn (one line of a learn input) an agent extracts in one piece: bounds
    # the work and memory one request can cost (agent_runtime.learn_budget).
    max_turn_bytes: int = config_schema.DEFAULT_MAX_TURN_BYTES
    # Redis keys of this hive live under "{key_prefix}:{name}:" (two deployments sharing one
    # Redis pick different prefixes; two hives differ by name already).
    key_prefix: str = "amplihack"
    # Per-transport settings (event hub name, topic, consumer group template, ...), checked
    # by the transport's registry entry (hive_core.transports.registry).
    transport_options: dict[str, Any] = field(default_factory=dict)
    # Where the ring view, liveness and broker checkpoints live: "auto" (Redis for the redis
    # transport, else the hive's data folder), "dir" (the data folder: one machine or a shared
    # volume) or "blob" (an Azure Blob container: AMPLIHACK_BLOB_CONNECTION_STRING).
    state_store: str = "auto"
    # The hive this one is a group of (hive_core.federation_tree): the one place a link of
    # the tree is written, so a hive's children are the hives naming it, never a second list.
    parent: str | None = None
    # Answers re-ranked by meaning (hive_core.semantic, the [semantic] extra). `create` writes
    # it on when the extra is installed; a config without the key ranks lexically.
    semantic: bool = False
    agents: tuple[AgentConfig, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        # Types and bounds as in the file (a config built from flags or the environment may
        # not hold what no file could: 2.7 replicas, True agents, an infinite timeout).
        config_schema.check_fields({f.name: getattr(self, f.name) for f in fields(self)})
        validate_name("hive", self.name)
        spec = transports.spec(self.transport)
        # A transport whose secret may come from the environment is checked for it when
        # opened; the others need it in the config.
        transports.check(self, connection_required=not spec.connection_env)
        if not isinstance(self.key_prefix, str) or not _KEY_PREFIX.match(self.key_prefix):
            raise ConfigError(
                f"invalid key_prefix {self.key_prefix!r}: use 1-64 letters, digits, "
                "'_', '.', ':' or '-'"
            )
        stores.check_name(self.shard_backend)
        if self.state_store not in STATE_STORES:
            raise ConfigError(f"unknown state_store {self.state_store!r}: choose one of "
                              f"{', '.join(STATE_STORES)}")
        if not 1 <= int(self.replication_factor) <= 16:
            raise ConfigError("replication_factor must be between 1 and 16")
        if not 1 <= int(self.query_fanout) <= 64:
            raise ConfigError("query_fanout must be between 1 and 64")
        if not float(self.search_timeout) > 0:
            raise ConfigError("search_timeout must be > 0 seconds")
        low, high = config_schema.MIN_TURN_BYTES, config_schema.MAX_TURN_BYTES_CAP
        if not low <= int(self.max_turn_bytes) <= high:
            raise ConfigError(f"max_turn_bytes must be between {low} and {high}")
        if self.parent is not None:
            validate_name("parent hive", self.parent)
            if self.parent == self.name:
                raise ConfigError(f"hive {self.name!r} cannot be its own parent")
        names = [a.name for a in self.agents]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"duplicate agent name(s): {', '.join(dupes)}")

    # -- paths ----------------------------------------------------------------------------------
    @property
    def directory(self) -> Path:
        return hive_dir(self.name)

    @property
    def config_path(self) -> Path:
        return self.directory / "config.yaml"

    @property
    def data_dir(self) -> Path:
        return Path(self.storage_path) if self.storage_path else self.directory / "data"

    @property
    def logs_dir(self) -> Path:
        return self.directory / "logs"

    @property
    def run_dir(self) -> Path:
        return self.directory / "run"

    def agent(self, name: str) -> AgentConfig:
        for a in self.agents:
            if a.name == name:
                return a
        raise ConfigError(f"hive {self.name!r} has no agent {name!r}")

    def shard_path(self, agent: str) -> Path:
        override = self.agent(agent).kuzu_db
        return Path(override) if override else self.data_dir / agent

    def agent_names(self) -> list[str]:
        return [a.name for a in self.agents]

    # -- changes ------------------------------------------------------------------------------
    def with_agent(self, agent: AgentConfig) -> HiveConfig:
        if agent.name in self.agent_names():
            raise ConfigError(f"agent {agent.name!r} already exists in hive {self.name!r}")
        return replace(self, agents=(*self.agents, agent))

    def without_agent(self, name: str) -> HiveConfig:
        self.agent(name)
        return replace(self, agents=tuple(a for a in self.agents if a.name != name))

    # -- YAML -----------------------------------------------------------------------------------
    def to_dict(self, redact: bool = False) -> dict[str, Any]:
        data = asdict(self)
        data["agents"] = [asdict(a) for a in self.agents]
        if redact and data.get("connection_string"):
            data["connection_string"] = redact_secret(data["connection_string"])
        return data

    @classmethod
    def from_dict(cls, data: Any) -> HiveConfig:
        """A config from its YAML mapping, its shape checked first (hive_core.config_schema)."""
        if isinstance(data, dict) and isinstance(data.get("agents"), list):
            # A bare name is shorthand for an agent with no prompt (a bare number, list or
            # null is not a name: the schema refuses it).
            data = {**data, "agents": [{"name": a} if isinstance(a, str) else a
                                       for a in data["agents"]]}
        data = config_schema.check(data)
        agents = tuple(AgentConfig(**a) for a in data.get("agents") or ())
        return cls(**{**data, "agents": agents})

    def save(self) -> Path:
        """Atomically write config.yaml with mode 0600, in a hive folder of mode 0700.

        The folder holds facts (shards, logs) and sockets: only its owner may enter it. A hive
        gets its message secret with its first config (hive_core.secret_store); saving again
        keeps the one it has.
        """
        path = self.config_path
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        write_private(path, yaml.safe_dump(self.to_dict(), sort_keys=False))
        secret_store.ensure(path.parent)
        return path

    @classmethod
    def load(cls, name: str) -> HiveConfig:
        path = hive_dir(name) / "config.yaml"
        if not path.exists():
            raise HiveNotFound(f"no hive named {name!r} (looked in {path.parent})"
                               + did_you_mean(name, hive_names()))
        try:
            # A SafeLoader (no Python objects), refusing duplicate keys.
            data = yaml.load(path.read_bytes().decode("utf-8"), Loader=_UniqueKeyLoader)
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path} is not UTF-8 text (byte {exc.start}): "
                              "save it as UTF-8") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}".splitlines()[0]) from exc
        try:
            cfg = cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        if cfg.name != name:
            raise ConfigError(f"{path} names hive {cfg.name!r}, expected {name!r}")
        return cfg

    def with_env_overrides(self, environ: dict[str, str] | None = None) -> HiveConfig:
        """Apply AMPLIHACK_MEMORY_* overrides (what an agent process honours); a bad value
        is refused naming the variable that set it."""
        env = os.environ if environ is None else environ
        try:
            return self._with_env(env)
        except ConfigError as exc:
            spec = transports.TRANSPORTS.get(env.get("AMPLIHACK_MEMORY_TRANSPORT")
                                             or self.transport)
            own = (*spec.connection_env, *spec.option_env) if spec else ()
            given = [v for v in (*_MEMORY_VARIABLES, *own) if env.get(v)]
            raise ConfigError(f"{exc} (from the environment: {', '.join(given)})") from None

    def _with_env(self, env: Mapping[str, str]) -> HiveConfig:
        changes: dict[str, Any] = {}
        if env.get("AMPLIHACK_MEMORY_TRANSPORT"):
            changes["transport"] = env["AMPLIHACK_MEMORY_TRANSPORT"]
        own = transports.env_overrides(changes.get("transport", self.transport), env)
        if "transport_options" in own:
            own["transport_options"] = {**self.transport_options, **own["transport_options"]}
        changes.update(own)
        if env.get("AMPLIHACK_MEMORY_CONNECTION_STRING"):
            changes["connection_string"] = env["AMPLIHACK_MEMORY_CONNECTION_STRING"]
        if env.get("AMPLIHACK_MEMORY_KEY_PREFIX"):
            changes["key_prefix"] = env["AMPLIHACK_MEMORY_KEY_PREFIX"]
        if env.get("AMPLIHACK_MEMORY_STORAGE_PATH"):
            changes["storage_path"] = env["AMPLIHACK_MEMORY_STORAGE_PATH"]
        if env.get("AMPLIHACK_MEMORY_SEARCH_TIMEOUT"):
            raw = env["AMPLIHACK_MEMORY_SEARCH_TIMEOUT"]
            try:
                changes["search_timeout"] = float(raw)
            except ValueError:
                raise ConfigError(f"search_timeout: must be a number of seconds (got {raw!r})"
                                  ) from None
        return replace(self, **changes) if changes else self


_MEMORY_VARIABLES = tuple(f"AMPLIHACK_MEMORY_{k}" for k in (
    "TRANSPORT", "CONNECTION_STRING", "KEY_PREFIX", "STORAGE_PATH", "SEARCH_TIMEOUT"))


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (plain PyYAML keeps
    the last one silently: a hand-edited file would not do what it says)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)
