"""The Azure SDK seam of the Event Hubs and Service Bus transports, written once.

Which SDK a hive talks to follows from its connection string: the fake service of
:mod:`hive_core.transports.azurefake` for a ``fake://`` endpoint (tests), else the real
package, imported only then (an agent on another transport never loads it). And what both
services deliver alike: application properties whose strings arrive as bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hive_core.errors import ConfigError


def load_sdk(connection_string: str, transport: str, fake: Callable[[], Any],
             real: Callable[[], Any]) -> Any:
    """``fake()`` for a ``fake://`` endpoint, else ``real()``; a missing Azure SDK is one
    clear ConfigError naming the extra to install."""
    from hive_core.transports.azurefake.server import is_fake

    if is_fake(connection_string):
        return fake()
    try:
        return real()
    except ImportError as exc:
        raise ConfigError(f"transport {transport!r} needs the Azure SDK: "
                          "pip install 'amplihack-hive[azure]'") from exc


def str_properties(raw: dict[Any, Any] | None) -> dict[str, str]:
    """Application properties as str -> str (the AMQP clients deliver strings as bytes)."""
    out: dict[str, str] = {}
    for key, value in (raw or {}).items():
        k = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
        out[k] = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return out
