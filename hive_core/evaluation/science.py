"""The ``science`` question set: five short lessons of textbook facts, three questions each.

Why it exists: it is the small, fixed smoke test of the eval. Every answer sits in exactly one
plain sentence, so a miss is the memory's fault, not the data's. Each lesson also holds
*distractors*: true statements that share the question's words (mitochondria's own DNA beside
"what do mitochondria produce?", quicksort beside merge sort) without answering it, so a
ranker that only counts shared words is caught out.

Each lesson is one session (``science-<domain>``), one statement per turn; a question's
category is its domain, and its keywords are the few words a correct fact must hold.
"""

from __future__ import annotations

from hive_core.evaluation.dataset import EvalSet, Question, Turn

DOMAINS = ("biology", "chemistry", "physics", "mathematics", "computer-science")

# domain -> (lesson statements, ((question, keywords), ...))
_LESSONS: dict[str, tuple[tuple[str, ...], tuple[tuple[str, tuple[str, ...]], ...]]] = {
    "biology": (
        (
            "Mitochondria produce most of the ATP that a cell uses for energy.",
            "Ribosomes build proteins by reading messenger RNA.",
            "The cell membrane is made mainly of a phospholipid bilayer.",
            "Chloroplasts carry out photosynthesis in plant cells.",
            "Mitochondria carry their own small circular DNA.",
            "DNA is a double helix made of two strands of nucleotides.",
            "Red blood cells carry oxygen with a protein called hemoglobin.",
            "Mature red blood cells in mammals have no nucleus.",
            "Photosynthesis releases oxygen as a by-product.",
            "Enzymes are proteins that speed up chemical reactions in the cell.",
        ),
        (
            ("What do mitochondria produce?", ("ATP",)),
            ("Which protein do red blood cells use to carry oxygen?", ("hemoglobin",)),
            ("What is the cell membrane mainly made of?", ("bilayer",)),
        ),
    ),
    "chemistry": (
        (
            "A water molecule is two hydrogen atoms bonded to one oxygen atom.",
            "The pH of pure water at 25 degrees Celsius is 7.",
            "Acids have a pH below 7 and bases have a pH above 7.",
            "Sodium chloride is the chemical name for table salt.",
            "Table salt dissolves easily in water.",
            "Noble gases such as neon and argon rarely react with other elements.",
            "The atomic number of an element is the number of protons in its nucleus.",
            "Carbon has an atomic number of 6.",
            "Oxygen has an atomic number of 8.",
            "A catalyst speeds up a reaction without being used up.",
            "Rust forms when iron reacts with oxygen and water.",
        ),
        (
            ("What is the chemical name for table salt?", ("sodium chloride",)),
            ("What is the atomic number of carbon?", ("6",)),
            ("Which metal forms rust when it reacts with oxygen and water?", ("iron",)),
        ),
    ),
    "physics": (
        (
            "The speed of light in a vacuum is about 300,000 kilometres per second.",
            "Sound travels at about 343 metres per second in air at room temperature.",
            "Newton's second law says that force equals mass times acceleration.",
            "Newton's first law says an object keeps its motion unless a net force acts on it.",
            "The SI unit of force is the newton.",
            "The SI unit of electric current is the ampere.",
            "The SI unit of energy is the joule.",
            "Water boils at 100 degrees Celsius at sea level.",
            "Near the Earth's surface an object in free fall gains about 9.8 metres per second"
            " of speed every second.",
            "Electrons carry a negative electric charge.",
        ),
        (
            ("How fast does light travel in a vacuum?", ("300,000",)),
            ("What is the SI unit of electric current?", ("ampere",)),
            ("According to Newton's second law, what does force equal?",
             ("mass", "acceleration")),
        ),
    ),
    "mathematics": (
        (
            "A prime number has exactly two distinct divisors: one and itself.",
            "The smallest prime number is 2.",
            "The number one is not a prime number.",
            "The interior angles of a triangle add up to 180 degrees.",
            "The interior angles of a square add up to 360 degrees.",
            "Pi is the ratio of the circumference of a circle to its diameter.",
            "Pi is approximately 3.14159.",
            "The area of a circle is pi times the square of its radius.",
            "The derivative of x squared is two times x.",
            "The square root of 144 is 12.",
            "A gross is twelve dozen, which is one hundred and forty-four.",
        ),
        (
            ("What is the smallest prime number?", ("2",)),
            ("What do the interior angles of a triangle add up to?", ("180",)),
            ("What is the square root of 144?", ("12",)),
        ),
    ),
    "computer-science": (
        (
            "Binary search finds an item in a sorted list in logarithmic time.",
            "Binary search only works on data that is already sorted.",
            "A stack removes items in last-in first-out (LIFO) order.",
            "A queue removes items in first-in first-out (FIFO) order.",
            "Merge sort runs in O(n log n) time in the worst case.",
            "Quicksort can take quadratic time in the worst case.",
            "A byte is made of eight bits.",
            "HTTP is the protocol that web browsers use to fetch pages.",
            "DNS translates domain names into IP addresses.",
            "A hash table looks up a key in constant time on average.",
            "Python uses indentation to mark blocks of code.",
        ),
        (
            ("In what order does a stack remove items?", ("LIFO",)),
            ("What does DNS translate domain names into?", ("IP addresses",)),
            ("What is the worst-case running time of merge sort?", ("n log n",)),
        ),
    ),
}


LESSON_DAY = 1_767_225_600.0  # 2026-01-01T00:00:00Z; turns carry a time, as learn gives them


def science_suite() -> EvalSet:
    """The fixed ``science`` set: 5 domains x ~10 lesson turns, 15 questions."""
    turns: list[Turn] = []
    questions: list[Question] = []
    for d, domain in enumerate(DOMAINS):
        statements, asked = _LESSONS[domain]
        session, day = f"science-{domain}", LESSON_DAY + d * 86_400.0  # a lesson a day
        turns.extend(Turn(session, i, text, day + 60.0 * i) for i, text in enumerate(statements))
        questions.extend(Question(text, domain, keywords) for text, keywords in asked)
    return EvalSet("science", tuple(turns), tuple(questions))
