"""A seeded synthetic operations corpus with questions whose answers are known fact ids.

Why synthetic: the core benchmark must build 20,000 facts in a second, with no network and no
LLM, and still look like what a hive of operations agents learns: people, projects whose
deadlines move (a later fact supersedes an earlier one), security incidents, service metrics
and log lines. The vocabulary deliberately overlaps (the same people own projects and command
incidents, the same services appear in incidents, metrics and logs, the same dates recur), so
that a question's words also hit many facts that do not answer it.

Every fact is built by an *entity builder* that is given a budget (how many facts it may still
emit) and returns its facts and the questions those facts answer. A question about a "current"
value (a project's deadline, a service's version) expects the latest fact of the entity's
chain, computed after the budget has trimmed the chain, so the expectation is always right.

Same seed, same corpus: ``created_at`` comes from the fact's own date, never the clock.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from hive_core.facts import HiveFact

FIRST_NAMES = """
Ada Alan Amara Anders Aisha Bruno Carmen Chen Chiara Dana Diego Elena Emeka Farah Felix Grace
Hana Hugo Ines Ivan Jonas Julia Kai Kenji Lars Leila Liam Lucia Malik Marta Mateo Mei Nadia
Nikos Noor Olga Omar Pablo Priya Quinn Rafael Rosa Sami Sofia Tariq Tomas Uma Vera Wei Yara
Yusuf Zara Ingrid Kwame Lena Mira Oskar Ravi Selin Theo
""".split()

LAST_NAMES = """
Okafor Lindqvist Moreau Tanaka Novak Ferreira Haddad Kowalski Nguyen Rossi Schmidt Ivanova
Mensah Castillo Petrov Yamamoto Bauer Costa Dubois Eriksen Fischer Garcia Hansen Ibrahim
Jensen Kim Larsen Martins Nakamura Olsen Park Quintero Reyes Silva Takahashi Urban Vargas
Weber Xu Yilmaz Zielinski Adeyemi Brennan Chowdhury Delgado Esposito Fontaine Gupta Horvat
Iqbal Jovanovic Kaur Lopez Mwangi Nilsson Ortiz Popescu Rahman Sato Torres
""".split()

ROLES = """
engineer senior-engineer staff-engineer manager director analyst architect designer
product-manager sre security-engineer data-scientist tech-lead
""".split()

TEAMS = """
platform payments identity search storage networking security observability billing mobile
growth data infrastructure reliability checkout logistics
""".split()

ADJECTIVES = """
Amber Arctic Azure Black Blue Bright Copper Crimson Dark Emerald Golden Gray Green Hidden
Iron Jade Silent Silver Swift Red Scarlet Violet White Wild Lunar Solar Northern Rapid Quiet
Stone
""".split()

NOUNS = """
Falcon Heron Otter Lynx Raven Badger Cobra Condor Coyote Crane Dolphin Eagle Ferret Gazelle
Hawk Ibis Jaguar Kestrel Lemur Marten Narwhal Orca Osprey Panther Pelican Puma Quail Sparrow
Stork Tiger Viper Walrus Wolf Yak Zebra Bison Cougar Dingo Egret Finch Gecko Hornet Impala
Jackal Koala Llama Mantis Newt Oriole Python Robin Salmon Tapir Urchin Vulture Weasel Wren
Mongoose Piranha Beetle
""".split()

GOALS = [
    "migrate the billing database to the new storage cluster",
    "replace the legacy login flow with passkeys",
    "cut checkout latency below 200 ms",
    "move batch jobs from cron to the workflow engine",
    "roll out mutual TLS between internal services",
    "consolidate the three search indexes into one",
    "ship offline mode for the mobile app",
    "reduce cloud spend on idle compute",
    "add multi-region failover for the payments stack",
    "retire the on-premise log pipeline",
    "build a self-service dashboard for incident metrics",
    "upgrade every cluster to Kubernetes v1.29",
]

SERVICE_PREFIXES = """
checkout payments search auth inventory billing orders shipping catalog pricing ledger
notifications profile session gateway recommendations reviews fraud tax invoice media upload
export reporting scheduler
""".split()

SERVICE_SUFFIXES = "api worker gateway service db cache".split()

HOST_ROLES = "web app db cache queue edge batch k8s-node".split()

ATTACK_VECTORS = [
    "a phishing email to the finance team",
    "an exposed admin panel",
    "a vulnerable VPN appliance",
    "a compromised CI token",
    "an unpatched file transfer server",
    "a malicious dependency in the build",
    "stolen session cookies",
]

LOG_MESSAGES = [
    "connection reset by peer",
    "upstream request timed out",
    "TLS handshake failed",
    "disk usage above 95%",
    "out of memory, worker restarted",
    "database connection pool exhausted",
    "certificate expires in 3 days",
    "rate limit exceeded for client",
    "checksum mismatch on replica",
    "DNS lookup failed for upstream",
]

START = date(2025, 1, 1)
SPAN_DAYS = 730


@dataclass(frozen=True, slots=True)
class Question:
    """A natural-English question and the fact ids that answer it (any one counts as a hit)."""

    text: str
    expected: tuple[str, ...]
    kind: str


@dataclass(frozen=True, slots=True)
class Corpus:
    facts: list[HiveFact]
    questions: list[Question]
    seed: int


def _epoch(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


class _Vocabulary:
    """Entities shared across kinds (people, services, hosts), drawn once per corpus."""

    def __init__(self, rng: random.Random, n_facts: int) -> None:
        self.rng = rng
        names = [f"{f} {last}" for f in FIRST_NAMES for last in LAST_NAMES]
        rng.shuffle(names)
        self.people = names[: max(20, min(len(names), n_facts // 8))]
        services = [f"{p}-{s}" for p in SERVICE_PREFIXES for s in SERVICE_SUFFIXES]
        rng.shuffle(services)
        self.services = services[: max(10, min(len(services), n_facts // 40))]
        self.hosts = [f"{r}-{i:03d}" for r in HOST_ROLES for i in range(1, 121)]
        codenames = [f"{a} {n}" for a in ADJECTIVES for n in NOUNS]
        rng.shuffle(codenames)
        self.codenames = codenames
        self.subnets = [f"10.{a}.{b}.0/24" for a in range(0, 8) for b in range(0, 64)]
        self._next = {"person": 0, "project": 0, "incident": 0, "service": 0}

    def day(self) -> date:
        return START + timedelta(days=self.rng.randrange(SPAN_DAYS))

    def take(self, kind: str, pool: list[str]) -> str | None:
        """The next unused entity of ``kind``, or None when the pool is exhausted."""
        i = self._next[kind]
        if i >= len(pool):
            return None
        self._next[kind] = i + 1
        return pool[i]

    def person(self) -> str:
        return self.rng.choice(self.people)

    def service(self) -> str:
        return self.rng.choice(self.services)


Built = tuple[list[HiveFact], list[Question]]
Builder = Callable[[_Vocabulary, int], Built | None]


def _fact(content: str, concept: str, day: date, tags: tuple[str, ...] = ()) -> HiveFact:
    return HiveFact(content=content, concept=concept, created_at=_epoch(day), tags=tags)


def _person(v: _Vocabulary, budget: int) -> Built | None:
    name = v.take("person", v.people)
    if name is None:
        return None
    rng = v.rng
    first, last = name.split(" ", 1)
    role, team = rng.choice(ROLES), rng.choice(TEAMS)
    email = f"{first.lower()}.{last.lower()}@example.com"
    joined = v.day()
    facts = [_fact(f"{name} is a {role} on the {team} team, based in "
                   f"{rng.choice(['Berlin', 'Lisbon', 'Austin', 'Toronto', 'Nairobi', 'Seoul'])}.",
                   "person", joined)]
    questions = [Question(f"Which team does {name} work on?", (facts[0].fact_id,),
                          "person-team")]
    if budget >= 2:
        facts.append(_fact(f"The email address of {name} is {email}; "
                           f"{first} joined {team} on {joined.isoformat()}.", "person", joined))
        questions.append(Question(f"What is the email address of {name}?",
                                  (facts[1].fact_id,), "person-email"))
    return facts, questions


def _project(v: _Vocabulary, budget: int) -> Built | None:
    code = v.take("project", v.codenames)
    if code is None:
        return None
    rng = v.rng
    owner, team = v.person(), rng.choice(TEAMS)
    start = v.day()
    facts = [_fact(f"Project {code} is owned by {owner} and staffed by the {team} team.",
                   "project", start)]
    questions = [Question(f"Who owns project {code}?", (facts[0].fact_id,), "project-owner")]
    if budget >= 2:
        facts.append(_fact(f"The goal of project {code} is to {rng.choice(GOALS)}.",
                           "project", start))
    updates = min(rng.randint(1, 4), budget - len(facts))
    deadline = start + timedelta(days=rng.randint(60, 180))
    as_of = start
    for i in range(updates):
        if i == 0:
            text = f"Project {code} has an initial deadline of {deadline.isoformat()}."
        else:
            as_of = as_of + timedelta(days=rng.randint(10, 60))
            deadline = deadline + timedelta(days=rng.randint(7, 90))
            text = rng.choice([
                f"As of {as_of.isoformat()} the deadline of project {code} moved to "
                f"{deadline.isoformat()}.",
                f"Update {as_of.isoformat()}: project {code} slipped; its new deadline is "
                f"{deadline.isoformat()}.",
            ])
        facts.append(_fact(text, "project deadline", as_of, tags=(code,)))
    if updates:
        questions.append(Question(f"What is the current deadline of project {code}?",
                                  (facts[-1].fact_id,), "deadline-current"))
    return facts, questions


def _incident(v: _Vocabulary, budget: int) -> Built | None:
    number = v._next["incident"]
    v._next["incident"] = number + 1
    rng = v.rng
    inc = f"INC-{1000 + number}"
    day = v.day()
    cve = f"CVE-{rng.randint(2019, 2025)}-{rng.randint(1000, 49999)}"
    svc = v.service()
    facts = [_fact(f"{inc} was opened on {day.isoformat()} after attackers exploited {cve} "
                   f"in {svc} via {rng.choice(ATTACK_VECTORS)}.", "incident", day)]
    questions = [Question(f"Which CVE was exploited in {inc}?", (facts[0].fact_id,),
                          "incident-cve")]
    subnet = rng.choice(v.subnets)
    extra = [
        (f"During {inc} the affected subnet was {subnet}; {rng.randint(2, 60)} hosts were "
         f"isolated.", f"Which subnet was affected by {inc}?", "incident-subnet"),
        (f"The estimated cost of {inc} is ${rng.randint(1, 99) / 10:.1f}M including "
         f"recovery and legal fees.", f"How much did {inc} cost?", "incident-cost"),
        (f"{v.person()} was the incident commander for {inc}; the postmortem is due "
         f"{(day + timedelta(days=14)).isoformat()}.", f"Who was the incident commander for {inc}?",
         "incident-commander"),
    ]
    for text, question, kind in extra[: budget - 1]:
        fact = _fact(text, "incident", day, tags=(inc,))
        facts.append(fact)
        questions.append(Question(question, (fact.fact_id,), kind))
    return facts, questions


def _service(v: _Vocabulary, budget: int) -> Built | None:
    svc = v.take("service", v.services)
    if svc is None:
        return None
    rng = v.rng
    facts: list[HiveFact] = []
    questions: list[Question] = []
    days = sorted(v.day() for _ in range(rng.randint(15, 40)))
    minor = rng.randint(10, 30)
    for day in days:
        if len(facts) >= budget:
            break
        p95 = rng.randint(40, 900)
        roll = rng.random()
        if roll < 0.45:
            fact = _fact(f"On {day.isoformat()} the p95 latency of {svc} was {p95} ms and its "
                         f"p99 latency was {p95 + rng.randint(20, 600)} ms.", "metric", day)
            q = f"What was the p95 latency of {svc} on {day.isoformat()}?"
            kind = "metric-latency"
        elif roll < 0.8:
            fact = _fact(f"{svc} error rate was {rng.randint(1, 500) / 100:.2f}% on "
                         f"{day.isoformat()} across {rng.randint(3, 40)} pods.", "metric", day)
            q = f"What was the error rate of {svc} on {day.isoformat()}?"
            kind = "metric-error-rate"
        else:
            minor += rng.randint(1, 3)
            fact = _fact(f"{svc} was upgraded to v1.{minor} on {day.isoformat()}.",
                         "service version", day, tags=(svc,))
            q = f"Which version was {svc} upgraded to on {day.isoformat()}?"
            kind = "metric-version"
        facts.append(fact)
        questions.append(Question(q, (fact.fact_id,), kind))
    versions = [f for f in facts if f.concept == "service version"]
    if versions:
        questions.append(Question(f"What version is {svc} running now?",
                                  (versions[-1].fact_id,), "version-current"))
    return facts, questions


def _logs(v: _Vocabulary, budget: int) -> Built | None:
    rng = v.rng
    facts, questions = [], []
    day = v.day()
    svc = v.service()
    for _ in range(min(budget, rng.randint(1, 5))):
        host = rng.choice(v.hosts)
        moment = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(
            seconds=rng.randrange(86400))
        stamp = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        code = f"E{rng.randint(1000, 9999)}"
        fact = _fact(f"{stamp} {host} {svc} ERROR {code} {rng.choice(LOG_MESSAGES)} "
                     f"(request {rng.getrandbits(32):08x})", "log", day)
        facts.append(fact)
        questions.append(Question(f"Which error code did {host} log at {stamp}?",
                                  (fact.fact_id,), "log"))
    return facts, questions


# (builder, share of the corpus, mean facts per entity): builders are picked with weight
# share / size, so each kind ends up with about its share of the facts.
KINDS: tuple[tuple[Builder, float, float], ...] = (
    (_person, 0.15, 2.0), (_project, 0.20, 4.5), (_incident, 0.25, 4.0),
    (_service, 0.20, 27.0), (_logs, 0.20, 3.0),
)


def _balanced(pool: list[Question], n: int, rng: random.Random) -> list[Question]:
    """``n`` questions taken round-robin over kinds, so rare kinds are not drowned out."""
    by_kind: dict[str, list[Question]] = {}
    for q in pool:
        by_kind.setdefault(q.kind, []).append(q)
    queues = [by_kind[k] for k in sorted(by_kind)]
    for queue in queues:
        rng.shuffle(queue)
    out: list[Question] = []
    while len(out) < n and any(queues):
        for queue in queues:
            if queue and len(out) < n:
                out.append(queue.pop())
    rng.shuffle(out)
    return out


def build_corpus(n_facts: int, n_questions: int, seed: int = 7) -> Corpus:
    """``n_facts`` distinct facts and up to ``n_questions`` questions, reproducible by seed."""
    if n_facts < 1:
        raise ValueError("a corpus needs at least one fact")
    rng = random.Random(seed)
    vocab = _Vocabulary(rng, n_facts)
    builders = [b for b, _, _ in KINDS]
    weights = [share / size for _, share, size in KINDS]
    facts: list[HiveFact] = []
    seen: set[str] = set()
    pool: list[Question] = []
    exhausted: set[int] = set()
    while len(facts) < n_facts:
        i = rng.choices(range(len(builders)), weights)[0]
        if i in exhausted:
            if len(exhausted) == len(builders):
                raise ValueError(f"cannot build {n_facts} distinct facts from the vocabulary")
            continue
        built = builders[i](vocab, n_facts - len(facts))
        if built is None:
            exhausted.add(i)
            continue
        new_facts, new_questions = built
        fresh = [f for f in new_facts if f.fact_id not in seen]
        if len(fresh) != len(new_facts):
            continue  # a rare random collision: drop the whole entity, keep expectations right
        seen.update(f.fact_id for f in fresh)
        facts.extend(fresh)
        pool.extend(new_questions)
    questions = _balanced(pool, n_questions, rng)
    return Corpus(facts=facts, questions=questions, seed=seed)
