"""Where a fake namespace lives: in this process, or served to agent processes over TCP.

A fake namespace is named by a connection string whose endpoint scheme is ``fake://`` (a
real one is always ``sb://``), so the transports pick the fake SDK only when the hive's
configuration says so, never as a fallback:

* ``Endpoint=fake://inproc/NAME/;SharedAccessKeyName=test;SharedAccessKey=x`` -- an object
  in this process (the conformance suite);
* ``Endpoint=fake://127.0.0.1:PORT/;SharedAccessKeyName=test;SharedAccessKey=KEY`` -- a
  namespace served by :func:`serve` (``python -m hive_core.transports.azurefake.server``)
  through :mod:`multiprocessing.managers`, the key being the manager's authkey; the CLI end
  to end tests run real agent processes against it.
"""

from __future__ import annotations

import argparse
import re
import sys
import threading
from multiprocessing.managers import BaseManager
from typing import Any

from hive_core.errors import ConfigError, ConnectionLost
from hive_core.transports.azurefake.namespace import DEFAULT_PARTITIONS, FakeNamespace

_ENDPOINT = re.compile(r"Endpoint\s*=\s*fake://([^/;]+)/?([^;]*)", re.I)
_KEY = re.compile(r"SharedAccessKey\s*=\s*([^;]+)", re.I)
_INPROC: dict[str, FakeNamespace] = {}
_CLIENTS: dict[str, Any] = {}
_LOCK = threading.Lock()


class _Manager(BaseManager):
    pass


def is_fake(connection_string: str) -> bool:
    return _ENDPOINT.search(connection_string) is not None


def inproc(name: str, partitions: int = DEFAULT_PARTITIONS) -> str:
    """A fresh in-process namespace; returns its connection string."""
    with _LOCK:
        _INPROC[name] = FakeNamespace(partitions)
    return f"Endpoint=fake://inproc/{name}/;SharedAccessKeyName=test;SharedAccessKey=x"


def namespace(connection_string: str) -> Any:
    """The FakeNamespace (or its proxy) a ``fake://`` connection string names."""
    found = _ENDPOINT.search(connection_string)
    if found is None:
        raise ConfigError("not a fake:// connection string")
    host, path = found.group(1), found.group(2).strip("/")
    with _LOCK:
        if host == "inproc":
            if path not in _INPROC:
                raise ConfigError(f"no in-process fake namespace {path!r}")
            return _INPROC[path]
        if connection_string not in _CLIENTS:
            key = _KEY.search(connection_string)
            addr, _, port = host.rpartition(":")
            _Manager.register("namespace")
            manager = _Manager(address=(addr, int(port)),
                               authkey=(key.group(1) if key else "").encode())
            try:
                manager.connect()
            except OSError as exc:
                raise ConnectionLost(f"the fake namespace at {host} is unreachable: "
                                     f"{type(exc).__name__}") from None
            # A proxy opens one connection per thread that uses it: blocking receives in
            # several threads do not wait for each other.
            _CLIENTS[connection_string] = manager.namespace()
        return _CLIENTS[connection_string]


def serve(port: int, authkey: str, partitions: int = DEFAULT_PARTITIONS) -> None:
    """Serve one namespace on 127.0.0.1:``port`` until killed."""
    ns = FakeNamespace(partitions)
    _Manager.register("namespace", callable=lambda: ns)
    manager = _Manager(address=("127.0.0.1", port), authkey=authkey.encode())
    server = manager.get_server()
    print(f"serving fake namespace on 127.0.0.1:{port}", flush=True)
    server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hive_core.transports.azurefake.server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--partitions", type=int, default=DEFAULT_PARTITIONS)
    args = parser.parse_args(argv)
    serve(args.port, args.key, args.partitions)
    return 0


if __name__ == "__main__":
    sys.exit(main())
