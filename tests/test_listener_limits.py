"""An agent's socket listener under connection floods: real agent processes, raw sockets.

An adversarial pass opened 20,000 idle connections to one agent: it spawned ~19,800 threads
and stopped answering for a minute. Here 2,000 idle connections leave an agent answering
promptly with a bounded thread count; connections that stay silent past the idle timeout
are closed; over the connection cap new ones are refused (an ERROR frame, then closed) and
counted in the agent's status reply.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import cli_process

from hive_cli.agent_link import AgentLink
from hive_cli.transport_factory import open_transport
from hive_core.hive_config import HiveConfig
from hive_core.transports.framing import read_frame

AGENT = "agent_0"
FACT = "Project Wren is led by Ada Okafor."


class OneAgentHive:
    """A one-agent hive (memory shard) started with listener limits in its environment."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home, self.env, self.name = home, env, "lim"

    def cli(self, *argv: str, timeout: float = 120):
        return cli_process(self.home, *argv, env=self.env, timeout=timeout)

    def start(self) -> int:
        assert self.cli("create", "--name", self.name, "--agents", "1", "--replication-factor",
                        "1", "--shard-backend", "memory").code == 0
        started = self.cli("start", "--hive", self.name, "--json", "--timeout", "60")
        assert started.code == 0, started.err
        return int(started.json()["agents"][0]["pid"])

    @property
    def socket_path(self) -> Path:
        return self.home / "hives" / self.name / "run" / f"{AGENT}.sock"

    def status(self, timeout: float = 5.0) -> dict:
        config = HiveConfig.load(self.name)
        transport = open_transport(config)
        try:
            result = AgentLink(config.name, transport).status([AGENT], timeout)[AGENT]
        finally:
            transport.close()
        assert isinstance(result, dict), result
        return result

    def stop(self) -> None:
        self.cli("stop", "--hive", self.name, timeout=60)


@pytest.fixture
def make_hive(monkeypatch) -> Iterator:
    home = Path(tempfile.mkdtemp(prefix="ahlim", dir="/tmp"))  # short socket paths
    monkeypatch.setenv("AMPLIHACK_HOME", str(home))
    made: list[OneAgentHive] = []

    def make(**limits: str) -> OneAgentHive:
        env = {"AMPLIHACK_HOME": str(home)}
        for key, value in limits.items():
            env[f"AMPLIHACK_LISTENER_{key.upper()}"] = value
            monkeypatch.setenv(f"AMPLIHACK_LISTENER_{key.upper()}", value)
        hive = OneAgentHive(home, env)
        made.append(hive)
        return hive

    yield make
    for hive in made:
        hive.stop()
    shutil.rmtree(home, ignore_errors=True)


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError(f"no Threads line for {pid}")


def connect_many(path: Path, count: int, within: float = 60.0) -> list[socket.socket]:
    """``count`` connections; a full accept backlog (EAGAIN) is waited out, up to ``within``."""
    out: list[socket.socket] = []
    deadline = time.monotonic() + within
    while len(out) < count:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10.0)
        try:
            sock.connect(str(path))
        except BlockingIOError:
            sock.close()
            assert time.monotonic() < deadline, f"only {len(out)} connections in {within}s"
            time.sleep(0.01)
            continue
        out.append(sock)
    return out


def closed_by_peer(sock: socket.socket, wait: float) -> bool:
    """True if the agent closed ``sock`` (end of stream, or a reset) within ``wait``."""
    sock.settimeout(wait)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


@pytest.mark.slow
def test_2000_idle_connections_leave_the_agent_answering_with_bounded_threads(make_hive):
    hive = make_hive(max_connections="3000", idle_timeout="600")
    pid = hive.start()
    assert hive.cli("learn", "--hive", hive.name, "--text", FACT).code == 0
    before = threads_of(pid)
    idle = connect_many(hive.socket_path, 2000)
    try:
        time.sleep(1.0)  # let the agent accept them all
        during = threads_of(pid)
        began = time.monotonic()
        answered = hive.cli("ask", "--hive", hive.name, "--json", "--timeout", "10",
                            "Who leads Project Wren?")
        took = time.monotonic() - began
        assert answered.code == 0, answered.err
        assert "Ada Okafor" in answered.json()["answer"]
        status = hive.status()
        after = threads_of(pid)
    finally:
        for sock in idle:
            sock.close()
    # A thread per connection would be 2,000 more; the pools are fixed (16 + 8 workers).
    assert during <= before + 5, (before, during)
    assert after <= before + 30, (before, after)
    assert took < 5.0, took  # the CLI process itself takes ~1 s to start
    conns = status["connections"]
    assert conns["open"] >= 2000 and conns["refused"] == 0, conns
    assert conns["max_connections"] == 3000


@pytest.mark.slow
def test_over_the_cap_new_connections_are_refused_and_idle_ones_closed(make_hive):
    hive = make_hive(max_connections="30", idle_timeout="2")
    hive.start()
    held = connect_many(hive.socket_path, 30)  # the cap
    extra = connect_many(hive.socket_path, 10)  # accepted by the kernel, refused by the agent
    try:
        for sock in extra:
            sock.settimeout(5.0)
            refusal = read_frame(sock, 1 << 20)  # an ERROR envelope (signed: not decoded here)
            assert refusal is not None and b'"type":"ERROR"' in refusal
            assert b"too many connections to agent_0 (cap 30)" in refusal
            assert closed_by_peer(sock, 5.0)
        # Silent past the idle timeout (2 s): the agent closes every one of them.
        assert all(closed_by_peer(sock, 8.0) for sock in held)
    finally:
        for sock in held + extra:
            sock.close()
    conns = hive.status()["connections"]
    assert conns["refused"] >= 10, conns
    assert conns["idle_closed"] >= 30, conns
    assert conns["open"] <= 2, conns  # the status request's own connection
    assert conns["max_connections"] == 30 and conns["idle_timeout"] == 2.0


@pytest.mark.slow
def test_a_connection_in_use_is_not_closed_as_idle(make_hive):
    """Requests on one connection keep it alive; only silence past the timeout closes it."""
    hive = make_hive(idle_timeout="2")
    hive.start()
    config = HiveConfig.load(hive.name)
    transport = open_transport(config)
    try:
        link = AgentLink(config.name, transport)
        first = link.status([AGENT], 5.0)[AGENT]["connections"]
        for _ in range(8):  # 4 s of requests, one every 0.5 s, on one pooled connection
            time.sleep(0.5)
            assert isinstance(link.status([AGENT], 5.0)[AGENT], dict)
        conns = link.status([AGENT], 5.0)[AGENT]["connections"]
    finally:
        transport.close()
    assert conns["accepted"] == first["accepted"], (first, conns)  # never reconnected
    assert conns["idle_closed"] == first["idle_closed"], (first, conns)
