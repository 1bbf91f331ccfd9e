"""The ``long-horizon`` question set: a long, seeded, multi-session log of workplace chatter.

Why synthetic: answers must be right by construction and the difficulty controlled. Most of
the log is *chatter* reusing the same people, projects, cities and teams ("Ada Okafor said the
standup ran long again."), so plain keyword search is tempted by noise; a few hundred planted
statements are spread over it, and the questions ask about those: static facts, one-off
needles, formatted numbers, values that change (the current one, the one before), relations
to count or list, two hops, and statements whose subject is named only in the turn before.

How it stays right: everything to be said is planned first as *stories* (a chain of values, a
relation, one fact), with the questions each answers, computed from the values its statements
are written from. A story's statements go to distinct sessions in order, so an update always
comes in a later session than what it updates. Questions are drawn round-robin over the
categories, placing the stories they need; the other stories follow as distractors while
there is room (``_PLANTED_SHARE`` of a session). Chatter fills the rest and never pairs a
person with a project or city that a question is about. Values that could be confused
(pet names, codes, the digits of numbers) are never reused.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from hive_core.evaluation.dataset import EvalSet, Question, Turn

CATEGORIES = ("fact", "needle", "numbers", "current", "past", "count", "list", "multi-hop",
              "context")

_CAST = ("Ada Okafor:f,Ravi Gupta:m,Mei Tanaka:f,Lars Eriksen:m,Sofia Marquez:f,Kwame Mensah:m,"
         "Ingrid Novak:f,Tomas Silva:m,Priya Raman:f,Jonas Weber:m,Amara Diallo:f,Mateo Rossi:m,"
         "Hana Kowalski:f,Omar Haddad:m,Leila Farouk:f,Felix Brandt:m,Yuki Sato:f,"
         "Diego Alvarez:m,Nadia Petrova:f,Samuel Osei:m,Chloe Dubois:f,Arjun Mehta:m,"
         "Elena Popescu:f,Victor Lindqvist:m")
_GENDER = dict(item.split(":") for item in _CAST.split(","))
PEOPLE = tuple(_GENDER)
PROJECTS = tuple(("Amber Falcon,Cobalt Heron,Crimson Otter,Silver Lynx,Jade Tortoise,Indigo Badger,"
                  "Scarlet Wren,Copper Moose,Ivory Gecko,Onyx Pelican,Violet Marten,Golden Ibis,"
                  "Teal Coyote,Saffron Bison,Slate Kestrel,Coral Puffin,Obsidian Hare").split(","))
CLUBS = ("chess club", "book club", "running club", "climbing club", "photography club")
CITIES = tuple("Lisbon Berlin Nairobi Osaka Toronto Madrid Dublin Seoul Austin Oslo Lagos Lima "
               "Warsaw Denver Porto".split())
TEAMS = tuple("payments platform growth search mobile billing analytics identity".split())
MONTHS = tuple("January February March April June July August September October November "
               "December".split())  # no May: the word is too common to judge an answer by
ROLES = tuple(("data engineer,product designer,site reliability engineer,technical writer,"
               "security analyst,frontend developer,backend developer,solutions architect,"
               "UX researcher,product manager,database administrator,recruiter,sales engineer,"
               "support engineer,release manager,network engineer,developer advocate,"
               "data scientist,compliance officer,payroll specialist,game designer,"
               "firmware engineer,test engineer,copywriter").split(","))
STATUSES = ("on track", "at risk", "blocked", "on hold", "in beta")
SPECIES = tuple("cat dog rabbit parrot hamster ferret goldfish".split())
PET_NAMES = tuple("Miso Biscuit Pepper Mochi Waffles Noodle Pickles Tofu Ziggy Juniper Pretzel "
                  "Nugget Clementine Pistachio Marzipan Dumpling Bramble Sprocket Gizmo Domino "
                  "Pumpkin Truffle Cinnamon Sesame Wasabi Paprika Basil Olive Muffin Peanut "
                  "Cricket Pebble Rusty Shadow Whiskers Snickers Toffee Nacho Kiwi Mango Figaro "
                  "Pancake Churro Pippin Mittens Luna Oreo Tinker".split())
LANGUAGES = tuple("Korean Swahili Portuguese Icelandic Turkish Hindi Greek Polish Finnish Tagalog "
                  "Dutch Arabic Vietnamese Hebrew Welsh Basque".split())
BREEDS = ("beagle", "corgi", "greyhound", "dachshund", "spaniel", "whippet")
SISTERS = ("Ilse", "Marisol", "Tove", "Anneliese", "Rosalind", "Beatrix")
CARS = ("Volvo", "Subaru", "Skoda", "Peugeot", "Mazda", "Toyota")
NOVELS = tuple("The Glass Orchard,Salt and Lanterns,The Quiet Meridian,A House of Kites,"
               "Winter Cartography,The Paper Tide".split(","))
RESTAURANTS = tuple("Casa Alba,Tin Lantern,Osteria Lupo,Blue Fig,Maison Verre,Saltbox Grill"
                    .split(","))
_WIFI_WORDS = ("tangerine", "harbor", "velvet", "comet", "meadow", "quartz", "thistle", "nimbus")
_HOSTS = ("orbit", "cinder", "glacier", "ember", "fjord", "pylon")

_SESSION_MIN, _SESSION_MAX = 20, 60
_FIRST_DAY = 1_767_225_600.0  # 2026-01-01T00:00:00Z: session i is day i
_PLANTED_SHARE = 0.4  # at most this share of a session is planted statements

Event = tuple[str, ...]  # the turns of one planted statement: one, or two for a context pair


@dataclass(frozen=True, slots=True)
class _Chain:
    """How an attribute that changes over time is stated and asked about."""

    name: str
    first: tuple[str, ...]  # {s} subject, {v} value
    then: tuple[str, ...]  # {old}: the value it replaces; never before {v}, see ``answered``
    now: tuple[str, ...]
    before: tuple[str, ...]  # {v}: the value that came after the one asked for


_LEAD = _Chain(
    "lead", ("{v} leads Project {s}.", "Project {s} is led by {v}."),
    ("Project {s} is now led by {v}.", "{v} took over Project {s} from {old}.",
     "{v} is the new lead of Project {s}."),
    ("Who leads Project {s} now?", "Who is the current lead of Project {s}?",
     "Who is in charge of Project {s} at the moment?"),
    ("Who led Project {s} before {v}?", "Who was the lead of Project {s} before {v} took over?"))
_DEADLINE = _Chain(
    "deadline", ("Project {s} is due on {v}.", "The deadline for Project {s} is {v}."),
    ("The new deadline for Project {s} is {v}.", "Project {s}'s deadline moved to {v}.",
     "Project {s} slipped again and is now due on {v}."),
    ("What is the current deadline of Project {s}?", "When is Project {s} due now?"),
    ("What was the deadline of Project {s} before it moved to {v}?",
     "When was Project {s} due before the deadline changed to {v}?"))
_STATUS = _Chain(
    "status", ("Project {s} is {v}.", "The status of Project {s} is {v}."),
    ("Project {s} is now {v}.", "Project {s}'s status changed to {v}.",
     "Status update: Project {s} is {v}."),
    ("What is the current status of Project {s}?", "What state is Project {s} in now?"),
    ("What was the status of Project {s} before it was {v}?",))
_OFFICE = _Chain(
    "office", ("{s} works out of the {v} office.", "{s} is based in the {v} office."),
    ("{s} moved to the {v} office from {old}.", "{s} relocated to {v}.",
     "{s} now works from the {v} office."),
    ("Where does {s} work now?", "Which office is {s} based in these days?",
     "Which city does {s} currently work in?"),
    ("Where did {s} work before moving to {v}?", "Which office was {s} in before the move to {v}?"))

# attribute -> (statements, questions); {p} person, {v} value, {pos} her/his
_FACTS = {
    "city": (("{p} lives in {v}.", "{p} has lived in {v} for years.", "{p}'s home is in {v}."),
             ("Which city does {p} live in?", "Where does {p} live?",
              "In which city is {p}'s home?")),
    "role": (("{p} works as a {v}.", "{p} is a {v} by trade."),
             ("What is {p}'s job?", "What does {p} do for a living?")),
    "team": (("{p} is on the {v} team.", "{p} belongs to the {v} team."),
             ("Which team is {p} on?", "What team does {p} belong to?")),
    "month": (("{p}'s birthday is in {v}.", "{p} celebrates {pos} birthday in {v}."),
              ("In which month is {p}'s birthday?", "When is {p}'s birthday?")),
}
_LEAD_HOPS = {
    "city": ("Which city does the lead of Project {s} live in?",
             "Where does the person who leads Project {s} live?"),
    "team": ("Which team is the lead of Project {s} on?",),
    "role": ("What is the job of the person who leads Project {s}?",),
    "month": ("In which month is the birthday of the lead of Project {s}?",),
}
_PET_HOPS = {
    "city": ("Which city does the owner of {s} live in?", "Where does {s}'s owner live?"),
    "team": ("Which team is {s}'s owner on?",),
}
# relation -> (statements with {s} subject and {v} item, count questions, list questions)
_RELATIONS = {
    "pets": (("{s} adopted a {sp} named {v}.", "{s} brought home a {sp} called {v}.",
              "{s} has a new {sp} named {v}."),
             ("How many pets does {s} have?", "How many animals does {s} own?"),
             ("List all the pets {s} has.", "What are the names of {s}'s pets?")),
    "club": (("{v} joined the {s}.", "{v} signed up for the {s}.",
              "{v} is now a member of the {s}."),
             ("How many people joined the {s}?", "How many members does the {s} have?"),
             ("Who is in the {s}?", "List the members of the {s}.")),
    "staff": (("{v} joined the {s} project.", "{v} was added to Project {s}.",
               "{v} started working on Project {s}."),
              ("How many people work on Project {s}?", "How many people joined Project {s}?"),
              ("Who works on Project {s}?", "List everyone on Project {s}.")),
    "languages": (("{s} started learning {v}.", "{s} signed up for {v} lessons.",
                   "{s} is taking an evening class in {v}."),
                  ("How many languages is {s} learning?",),
                  ("Which languages is {s} learning?", "List the languages {s} is studying.")),
}
# kind -> (a value maker, statements, questions): numbers with separators and units
_OneOff = tuple[Callable[[random.Random], str], tuple[str, ...], tuple[str, ...]]
_NUMBERS: dict[str, _OneOff] = {
    "budget": (lambda r: f"${r.randrange(40, 1800) * 5000:,}",
               ("The budget for Project {s} next year is {v}.",
                "Finance approved {v} for Project {s} next year."),
               ("What is next year's budget for Project {s}?",
                "How much money is set aside for Project {s} next year?")),
    "users": (lambda r: f"{r.randrange(12, 99) * 100:,} users",
              ("The Project {s} beta has {v}.", "Project {s}'s beta reached {v}."),
              ("How many users does the Project {s} beta have?",)),
    "coverage": (lambda r: f"{r.randrange(20, 98)}.5%",
                 ("Test coverage on Project {s} is {v}.", "Project {s} has {v} test coverage."),
                 ("What is the test coverage on Project {s}?",
                  "How much of Project {s} is covered by tests?")),
    "cloud": (lambda r: f"{r.randrange(1, 10)}.{r.randrange(1, 10)}M",
              ("The {s} team spent {v} on cloud compute last year.",),
              ("How much did the {s} team spend on cloud compute last year?",)),
    "headcount": (lambda r: f"{r.randrange(1010, 4990):,} employees",
                  ("The {s} office has {v}.", "There are {v} at the {s} office."),
                  ("How many employees does the {s} office have?",
                   "What is the headcount of the {s} office?")),
}
_NEEDLES: dict[str, _OneOff] = {
    "door": (lambda r: str(r.randrange(3000, 10000)), ("The door code for the {s} lab is {v}.",),
             ("What is the door code for the {s} lab?",
              "Which code opens the door of the {s} lab?")),
    "wifi": (lambda r: "-".join(r.sample(_WIFI_WORDS, 2)) + f"-{r.randrange(10, 100)}",
             ("The wifi password at the {s} office is {v}.",),
             ("What is the wifi password at the {s} office?",)),
    "host": (lambda r: f"{r.choice(_HOSTS)}-{r.randrange(10, 100)}",
             ("The staging server for Project {s} is called {v}.",),
             ("What is the staging server for Project {s} called?",)),
    "dinner": (lambda r: r.choice(RESTAURANTS),
               ("The {s} team's offsite dinner is booked at {v}.",),
               ("Where is the {s} team's offsite dinner booked?",
                "Which restaurant did the {s} team book for the offsite dinner?")),
    "parking": (lambda r: f"{r.choice('ABCDEF')}-{r.randrange(10, 100)}",
                ("{s} parks in spot {v}.",), ("Which parking spot does {s} use?",)),
}
# Intros are never chatter lines and never repeat: a sentence said in two turns is one fact
# with one place in the conversation, and the pair must be neighbours.
_INTROS = ("I caught up with {p} over coffee {w}.", "{p} and I had a long chat {w}.",
           "I walked to the station with {p} {w}.", "I sat next to {p} at dinner {w}.")
_WHEN = ("on Monday", "on Tuesday", "on Wednesday", "on Thursday", "on Friday",
         "after the all-hands", "before the standup", "at the offsite")
# kind -> (values, the pronoun-only follow-up, questions)
_CONTEXT = {
    "dog": ((), "{S} told me {s} just adopted a {breed} named {v}.",
            ("What is the name of the dog {p} adopted?", "What did {p} name {pos} new dog?")),
    "sister": (SISTERS, "{S} mentioned that {pos} sister is called {v}.",
               ("What is the name of {p}'s sister?", "What is {p}'s sister called?")),
    "car": (CARS, "{S} said {s} finally bought a {v}.",
            ("What car did {p} buy?", "Which car brand did {p} just buy?")),
    "novel": (NOVELS, "{S} said {s} is reading a novel called {v}.",
              ("What novel is {p} reading?", "Which book is {p} reading at the moment?")),
}
# Chatter puts a person ({p}) beside a project ({x}) or a city ({c}) only in the lines that name
# both, and those only where no question is about that pair; never beside a team or a club.
_CHATTER = (
    "{p} said the standup ran long again.", "{p} is out sick today.",
    "{p} asked me to review a pull request.", "{p} brought pastries for everyone.",
    "I had lunch with {p} today.", "{p} stopped by my desk this afternoon.",
    "{p} was in meetings all day.", "{p} forgot a laptop charger at home again.",
    "{p} wants to move our one-on-one to Friday.", "{p} recommended a podcast about typography.",
    "{p} is taking a long weekend.", "{p} keeps sharing videos of other people's cats.",
    "{p} and {q} argued about tabs versus spaces.", "{p} paired with {q} on a tricky bug.",
    "{p} said {q} gave a great talk.", "The {x} demo went fine today.",
    "The {x} deadline came up in the retro again.", "Someone asked who owns the {x} dashboards.",
    "The {x} budget review got moved.", "The {x} channel was noisy today.",
    "The {x} roadmap slides need another pass.",
    "Can you remind me what we said about Project {x}?", "The {t} team had a long retro.",
    "The {t} team is hiring again.", "The {t} team ordered pizza for the release.",
    "The {c} office coffee machine broke again.", "The {c} lab is getting new desks.",
    "The wifi in the {c} office was down this morning.", "The {club} meets on Thursday evenings.",
    "The {club} is looking for new members.", "Thanks, that helps.", "Noted, I will remember that.",
    "Let's pick this up tomorrow.", "Okay, anything else from today?",
    "She said she would send the notes later.", "He mentioned the build is slow again.",
    "The offsite planning thread got long.", "Someone finished the last of the coffee.",
    "{p} asked a question about Project {x} at the all-hands.",
    "{p} watched the {x} demo and liked it.", "{p} left a comment on the {x} design doc.",
    "{p} flew to {c} for a conference.", "{p} is visiting friends in {c} this weekend.",
    "{p} said the weather in {c} was awful.",
)
_PRONOUNS = {p: {"S": "She", "s": "she", "pos": "her"} if g == "f" else
             {"S": "He", "s": "he", "pos": "his"} for p, g in _GENDER.items()}


class _Plan:
    """Everything the log may say (stories) and may ask (a pool of questions per category)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.stories: dict[str, list[Event]] = {}
        self.pools: dict[str, list[tuple[Question, tuple[str, ...]]]] = {c: [] for c in CATEGORIES}
        self.tied: dict[str, set[str]] = {}  # project/person -> names chatter must not pair it with
        self.quiet: set[str] = set()  # projects chatter pairs with nobody
        self.used: set[str] = set()  # digits (and dates) already given to a value
        self.said: set[str] = set()  # context intros already written

    def pick(self, templates: Sequence[str], **slots: str) -> str:
        return self.rng.choice(templates).format(**slots)

    def say(self, key: str, events: Sequence[str | Event]) -> str:
        self.stories[key] = [(e,) if isinstance(e, str) else e for e in events]
        return key

    def ask(self, category: str, text: str, keywords: Sequence[str], needs: Sequence[str], *,
            stale: Sequence[str] = (), spread: bool = False, evidence: Sequence[str] = ()) -> None:
        question = Question(text, category, tuple(keywords), tuple(stale), spread, tuple(evidence))
        self.pools[category].append((question, tuple(needs)))

    def tie(self, name: str, *others: str) -> None:
        self.tied.setdefault(name, set()).update(others)

    def unique(self, make: Callable[[random.Random], str]) -> str:
        """A value whose digits no other value has: "4471" must not also be "$4,471,000"."""
        for _ in range(10_000):
            value = make(self.rng)
            core = "".join(ch for ch in value if ch.isdigit()) or value
            if core not in self.used:
                self.used.add(core)
                return value
        raise RuntimeError("ran out of distinct values")  # a maker with too small a range


def _chain(plan: _Plan, spec: _Chain, subject: str, values: Sequence[str]) -> None:
    """Values in successive sessions; asks for the newest and for one before a later one."""
    key = plan.say(f"{spec.name}:{subject}", [
        plan.pick(spec.then if i else spec.first, s=subject, v=v, old=values[i - 1] if i else "")
        for i, v in enumerate(values)])
    plan.ask("current", plan.pick(spec.now, s=subject), (values[-1],), (key,),
             stale=tuple(values[:-1]), evidence=(subject, values[-1]))
    i = plan.rng.randrange(1, len(values))
    plan.ask("past", plan.pick(spec.before, s=subject, v=values[i]), (values[i - 1],), (key,),
             stale=tuple(values[i:]), evidence=(subject, values[i - 1]))


def _relation(plan: _Plan, kind: str, subject: str, items: Sequence[str],
              slots: Sequence[dict[str, str]]) -> str:
    said, count_q, list_q = _RELATIONS[kind]
    key = plan.say(f"{kind}:{subject}", [plan.pick(said, s=subject, v=item, **extra)
                                         for item, extra in zip(items, slots, strict=True)])
    plan.ask("count", plan.pick(count_q, s=subject), (str(len(items)),), (key,), spread=True,
             evidence=tuple(items))
    plan.ask("list", plan.pick(list_q, s=subject), tuple(items), (key,), spread=True)
    return key


def _profiles(plan: _Plan, people: Sequence[str]) -> dict[str, dict[str, str]]:
    """Static facts, one statement each: home city, job, team, birthday month."""
    rng, profile = plan.rng, {}
    for person, role in zip(people, rng.sample(ROLES, len(people)), strict=True):
        profile[person] = attrs = {"city": rng.choice(CITIES), "role": role,
                                   "team": rng.choice(TEAMS), "month": rng.choice(MONTHS)}
        plan.tie(person, attrs["city"])
        for attr, value in attrs.items():
            said, asked = _FACTS[attr]
            key = plan.say(f"{attr}:{person}",
                           [plan.pick(said, p=person, v=value, **_PRONOUNS[person])])
            plan.ask("fact", plan.pick(asked, p=person), (value,), (key,),
                     evidence=(person, value))
    return profile


def _changes(plan: _Plan, people: Sequence[str], chained: Sequence[str], steady: Sequence[str],
             profile: dict[str, dict[str, str]]) -> None:
    """Leads, deadlines, statuses and offices that change; leads that never do (two hops)."""
    rng = plan.rng
    for project in chained:
        leads = rng.sample(people, rng.randint(2, 4))
        plan.tie(project, *leads)
        _chain(plan, _LEAD, project, leads)
    for project in steady:
        lead = rng.choice(people)
        plan.tie(project, lead)
        key = plan.say(f"lead:{project}", [plan.pick(_LEAD.first, s=project, v=lead)])
        attr = rng.choice(sorted(_LEAD_HOPS))
        value = profile[lead][attr]
        plan.ask("multi-hop", plan.pick(_LEAD_HOPS[attr], s=project), (value,),
                 (key, f"{attr}:{lead}"), spread=True, evidence=(lead, value))
    for project in rng.sample([*chained, *steady], 6):
        day, dates = date(2026, 1, 5) + timedelta(days=rng.randrange(240)), []
        for _ in range(rng.randint(2, 4)):
            while day.isoformat() in plan.used:
                day += timedelta(days=1)
            plan.used.add(day.isoformat())
            dates.append(day.isoformat())
            day += timedelta(days=rng.randrange(9, 80))
        _chain(plan, _DEADLINE, project, dates)
    for project in rng.sample([*chained, *steady], 5):
        _chain(plan, _STATUS, project, rng.sample(STATUSES, rng.randint(2, 4)))
    for person in rng.sample(people, 8):  # office cities never include the home city
        offices = rng.sample([c for c in CITIES if c != profile[person]["city"]], rng.randint(2, 4))
        plan.tie(person, *offices)
        _chain(plan, _OFFICE, person, offices)


def _relations(plan: _Plan, people: Sequence[str], staffed: Sequence[str],
               profile: dict[str, dict[str, str]], pet_names: list[str]) -> list[str]:
    """Pets, club members, project staff, languages; returns the pet owners."""
    rng = plan.rng
    owners = rng.sample(people, 8)
    for owner in owners:
        pets = [pet_names.pop() for _ in range(rng.randint(2, 5))]
        key = _relation(plan, "pets", owner, pets, [{"sp": rng.choice(SPECIES)} for _ in pets])
        pet, attr = rng.choice(pets), rng.choice(sorted(_PET_HOPS))
        value = profile[owner][attr]
        plan.ask("multi-hop", plan.pick(_PET_HOPS[attr], s=pet), (value,),
                 (key, f"{attr}:{owner}"), spread=True, evidence=(owner, value))
    for club in CLUBS:
        members = rng.sample(people, rng.randint(2, 5))
        _relation(plan, "club", club, members, [{} for _ in members])
    for project in staffed:  # no lead is ever named: "who works on it" has one answer
        members = rng.sample(people, rng.randint(2, 5))
        plan.tie(project, *members)
        plan.quiet.add(project)
        _relation(plan, "staff", project, members, [{} for _ in members])
    languages = rng.sample(LANGUAGES, len(LANGUAGES))
    for learner in rng.sample(people, 4):
        studied = [languages.pop() for _ in range(rng.randint(2, 4))]
        _relation(plan, "languages", learner, studied, [{} for _ in studied])
    return owners


def _one_offs(plan: _Plan, people: Sequence[str], projects: Sequence[str]) -> None:
    """Needles and numbers: each value said once, and no other value shares its digits."""
    rng = plan.rng
    cities = rng.sample(CITIES, len(CITIES))
    subjects = {"door": cities[:5], "wifi": cities[5:10], "headcount": cities[10:14],
                "host": rng.sample(projects, 5), "budget": rng.sample(projects, 5),
                "users": rng.sample(projects, 4), "coverage": rng.sample(projects, 4),
                "dinner": rng.sample(TEAMS, 4), "cloud": rng.sample(TEAMS, 4),
                "parking": rng.sample(people, 4)}
    for category, specs in (("needle", _NEEDLES), ("numbers", _NUMBERS)):
        for kind, (make, said, asked) in specs.items():
            for subject in subjects[kind]:
                value = plan.unique(make)
                key = plan.say(f"{kind}:{subject}", [plan.pick(said, s=subject, v=value)])
                plan.ask(category, plan.pick(asked, s=subject), (value,), (key,))


def _contexts(plan: _Plan, people: Sequence[str], owners: Sequence[str],
              pet_names: list[str]) -> None:
    """Pairs: a turn naming someone, then a pronoun-only turn with the answer."""
    rng = plan.rng
    for kind, (values, line, asked) in _CONTEXT.items():
        pool = [p for p in people if p not in owners] if kind == "dog" else people
        answers = pet_names if kind == "dog" else rng.sample(values, len(values))
        for person in rng.sample(pool, 4):  # same wording, different people
            value, pro = answers.pop(), _PRONOUNS[person]
            intro = plan.pick(_INTROS, p=person, w=rng.choice(_WHEN))
            while intro in plan.said:
                intro = plan.pick(_INTROS, p=person, w=rng.choice(_WHEN))
            plan.said.add(intro)
            pair = (intro,
                    line.format(v=value, breed=rng.choice(BREEDS), **pro))
            key = plan.say(f"context:{kind}:{person}", [pair])
            plan.ask("context", plan.pick(asked, p=person, **pro), (value,), (key,))


def _plan(rng: random.Random) -> _Plan:
    plan = _Plan(rng)
    people = rng.sample(PEOPLE, len(PEOPLE))
    projects = rng.sample(PROJECTS, len(PROJECTS))
    profile = _profiles(plan, people)
    _changes(plan, people, projects[:5], projects[5:13], profile)
    pet_names = rng.sample(PET_NAMES, len(PET_NAMES))  # shared: no dog is also someone's pet
    owners = _relations(plan, people, projects[13:], profile, pet_names)
    _one_offs(plan, people, projects)
    _contexts(plan, people, owners, pet_names)
    return plan


class _Log:
    """Sessions of 20-60 turns and the planted statements placed in each so far."""

    def __init__(self, rng: random.Random, n_turns: int) -> None:
        self.rng = rng
        self.lengths: list[int] = []
        left = n_turns
        while left > 0:  # the last session takes what is left: exactly n_turns in all
            self.lengths.append(min(left, rng.randint(_SESSION_MIN, _SESSION_MAX)))
            left -= self.lengths[-1]
        self.room = [max(1, int(n * _PLANTED_SHARE)) for n in self.lengths]
        self.units: list[list[Event]] = [[] for _ in self.lengths]
        self.placed: set[str] = set()

    def place(self, key: str, events: Sequence[Event]) -> bool:
        """Put a story's events in distinct sessions, in order; False when it does not fit."""
        if key in self.placed:
            return True
        size = max(len(e) for e in events)
        open_ = [i for i, room in enumerate(self.room) if room >= size]
        if len(open_) < len(events):
            return False
        for i, event in zip(sorted(self.rng.sample(open_, len(events))), events, strict=True):
            self.units[i].append(event)
            self.room[i] -= len(event)
        self.placed.add(key)
        return True


def _select(plan: _Plan, log: _Log, n_questions: int) -> list[Question]:
    """Round-robin over categories; a question counts only once its stories are in the log."""
    queues = {c: plan.rng.sample(pool, len(pool)) for c, pool in plan.pools.items()}
    chosen: list[Question] = []
    while len(chosen) < n_questions and any(queues.values()):
        for category in CATEGORIES:
            queue = queues[category]
            while queue and len(chosen) < n_questions:
                question, needs = queue.pop()
                if all(log.place(k, plan.stories[k]) for k in needs):
                    chosen.append(question)
                    break
    return chosen


def _chatter(plan: _Plan) -> Callable[[], str]:
    """Chatter lines; a person meets a project or a city only where nothing asked is about it."""
    rng, tied = plan.rng, plan.tied
    px = [(p, x) for x in PROJECTS if x not in plan.quiet for p in PEOPLE
          if p not in tied.get(x, ())]
    pc = [(p, c) for p in PEOPLE for c in CITIES if c not in tied.get(p, ())]

    def line() -> str:
        template = rng.choice(_CHATTER)
        p, q = rng.sample(PEOPLE, 2)
        x, c = rng.choice(PROJECTS), rng.choice(CITIES)
        if "{p}" in template and "{x}" in template:
            p, x = rng.choice(px)
        elif "{p}" in template and "{c}" in template:
            p, c = rng.choice(pc)
        return template.format(p=p, q=q, x=x, c=c, t=rng.choice(TEAMS), club=rng.choice(CLUBS))

    return line


def build_long_horizon(n_turns: int = 3000, n_questions: int = 120, seed: int = 7) -> EvalSet:
    """The ``long-horizon`` set: exactly ``n_turns`` turns, up to ``n_questions`` questions.

    Same arguments, same set. A short log holds fewer planted stories (each session keeps most
    of its turns for chatter), so it may yield fewer questions than asked for.
    """
    if n_turns < 0 or n_questions < 0:
        raise ValueError("n_turns and n_questions must not be negative")
    rng = random.Random(seed)
    plan = _plan(rng)
    log = _Log(rng, n_turns)
    questions = _select(plan, log, n_questions)
    for key in rng.sample(sorted(plan.stories), len(plan.stories)):  # the rest, as distractors
        log.place(key, plan.stories[key])
    chatter = _chatter(plan)
    turns: list[Turn] = []
    for i, (length, units) in enumerate(zip(log.lengths, log.units, strict=True)):
        units = units + [(chatter(),) for _ in range(length - sum(map(len, units)))]
        rng.shuffle(units)
        session, day = f"day-{i + 1:03d}", _FIRST_DAY + i * 86_400.0
        turns.extend(Turn(session, j, text, day + 60.0 * j)  # a turn a minute
                     for j, text in enumerate(t for u in units for t in u))
    rng.shuffle(questions)
    return EvalSet("long-horizon", tuple(turns), tuple(questions))
