"""Where an agent process gets its hive's config: a file on disk, or the environment.

On a machine the CLI writes ``$AMPLIHACK_HOME/hives/NAME/config.yaml`` and agents read it. In
a container there is no such file (``/data`` starts empty), so the deployment passes the
config as YAML text in ``AMPLIHACK_HIVE_CONFIG``. That text never holds a secret: the broker's
connection string arrives separately as a Container Apps secret exposed as
``AMPLIHACK_MEMORY_CONNECTION_STRING`` (or the transport's own variable,
``AMPLIHACK_EH_CONNECTION_STRING`` / ``AMPLIHACK_SB_CONNECTION_STRING``). It is merged in
before validation, because a broker transport's config is invalid without one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import yaml

from hive_core.errors import ConfigError
from hive_core.hive_config import HiveConfig

CONFIG_VARIABLE = "AMPLIHACK_HIVE_CONFIG"
HIVE_VARIABLE = "AMPLIHACK_HIVE"
# Checked in this order when the YAML text has no connection string.
SECRET_VARIABLES: dict[str, tuple[str, ...]] = {
    "redis": ("AMPLIHACK_MEMORY_CONNECTION_STRING",),
    "azure_event_hubs": ("AMPLIHACK_MEMORY_CONNECTION_STRING", "AMPLIHACK_EH_CONNECTION_STRING"),
    "azure_service_bus": ("AMPLIHACK_MEMORY_CONNECTION_STRING", "AMPLIHACK_SB_CONNECTION_STRING"),
}


def load_hive_config(hive: str, environ: Mapping[str, str] | None = None) -> HiveConfig:
    """The config an agent of ``hive`` runs with, ``AMPLIHACK_MEMORY_*`` overrides applied.

    ``AMPLIHACK_HIVE_CONFIG`` set (and not empty): built from that text; otherwise the
    hive's config file, exactly as before.
    """
    env = os.environ if environ is None else environ
    text = env.get(CONFIG_VARIABLE) or ""
    if not text.strip():
        return HiveConfig.load(hive).with_env_overrides(dict(env))
    return config_from_text(hive, text, env)


def config_from_text(hive: str, text: str, environ: Mapping[str, str]) -> HiveConfig:
    """Parse the YAML text of ``AMPLIHACK_HIVE_CONFIG``; the secret comes from ``environ``."""
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{CONFIG_VARIABLE} is not valid YAML: {first}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{CONFIG_VARIABLE} must be a YAML mapping (a hive's config.yaml)")
    if not data.get("connection_string"):
        secret = _secret_for(str(data.get("transport") or "local"), environ)
        if secret:
            data = {**data, "connection_string": secret}
    config = HiveConfig.from_dict(data).with_env_overrides(dict(environ))
    if config.name != hive:
        raise ConfigError(f"{CONFIG_VARIABLE} describes hive {config.name!r}, "
                          f"but this agent runs in hive {hive!r}")
    return config


def _secret_for(transport: str, environ: Mapping[str, str]) -> str | None:
    for variable in SECRET_VARIABLES.get(transport, ()):
        if environ.get(variable):
            return environ[variable]
    return None
