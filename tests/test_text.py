from __future__ import annotations

from hive_core.text import key_terms, query_terms, tokenize


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
