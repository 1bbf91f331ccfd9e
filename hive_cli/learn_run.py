"""One ``learn``: turns streamed to the agents in batches, each done once, none lost.

Turn i goes to agent i mod N, ``batch`` turns (and at most ``MAX_BATCH_BYTES``) per LEARN
message, ``parallel`` agents at a time. The turns come from an iterator (hive_cli.inputs
streams a file), and only one window of N x ``batch`` turns is held at a time, so the CLI's
memory does not grow with the input.

What happens when a reply does not come:

* Every batch has an id (``<run>-<n>``). A batch whose reply timed out is sent again *with
  the same id*: the agent answers the repeat with the first result, or waits for the work in
  progress (agent_runtime.learn_requests), instead of doing it again. So the facts counted
  here are those the agent really learned, counted once.
* An agent that cannot be reached (its socket refuses: it died) or that kept timing out
  gets no more batches: the batch goes to the next live agent (failover). The learn stops
  only when no agent is left, with "K of T turns learned; re-running is safe" -- re-running
  is safe because a fact learned twice is one fact.
* An agent's own refusal (over budget, malformed) is the answer: it stops the learn.
"""

from __future__ import annotations

import hashlib
import itertools
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent_runtime.turn_context import item_texts, with_before
from hive_cli.agent_link import AgentLink, describe
from hive_cli.errors import CliFailure, Interrupted
from hive_core.errors import DeadlineExceeded, HiveError, MessageRejected, TransportError
from hive_core.transports.retry import Backoff, RetryState

LEARN_BATCH = 50
LEARN_PARALLEL = 4
LEARN_RETRIES = 3  # re-sends of one batch to one agent (same id) before it is given up on
MAX_BATCH_BYTES = 4 * 1024 * 1024  # below the agents' budget (learn_requests.MAX_LEARN_BYTES)
RESUMABLE = "re-running the same learn is safe (a fact learned twice is one fact)"


@dataclass(slots=True)
class Job:
    """One LEARN batch: its id, the agent meant to learn it, its turns."""

    batch_id: str
    agent: str
    turns: list[Any]
    tries: int = 0  # sends to ``agent`` so far


@dataclass(slots=True)
class Tally:
    """What the agents confirmed, as it goes (``done`` turns is what an interrupt reports)."""

    total: int
    done: int = 0
    per_agent: dict[str, int] = field(default_factory=dict)
    ids: set[int] = field(default_factory=set)  # 64-bit prefixes of fact ids: bounded memory
    failed_shards: set[str] = field(default_factory=set)
    retracted: set[str] = field(default_factory=set)
    restored: set[str] = field(default_factory=set)
    repeats: int = 0  # batches answered from an agent's journal (sent again, done once)
    failovers: list[str] = field(default_factory=list)

    def add(self, job: Job, agent: str, result: dict[str, Any]) -> None:
        self.done += len(job.turns)
        self.per_agent[agent] = self.per_agent.get(agent, 0) + int(result["facts"])
        self.ids.update(_key(str(f)) for f in result.get("fact_ids") or ())
        self.failed_shards.update(str(s) for s in result.get("failed_shards") or ())
        self.retracted.update(str(f) for f in result.get("retracted") or ())
        self.restored.update(str(f) for f in result.get("restored") or ())
        self.repeats += bool(result.get("repeat"))


def _key(fact_id: str) -> int:
    """64 bits of a fact id: an int in a set costs a third of the id string."""
    return int.from_bytes(hashlib.blake2b(fact_id.encode(), digest_size=8).digest(), "big")


def windows(turns: Iterable[Any], agents: Sequence[str], batch: int,
            max_bytes: int = MAX_BATCH_BYTES) -> Iterator[list[tuple[str, list[Any]]]]:
    """Rounds of (agent, batch): turn i to agent i mod N, one window of N x ``batch`` turns
    at a time; a batch is also cut at ``max_bytes`` of text."""
    n = len(agents)
    it = iter(turns)
    while True:
        window = list(itertools.islice(it, n * batch))
        if not window:
            return
        per: list[list[Any]] = [window[i::n] for i in range(n)]
        yield [(agents[i], part) for i, turns_of in enumerate(per)
               for part in _by_bytes(turns_of, max_bytes) if part]


def _by_bytes(turns: list[Any], max_bytes: int) -> list[list[Any]]:
    out: list[list[Any]] = [[]]
    size = 0
    for turn in turns:
        n = sum(len(text.encode("utf-8", "surrogatepass")) for text in item_texts(turn))
        if out[-1] and size + n > max_bytes:
            out.append([])
            size = 0
        out[-1].append(turn)
        size += n
    return out


class LearnRun:
    """Sends the rounds of one learn (see the module docstring)."""

    def __init__(self, link: AgentLink, agents: Sequence[str], timeout: float,
                 advance: Callable[[int], None], parallel: int, restore: bool,
                 tally: Tally) -> None:
        self.link = link
        self.live = list(agents)
        self.gone: dict[str, str] = {}  # agent -> why it gets no more batches
        self.timeout = timeout
        self.advance = advance
        self.parallel = parallel
        self.restore = restore
        self.tally = tally
        self._ids = (f"{uuid.uuid4().hex[:12]}-{n}" for n in itertools.count())
        self._spread = itertools.count()

    def run(self, rounds: Iterable[list[tuple[str, list[Any]]]]) -> None:
        for jobs in rounds:
            pending = [Job(next(self._ids), agent, turns) for agent, turns in jobs]
            for i in range(0, len(pending), self.parallel):
                self._send_all(pending[i:i + self.parallel])

    def _send_all(self, jobs: list[Job]) -> None:
        """Until every job is confirmed: send (one job per agent at a time), re-send those
        that met a transient failure with their id, move those of lost agents elsewhere.
        Bounded: an agent gets at most 1 + LEARN_RETRIES sends of a job, then no more jobs."""
        retry = RetryState(Backoff(base=0.2, cap=2.0))
        waiting = list(jobs)
        while waiting:
            now: dict[str, Job] = {}
            later: list[Job] = []
            for job in waiting:
                if job.agent in self.gone:
                    self._reassign(job)
                if job.agent in now:
                    later.append(job)
                else:
                    now[job.agent] = job
            results = self.link.learn({a: j.turns for a, j in now.items()}, self.timeout,
                                      {a: j.batch_id for a, j in now.items()}, self.restore)
            again = False
            for agent, job in now.items():
                job.tries += 1
                if not self._settle(job, agent, results[agent]):
                    later.append(job)
                    again = again or job.agent == agent
            if again:
                retry.failed()  # a short backoff before the same agent is asked again
            waiting = later

    def _settle(self, job: Job, agent: str, result: Any) -> bool:
        """True when the job is done; else decide what its next send is."""
        if isinstance(result, dict) and not result.get("in_progress"):
            self.tally.add(job, agent, result)
            self.advance(len(job.turns))
            return True
        if isinstance(result, HiveError) and not _transient(result):
            reason = describe(result)
            reason = reason if reason.startswith(agent) else f"{agent}: {reason}"
            raise CliFailure(f"learning stopped after {self.tally.done:,} of "
                             f"{self.tally.total:,} turns: {reason}; {RESUMABLE}")
        if job.tries <= LEARN_RETRIES:
            return False  # the same agent, the same id: the agent does the work once
        busy = isinstance(result, dict | DeadlineExceeded)
        why = (f"no reply within {self.timeout:g}s, {job.tries} times" if busy
               else describe(result))
        self._give_up_on(agent, why)
        return False

    def _give_up_on(self, agent: str, why: str) -> None:
        if agent in self.live:
            self.live.remove(agent)
            self.gone[agent] = why
            self.tally.failovers.append(agent)

    def _reassign(self, job: Job) -> None:
        if not self.live:
            lost = "; ".join(f"{a}: {w}" for a, w in self.gone.items())
            raise CliFailure(f"learning stopped after {self.tally.done:,} of "
                             f"{self.tally.total:,} turns: no agent left to learn ({lost}); "
                             f"{RESUMABLE}")
        job.agent = self.live[next(self._spread) % len(self.live)]
        job.tries = 0


def _transient(result: HiveError) -> bool:
    return isinstance(result, TransportError) and not isinstance(result, MessageRejected)


def learn(link: AgentLink, turns: Iterable[Any], total: int, agents: Sequence[str],
          timeout: float, advance: Callable[[int], None], batch: int = LEARN_BATCH,
          parallel: int = LEARN_PARALLEL, restore: bool = False) -> dict[str, Any]:
    """LEARN ``turns`` (``total`` of them) through ``agents``; the report for the renderer.

    ``facts`` counts what the agents stored (each batch once); ``unique_facts`` distinct
    fact ids; ``retracted`` the distinct facts not learned because they were retracted
    earlier (``restore`` learns them: ``restored``); ``repeats`` the batches that were sent
    again after a timeout and answered from the agent's journal; ``failover`` the agents that
    were given up on during the run (their batches went to others).
    """
    t0 = time.monotonic()
    tally = Tally(total, per_agent=dict.fromkeys(agents, 0))
    run = LearnRun(link, agents, timeout, advance, parallel, restore, tally)
    try:
        run.run(windows(with_before(turns), list(agents), batch))
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted: {tally.done:,} of {total:,} turns learned; "
                          f"{RESUMABLE}") from None
    return {"hive": link.hive, "turns": total, "facts": sum(tally.per_agent.values()),
            "unique_facts": len(tally.ids), "per_agent": tally.per_agent,
            "failed_shards": sorted(tally.failed_shards), "retracted": len(tally.retracted),
            "restored": len(tally.restored), "repeats": tally.repeats,
            "failover": {a: run.gone[a] for a in tally.failovers},
            "seconds": round(time.monotonic() - t0, 3)}


def check_outcome(doc: dict[str, Any]) -> None:
    """Fail (exit 1, one line) when the learn stored less than it was given.

    Retracted facts make it fail rather than warn: the user asked for content to be learned
    and some of it was not, and a script must be able to tell -- as ``cp`` fails on the one
    file it could not copy. Everything else was learned, so ``--restore`` re-runs safely.
    """
    if doc["retracted"]:
        n = doc["retracted"]
        raise CliFailure(f"{n} fact{'s were' if n != 1 else ' was'} retracted earlier and "
                         f"{'were' if n != 1 else 'was'} not learned; `learn --restore` to "
                         f"learn {'them' if n != 1 else 'it'} again")
    if doc["failed_shards"]:
        raise CliFailure(f"some facts are missing replicas: shard(s) "
                         f"{', '.join(doc['failed_shards'])} failed to store them; every "
                         "fact reached a live owner for each role, "
                         f"anti-entropy copies the rest once the writes pause, and {RESUMABLE}")
