"""An agent's readiness over HTTP, for container platforms that cannot exec into a process.

Azure Container Apps probes are HTTP or TCP only, and a TCP probe would pass as soon as a
port is bound, long before the shard is open and the ring built. So when
``AMPLIHACK_HEALTH_PORT`` is set, ``python -m agent_runtime`` serves from a daemon thread:

* ``GET /healthz`` -> 200 ``{"agent", "ready": true, "pid"}`` once ``Agent.start()`` returned,
  503 (same document, ``ready: false``) before that and while stopping: the readiness probe;
* ``GET /livez``  -> 200 while the process serves at all: the liveness probe, which must not
  fail during a long start (that would restart a container that is merely busy starting).

Other paths are 404, POST/PUT/DELETE/PATCH/OPTIONS 405. Request bodies are never read and
every connection has a short socket timeout, so a slow or hostile client costs one
short-lived thread, never the agent.

``python -m agent_runtime.health`` is the Docker ``HEALTHCHECK``: exit 0 when
``GET http://127.0.0.1:$AMPLIHACK_HEALTH_PORT/healthz`` answers 200 within 3 seconds, else 1
with one line on stderr saying why.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger("agent_runtime.health")

PORT_VARIABLE = "AMPLIHACK_HEALTH_PORT"
PROBE_TIMEOUT_S = 3.0
CLIENT_TIMEOUT_S = 5.0  # a connection that sends nothing is dropped after this


def port_from_env(environ: Mapping[str, str] | None = None) -> int | None:
    """The health port from ``AMPLIHACK_HEALTH_PORT`` (None when unset or empty).

    Raises ValueError with a one-line message for anything but 1-65535: a typo must not
    silently leave a container without its probe endpoint.
    """
    env = os.environ if environ is None else environ
    raw = (env.get(PORT_VARIABLE) or "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise ValueError(f"{PORT_VARIABLE}={raw!r} is not a port number (1-65535)")
    return int(raw)


class HealthState:
    """What the endpoint reports; the agent's main thread flips ``ready``."""

    def __init__(self, agent: str) -> None:
        self.agent = agent
        self.pid = os.getpid()
        self._ready = threading.Event()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def set_ready(self, ready: bool) -> None:
        if ready:
            self._ready.set()
        else:
            self._ready.clear()

    def document(self) -> dict[str, object]:
        return {"agent": self.agent, "ready": self.ready, "pid": self.pid}


class _Handler(BaseHTTPRequestHandler):
    """GET only, no bodies read; one small JSON document per answer."""

    server: _HealthHTTPServer
    timeout = CLIENT_TIMEOUT_S  # socket timeout per connection (StreamRequestHandler)
    protocol_version = "HTTP/1.0"  # one request per connection: nothing to keep open

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        state = self.server.state
        if path == "/healthz":
            self._send(200 if state.ready else 503, state.document())
        elif path == "/livez":
            self._send(200, {**state.document(), "alive": True})
        else:
            self._send(404, {"error": "not found"})

    def _refuse(self) -> None:
        self._send(405, {"error": "method not allowed"}, close=True)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse

    def _send(self, code: int, doc: dict[str, object], close: bool = False) -> None:
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Probes arrive every few seconds: keep them out of the agent's log unless debugging."""
        log.debug("%s %s", self.address_string(), format % args)


class _HealthHTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a stuck client never holds the process open at exit
    allow_reuse_address = True  # a restarted agent rebinds at once

    def __init__(self, address: tuple[str, int], state: HealthState) -> None:
        self.state = state
        super().__init__(address, _Handler)


class HealthServer:
    """The endpoint on ``host:port``, served from a daemon thread until :meth:`stop`."""

    def __init__(self, state: HealthState, port: int, host: str = "0.0.0.0") -> None:
        self.state = state
        self._server = _HealthHTTPServer((host, port), state)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.5},
                                        name="health-http", daemon=True)

    def start(self) -> HealthServer:
        self._thread.start()
        log.info("health endpoint on port %d (/healthz, /livez)", self.port)
        return self

    def stop(self) -> None:
        """Report not ready, stop serving and release the port (idempotent)."""
        self.state.set_ready(False)
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5.0)
        self._server.server_close()


def probe(port: int, host: str = "127.0.0.1", timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when ``GET /healthz`` answers 200 within ``timeout`` seconds in all; else why not.

    http.client, not urllib: urllib would route 127.0.0.1 through an ``http_proxy`` set in
    the container's environment.
    """
    deadline = time.monotonic() + timeout
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.connect()
        if conn.sock is not None:
            conn.sock.settimeout(max(0.05, deadline - time.monotonic()))
        conn.request("GET", "/healthz", headers={"Connection": "close"})
        response = conn.getresponse()
        body = response.read(4096)
    except (OSError, http.client.HTTPException) as exc:
        if isinstance(exc, (TimeoutError, socket.timeout)):
            return f"no answer from {host}:{port}/healthz within {timeout:g} s"
        return f"cannot reach {host}:{port}/healthz: {exc.__class__.__name__}: {exc}"
    finally:
        conn.close()
    if response.status == 200:
        return None
    text = body.decode(errors="replace").strip()
    return f"{host}:{port}/healthz answered {response.status}: {text[:200]}"


def main(argv: list[str] | None = None) -> int:
    """``python -m agent_runtime.health``: the container's HEALTHCHECK (exit 0 or 1)."""
    del argv  # configured by the environment only, like the agent
    try:
        port = port_from_env()
    except ValueError as exc:
        sys.stderr.write(f"unhealthy: {exc}\n")
        return 1
    if port is None:
        sys.stderr.write(f"unhealthy: {PORT_VARIABLE} is not set: the agent serves no "
                         "health endpoint\n")
        return 1
    problem = probe(port)
    if problem:
        sys.stderr.write(f"unhealthy: {problem}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
