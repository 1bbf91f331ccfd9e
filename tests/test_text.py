from __future__ import annotations

from hive_core.text import key_terms, query_terms, terms_of, tokenize


def test_identifiers_stay_whole_tokens() -> None:
    text = "CVE-2024-3094 hit 10.0.1.0/24, costing $4.7M; p95 rose on v1.29 (INC-2041)."
    tokens = tokenize(text)
    for ident in ("cve-2024-3094", "10.0.1.0/24", "$4.7m", "p95", "v1.29", "inc-2041"):
        assert ident in tokens


def test_stopwords_dropped_and_word_forms_folded() -> None:
    assert tokenize("What are the deadlines of the projects?") == tokenize("deadline project")
    assert tokenize("status of the class") == ["status", "class"]
    assert len(set(map(tuple, map(tokenize, ["owns", "owned", "own"])))) == 1
    assert len(set(map(tuple, map(tokenize, ["move", "moves", "moved"])))) == 1
    assert tokenize("shipped") == tokenize("ships") == tokenize("ship")
    assert tokenize("v1.29 INC-2041 p95") == ["v1.29", "inc-2041", "p95"]


def test_query_terms_prefers_identifiers_then_names_and_caps() -> None:
    terms = query_terms("What is the p95 of the api-gateway that Falcon team runs today?", 3)
    assert terms == ["api-gateway", "p95", "falcon"]
    assert len(query_terms("one two three four five six seven eight nine ten", 5)) == 5


def test_query_terms_do_not_depend_on_anything_but_the_question() -> None:
    q = "Who owns project Falcon and when is its deadline?"
    assert query_terms(q, 5) == query_terms(q, 5)
    assert key_terms("alpha beta alpha") == ["alpha", "beta"]


# -- possessives, contractions, Unicode punctuation, numbers (property tests) -------------------
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

words = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1,
                max_size=12)
alnum = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)


@given(words)
def test_a_possessive_is_its_word(word: str) -> None:
    assert tokenize(f"{word}'s") == tokenize(f"{word}\u2019s") == tokenize(word)
    assert tokenize(f"{word}'s own") == tokenize(f"{word} own")


def test_possessives_never_make_a_term_s() -> None:
    terms = tokenize("What is Sarah Chen's birthday? Marcus' dog, Ana\u2019s cat and the CEO's car")
    assert "s" not in terms
    assert terms == ["sarah", "chen", "birthday", "marcus", "dog", "ana", "cat", "ceo", "car"]
    assert query_terms("What is Sarah Chen's birthday?", 5) == ["sarah", "chen", "birthday"]


def test_contractions_fold_to_their_word() -> None:
    assert tokenize("didn't wasn't isn't") == []  # stopwords once n't is gone
    assert tokenize("can't won't shan't") == ["shall"]  # can, will: stopwords
    assert tokenize("Redis isn't reachable") == ["redis", "reachabl"]
    assert tokenize("they're we've I'll she'd I'm") == []


@given(st.integers(min_value=1000, max_value=10**12))
def test_thousands_separators_do_not_split_a_number(n: int) -> None:
    assert tokenize(f"${n:,}") == tokenize(f"${n}") == [f"${n}"]
    assert tokenize(f"{n:,} users") == [str(n), "user"]


def test_commas_that_are_not_separators_still_split() -> None:
    assert tokenize("1,2,3 and 12,34") == ["1", "2", "3", "12", "34"]


@given(alnum, alnum)
def test_an_en_dash_joins_like_a_hyphen(a: str, b: str) -> None:
    assert tokenize(f"{a}\u2013{b}") == tokenize(f"{a}-{b}")


@given(st.text(max_size=80))
def test_terms_never_hold_quotes_commas_or_en_dashes(text: str) -> None:
    for term in tokenize(text):
        assert not set(term) & set("'\u2019,\u2013"), term


def test_a_question_is_parsed_once_into_terms_names_and_cues() -> None:
    from hive_core.query import parse

    q = parse("Who leads Project Atlas now, and how many people did Sarah Chen's team have?")
    # Names first (longest first, then question order), then the other words; stemmed.
    assert q.terms == ("project", "sarah", "atla", "chen", "peopl", "lead", "team")
    assert q.anchors == frozenset({"project", "atla", "sarah", "chen"})
    assert q.wants_current and q.wants_count and not q.wants_past
    assert q.routed(2) == ["project", "sarah"]
    assert parse("Who led Atlas before Dana?").wants_past
    assert parse("What did Marcus use to drive?").wants_past is False
    assert parse("What car did Marcus used to drive?").wants_past
    assert q.emphasis(1.5) == dict.fromkeys(q.anchors, 1.5) and q.emphasis(1.0) == {}


def test_terms_of_is_the_set_of_tokenize_and_cannot_be_changed() -> None:
    for text in ("Mei Tanaka adopted a parrot named Kiwi.", "INC-1042 was caused by CVE-2024-3042",
                 "", "the a an"):
        assert terms_of(text) == set(tokenize(text))
        assert terms_of(text) is terms_of(text)  # one object per text: never mutated
        assert isinstance(terms_of(text), frozenset)
