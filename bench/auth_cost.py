"""What authenticated messages cost: HMAC-SHA256 per message, and request p50 with and without
it on Unix sockets and Redis (numbers are indicative: a shared 2-core box).

    python -m bench.auth_cost --requests 4000 --rounds 10 [--only unix|redis]

* ``sign+verify``: one message signed and verified (hive_core.auth), by body size; a
  request/reply round trip does it twice (the request and the reply).
* ``p50``: sequential request/reply round trips from this process to an echo agent in a
  process of its own (as between agents: each side signs one message and verifies one),
  with the hive's policy and with a pass-through one. Two echo agents run side by side and
  requests alternate between them one by one (ABBA), so drift in the machine's load hits
  both alike (whole rounds of one then the other, as this bench first did, moved the a/b
  by +-10% on a busy box); medians of all requests. ``a/b`` is what authentication adds to
  the p50 end to end -- the target is < 5% -- with the median and range of the a/b of
  ``--rounds`` consecutive blocks as its spread; ``hmac alone`` is two sign + verify of a
  request-sized body measured alone (an upper bound on the MAC work of a round trip whose
  reply is small), relative to the unauthenticated p50.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from bench.common import pct
from hive_core.auth import BROKER_WINDOW, WINDOW, MessageAuth, ephemeral, new_key, with_key
from hive_core.messages import Envelope, MessageType, encode
from hive_core.transports.base import ShardTransport, check_reply
from hive_core.transports.redis import RedisShardTransport, purge_hive_keys
from hive_core.transports.unix import UnixSocketTransport

URL = os.environ.get("AMPLIHACK_REDIS_URL", "redis://127.0.0.1:6379/0")
SIZES = (256, 2048, 20_480, 204_800)
REPO = Path(__file__).resolve().parents[1]


class PassThrough(MessageAuth):
    """The baseline: bytes go out and come in unsigned and unchecked (benchmark only)."""

    def signature(self, body: bytes) -> bytes:
        return b""

    def sign(self, body: bytes) -> bytes:
        return body

    def verify(self, data: bytes, *, redelivery: bool = False) -> bytes:
        return data


def policy(key: bytes, on: bool, window: float) -> MessageAuth:
    auth = with_key(key, window)
    return auth if on else PassThrough(auth.source, window=window)


def transport(where: str, auth: MessageAuth) -> ShardTransport:
    """``unix:RUN_DIR`` or ``redis:PREFIX``."""
    kind, _, arg = where.partition(":")
    if kind == "unix":
        return UnixSocketTransport(Path(arg), auth=auth)
    return RedisShardTransport(URL, "bench", key_prefix=arg, auth=auth)


def window_of(where: str) -> float:
    return WINDOW if where.startswith("unix:") else BROKER_WINDOW


def serve(where: str, key: bytes, on: bool) -> None:
    """The echo agent (a child process): serves until its stdin closes."""
    server = transport(where, policy(key, on, window_of(where)))
    server.bind("a", lambda env: env.reply({"echo": len(env.payload["q"])}))
    print("ready", flush=True)
    sys.stdin.read()
    server.close()


def envelope(size: int) -> Envelope:
    """A SHARD_QUERY whose encoded form is about ``size`` bytes."""
    base = Envelope(MessageType.SHARD_QUERY, "bench", "client", "a", {"op": "search", "q": ""})
    pad = max(0, size - len(encode(base)))
    return Envelope(MessageType.SHARD_QUERY, "bench", "client", "a",
                    {"op": "search", "q": "x" * pad})


def hmac_cost(size: int, count: int) -> float:
    """Median microseconds of one sign + one verify of a ``size``-byte body."""
    auth = ephemeral()
    body = encode(envelope(size))
    samples = []
    for _ in range(count):
        start = time.perf_counter_ns()
        auth.verify(auth.sign(body))
        samples.append((time.perf_counter_ns() - start) / 1000)
    return statistics.median(samples)


class Echo:
    """An echo agent in a process of its own (as between agents), and this process's client
    of it; both with the hive's policy (``on``) or a pass-through one."""

    def __init__(self, where: str, key: bytes, on: bool, size: int) -> None:
        self.child = subprocess.Popen(
            [sys.executable, "-m", "bench.auth_cost", "--serve", where, "--key", key.hex(),
             *([] if on else ["--plain"])], cwd=REPO, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True)
        self.client = transport(where, policy(key, on, window_of(where)))
        self.env = envelope(size)
        assert self.child.stdout is not None and self.child.stdout.readline().strip() == "ready"
        for _ in range(50):  # warm up: connections, pools
            self.once()

    def once(self) -> float:
        """Milliseconds of one round trip."""
        start = time.perf_counter()
        check_reply(self.client.request([self.env], 5.0)[0])
        return (time.perf_counter() - start) * 1000

    def close(self) -> None:
        self.client.close()
        assert self.child.stdin is not None
        self.child.stdin.close()
        self.child.wait(timeout=30)


def compare(name: str, where: str, requests: int, rounds: int, size: int) -> None:
    """p50 with and without authentication, requests interleaved one by one (ABBA) between
    two echo agents, so a change in the machine's load hits both sides alike; the spread is
    the a/b of each of ``rounds`` consecutive blocks of requests."""
    key = new_key()
    echo = {on: Echo(f"{where}-{'on' if on else 'off'}", key, on, size) for on in (True, False)}
    got: dict[bool, list[float]] = {True: [], False: []}
    try:
        for i in range(requests):
            for on in (True, False) if i % 2 == 0 else (False, True):
                got[on].append(echo[on].once())
    finally:
        for e in echo.values():
            e.close()
    block = max(1, requests // rounds)
    blocks = sorted(100 * (pct(got[True][b:b + block], 0.5) / pct(got[False][b:b + block], 0.5)
                           - 1) for b in range(0, requests - block + 1, block))
    with_auth, without = pct(got[True], 0.5), pct(got[False], 0.5)
    trip_ms = 2 * hmac_cost(size, 2000) / 1000
    print(f"{name:6} {size:>7} B  p50 with auth {with_auth:6.3f} ms  without "
          f"{without:6.3f} ms  a/b {100 * (with_auth - without) / without:+5.1f}% "
          f"(blocks of {block}: median {statistics.median(blocks):+5.1f}%, "
          f"{blocks[0]:+5.1f}..{blocks[-1]:+5.1f}%)  hmac alone {trip_ms * 1000:5.1f} us = "
          f"{100 * trip_ms / without:4.1f}% of p50  ({len(got[True])} requests each)",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 20_480])
    parser.add_argument("--only", choices=("unix", "redis"), help="one transport only")
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # the echo agent's own mode
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--plain", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve, bytes.fromhex(args.key), not args.plain)

    print("HMAC-SHA256 sign + verify per message (median of 2000):")
    for size in SIZES:
        print(f"  {size:>7} B  {hmac_cost(size, 2000):8.2f} us")
    run: Callable[[str, str], None] = lambda name, where: [  # noqa: E731
        compare(name, where, args.requests, args.rounds, size) for size in args.sizes]
    if args.only != "redis":
        with tempfile.TemporaryDirectory(prefix="auth-bench-") as tmp:
            run("unix", f"unix:{tmp}/run")
    if args.only != "unix":
        prefix = f"bench-auth-{uuid.uuid4().hex[:8]}"
        try:
            run("redis", f"redis:{prefix}")
        finally:
            for side in ("on", "off"):
                purge_hive_keys(URL, "bench", f"{prefix}-{side}")


if __name__ == "__main__":
    main()
