"""What authentication costs: request p50 with and without it on Unix sockets (a handshake
per connection, hive_core.transports.conn_auth) and Redis (HMAC-SHA256 per message); numbers
are indicative: a shared 2-core box.

    python -m bench.auth_cost --requests 4000 --rounds 10 [--only unix|redis] [--block N]

* ``sign+verify``: one message signed and verified (hive_core.auth), by body size; a
  request/reply round trip on Redis does it twice (the request and the reply).
* ``p50``: sequential request/reply round trips from this process to an echo agent in a
  process of its own (as between agents), with the hive's authentication and without any (a
  pass-through message policy; on Unix, connections used without a handshake). Two echo
  agents run side by side and requests alternate between them one by one (ABBA), so drift in
  the machine's load hits both alike (whole rounds of one then the other, as this bench
  first did, moved the a/b by +-10% on a busy box). One by one, each signed request follows
  an unsigned one, so the MAC's code and tables are cold every time (a cold HMAC is ~10-15
  us against ~2 warm): the worst case. ``--block N`` alternates every N requests instead,
  closer to a hive, where every message is signed. The Redis echo agent keeps its record of
  handled requests on disk, as an agent does (one record per signed request). Each of
  ``--rounds`` rounds starts a fresh pair (in alternating order): one pair can sit on the
  cores unevenly for its whole life (+-9% between two identical agents was seen). ``a/b`` is
  what authentication adds to the p50 end to end -- the target is < 5% -- as the median (and
  range) of the rounds' a/b, and of all requests pooled; ``hmac alone`` is two sign + verify
  of a request-sized body measured alone (an upper bound on the MAC work of a round trip
  whose reply is small), relative to the unauthenticated p50 (Redis rows). Unix rows show
  instead ``new conn``: the p50 of a first request on a new connection (connect, handshake,
  request), with and without the handshake -- what it costs, once per pooled connection.
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
from hive_core.transports.conn_auth import ClientHandshake, ConnectionAuth, ListenerHandshake
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

    def verify(self, data: bytes, *, redelivery: bool | Callable[[], bool] = False) -> bytes:
        return data

    def verify_reply(self, data: bytes) -> bytes:
        return data

    def open(self, data: bytes, redelivery: bool | Callable[[], bool] = False
             ) -> tuple[bytes, bytes, int]:
        return data, b"", 0  # no nonce: the broker records nothing, as for unsigned bytes


class Unauthenticated(ConnectionAuth):
    """The Unix baseline: connections used at once, without a handshake (benchmark only)."""

    def client(self) -> ClientHandshake | None:
        return None

    def listener(self) -> ListenerHandshake | None:
        return None


def policy(key: bytes, on: bool, window: float) -> MessageAuth:
    auth = with_key(key, window)
    return auth if on else PassThrough(auth.source, window=window)


def transport(where: str, key: bytes, on: bool, replay_dir: Path | None = None
              ) -> ShardTransport:
    """``unix:RUN_DIR`` or ``redis:PREFIX``, with the hive's authentication or none.
    ``replay_dir``: where a serving Redis agent records what it handled, as an agent does
    (hive_core.transports.handled_journal: one record per request with authentication)."""
    kind, _, arg = where.partition(":")
    auth = policy(key, on, window_of(where))
    if kind == "unix":
        return UnixSocketTransport(Path(arg), auth=auth,
                                   conn_auth=None if on else Unauthenticated(auth))
    return RedisShardTransport(URL, "bench", key_prefix=arg, auth=auth, replay_dir=replay_dir)


def window_of(where: str) -> float:
    return WINDOW if where.startswith("unix:") else BROKER_WINDOW


def serve(where: str, key: bytes, on: bool) -> None:
    """The echo agent (a child process): serves until its stdin closes."""
    with tempfile.TemporaryDirectory(prefix="auth-bench-replay-") as replay:
        server = transport(where, key, on, Path(replay))
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
        self.where, self.key, self.on = where, key, on
        self.client = transport(where, key, on)
        self.env = envelope(size)
        assert self.child.stdout is not None and self.child.stdout.readline().strip() == "ready"
        for _ in range(50):  # warm up: connections, pools
            self.once()

    def once(self) -> float:
        """Milliseconds of one round trip."""
        start = time.perf_counter()
        check_reply(self.client.request([self.env], 5.0)[0])
        return (time.perf_counter() - start) * 1000

    def fresh(self) -> float:
        """Milliseconds of one round trip on a new connection (a client of its own)."""
        client = transport(self.where, self.key, self.on)
        try:
            start = time.perf_counter()
            check_reply(client.request([self.env], 5.0)[0])
            return (time.perf_counter() - start) * 1000
        finally:
            client.close()

    def close(self) -> None:
        self.client.close()
        assert self.child.stdin is not None
        self.child.stdin.close()
        self.child.wait(timeout=30)


def compare(name: str, where: str, requests: int, rounds: int, size: int,
            block: int = 1) -> None:
    """p50 with and without authentication, requests interleaved one by one (ABBA) between
    two echo agents, so a change in the machine's load hits both sides alike. Each of
    ``rounds`` rounds starts a fresh pair of echo agents (in alternating order): a pair can
    sit on the cores unevenly for its whole life (+-9% between identical agents was seen),
    so the spread is the a/b of each round, and the headline is the median of those."""
    key = new_key()
    got: dict[bool, list[float]] = {True: [], False: []}
    fresh: dict[bool, list[float]] = {True: [], False: []}
    per_round: list[float] = []
    each = max(1, requests // rounds)
    for r in range(rounds):
        order = (True, False) if r % 2 == 0 else (False, True)
        echo = {on: Echo(f"{where}-{r}-{'on' if on else 'off'}", key, on, size)
                for on in order}
        mine: dict[bool, list[float]] = {True: [], False: []}
        try:
            for i in range(0, each, block):
                for on in order if i // block % 2 == 0 else order[::-1]:
                    mine[on].extend(echo[on].once() for _ in range(min(block, each - i)))
            for i in range(max(1, min(300, requests // 10) // rounds) if name == "unix" else 0):
                for on in order if i % 2 == 0 else order[::-1]:
                    fresh[on].append(echo[on].fresh())
        finally:
            for e in echo.values():
                e.close()
        per_round.append(100 * (pct(mine[True], 0.5) / pct(mine[False], 0.5) - 1))
        for on in (True, False):
            got[on] += mine[on]
    per_round.sort()
    with_auth, without = pct(got[True], 0.5), pct(got[False], 0.5)
    if fresh[True]:
        extra = (f"new conn p50 {pct(fresh[True], 0.5):6.3f} ms, without handshake "
                 f"{pct(fresh[False], 0.5):6.3f} ms ({len(fresh[True])} each)")
    else:
        trip_ms = 2 * hmac_cost(size, 2000) / 1000
        extra = f"hmac alone {trip_ms * 1000:5.1f} us = {100 * trip_ms / without:4.1f}% of p50"
    print(f"{name:6} {size:>7} B  block {block:>3}  p50 with auth {with_auth:6.3f} ms  without "
          f"{without:6.3f} ms  a/b {statistics.median(per_round):+5.1f}% (median of "
          f"{rounds} rounds, {per_round[0]:+5.1f}..{per_round[-1]:+5.1f}%; pooled "
          f"{100 * (with_auth - without) / without:+5.1f}%)  {extra}  ({len(got[True])} "
          "requests each)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 20_480])
    parser.add_argument("--only", choices=("unix", "redis"), help="one transport only")
    parser.add_argument("--block", type=int, default=1,
                        help="requests in a row to one side before switching (ABBA by block)")
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
        compare(name, where, args.requests, args.rounds, size, args.block)
        for size in args.sizes]
    if args.only != "redis":
        with tempfile.TemporaryDirectory(prefix="auth-bench-") as tmp:
            run("unix", f"unix:{tmp}/run")
    if args.only != "unix":
        prefix = f"bench-auth-{uuid.uuid4().hex[:8]}"
        try:
            run("redis", f"redis:{prefix}")
        finally:
            for r in range(args.rounds):
                for side in ("on", "off"):
                    purge_hive_keys(URL, "bench", f"{prefix}-{r}-{side}")


if __name__ == "__main__":
    main()
