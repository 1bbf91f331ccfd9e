"""hive_core.redact: no password or key survives, the host always does; and the checks that
refuse a connection string or a config value no client could use."""

from __future__ import annotations

import math
import string
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hive_core.config import CoreSettings
from hive_core.connection_strings import azure_problem, redis_problem
from hive_core.errors import ConfigError
from hive_core.hive_config import HiveConfig
from hive_core.redact import redact_secret, secrets_in

# Any printable character but whitespace (a URL cannot hold that unencoded; create refuses
# it), including every character that ends a URL part: / @ : % ? # ; & = ' " and non-ASCII.
WIDE = st.characters(blacklist_categories=("Z", "C"))
PASSWORDS = st.text(WIDE, min_size=1, max_size=40)
BASE64 = st.text(string.ascii_letters + string.digits + "+/=", min_size=8, max_size=88)
QUERY_VALUE = st.text(string.ascii_letters + string.digits + "-._~%+/=", min_size=1,
                      max_size=40)
HOSTS = st.from_regex(r"\A[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){0,3}\Z")
USERS = st.text(string.ascii_letters + string.digits + "_-", max_size=12)
AROUND = st.sampled_from([("", ""), ("cannot reach ", ": Connection refused"),
                          ("'", "'"), ('{"url": "', '"}'), ("(", ")"), ("at ", ".")])


@settings(max_examples=400)
@given(password=PASSWORDS, user=USERS, host=HOSTS, port=st.integers(1, 65535),
       db=st.integers(0, 15), scheme=st.sampled_from(["redis", "rediss", "amqps", "https"]),
       encode=st.booleans(), around=AROUND)
def test_url_credentials_never_survive_and_the_host_does(password, user, host, port, db,
                                                         scheme, encode, around):
    secret = quote(password, safe="") if encode else password
    url = f"{scheme}://{user}:{secret}@{host}:{port}/{db}"
    before, after = around
    out = redact_secret(f"{before}{url}{after}")
    assert out == f"{before}{scheme}://***@{host}:{port}/{db}{after}"
    assert redact_secret(out) == out


@given(password=PASSWORDS, host=HOSTS)
def test_password_only_form(password, host):
    assert redact_secret(f"redis://:{password}@{host}:6379/0") == f"redis://***@{host}:6379/0"


@settings(max_examples=300)
@given(key=BASE64, name=USERS, host=HOSTS, around=AROUND,
       kind=st.sampled_from(["SharedAccessKey", "AccountKey", "sharedaccesskey"]))
def test_azure_keys_never_survive(key, name, host, around, kind):
    conn = f"Endpoint=sb://{host}/;SharedAccessKeyName={name};{kind}={key};EntityPath=hub"
    before, after = around
    out = redact_secret(f"{before}{conn}{after}")
    assert out == (f"{before}Endpoint=sb://{host}/;SharedAccessKeyName={name};{kind}=***;"
                   f"EntityPath=hub{after}")
    assert secrets_in(conn) == {key} | ({_unquoted(key)} - {""})


def _unquoted(text: str) -> str:
    from urllib.parse import unquote

    return unquote(text)


@given(sig=QUERY_VALUE, host=HOSTS)
def test_sas_signatures_and_query_passwords_never_survive(sig, host):
    sas = f"SharedAccessSignature sr=sb%3A%2F%2F{host}&sig={sig}&se=1700000000&skn=send"
    conn = f"Endpoint=sb://{host}/;SharedAccessSignature={sas}"
    assert redact_secret(conn) == f"Endpoint=sb://{host}/;SharedAccessSignature=*** " \
        f"sr=sb%3A%2F%2F{host}&sig=***&se=1700000000&skn=send"
    url = f"https://{host}/container?sv=2024-01-01&sig={sig}&se=2030"
    assert redact_secret(url) == f"https://{host}/container?sv=2024-01-01&sig=***&se=2030"
    for key in ("password", "Password", "pwd", "token", "api_key", "client_secret"):
        assert redact_secret(f"redis://{host}:6379/0?{key}={sig}&db=1") == \
            f"redis://{host}:6379/0?{key}=***&db=1"


@given(st.text(st.characters(blacklist_characters="=@"), max_size=200))
def test_text_without_credentials_is_unchanged(text):
    assert redact_secret(text) == text


def test_examples_from_the_product():
    assert redact_secret("Redis at redis://:pw/x@y@10.0.0.1:6379/0 is unreachable") == \
        "Redis at redis://***@10.0.0.1:6379/0 is unreachable"
    assert redact_secret("Endpoint=sb://n/;SharedAccessKeyName=k;SharedAccesKey=typo") == \
        "Endpoint=sb://n/;SharedAccessKeyName=k;SharedAccesKey=***"  # a misspelt key too
    assert redact_secret("DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a+b==;"
                         "EndpointSuffix=core.windows.net") == \
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=***;" \
        "EndpointSuffix=core.windows.net"
    assert redact_secret("two: redis://:a@h1 and redis://:b@h2") == \
        "two: redis://***@h1 and redis://***@h2"


def test_long_texts_are_redacted_in_linear_time():
    import time

    for text in ("a://" * 100_000, "a" * 1_000_000, "redis://" + "@" * 100_000,
                 ("k" * 50 + "=") * 20_000):
        start = time.perf_counter()
        redact_secret(text)
        assert time.perf_counter() - start < 5, text[:20]


# -- connection strings a client cannot parse --------------------------------------------------
@pytest.mark.parametrize(("url", "why"), [
    ("redis://:pw/x@h:6379/0", "percent-encode"),
    ("redis://:pw#x@h:6379/0", "percent-encode"),
    ("redis://:pass word@h:6379/0", "whitespace"),
    ("redis://h:abc/0", "port"),
    ("redis://h:0/0", "port"),
    ("redis://h:70000/0", "port"),
    ("redis://h:6379/zero", "database"),
    ("redis://h:6379/0?colour=red", "unknown option"),
    ("redis://h:6379/0?db=x", "'db' is invalid"),
    ("redis://", "no host"),
    ("http://h:6379/0", "redis://"),
])
def test_unusable_redis_urls_are_refused_without_quoting_them(url, why):
    problem = redis_problem(url)
    assert problem is not None and why in problem
    assert "pw" not in problem and "pass" not in problem.replace("password", "")


@pytest.mark.parametrize("url", [
    "redis://127.0.0.1:6379/0", "redis://:p%2Fw%40x@h:6379/3", "redis://:p@ss:w@h",
    "rediss://user:pw@h:6380/0?ssl_cert_reqs=none", "redis://[::1]:6379", "redis://h"])
def test_usable_redis_urls_pass(url):
    assert redis_problem(url) is None


@pytest.mark.parametrize(("conn", "why"), [
    ("https://ns.servicebus.windows.net", "NAME=VALUE"),
    ("Endpoint=sb://x/;SharedAccessKey=k", "SharedAccessKeyName"),
    ("Endpoint=sb://x/;;SharedAccessSignature=a", "part 2"),
    ("Endpoint=sb://x/;endpoint=sb://y/;SharedAccessSignature=a", "twice"),
    ("Endpoint=sb://x/;SharedAccesKey=a;SharedAccessKeyName=k", "unknown key"),
    ("Endpoint=https://x/;SharedAccessKeyName=k;SharedAccessKey=a", "sb://"),
    ("Endpoint=sb://x/;SharedAccessKeyName=k", "go together"),
    ("Endpoint=sb://x/;EntityPath=hub", "no SharedAccessKey"),
    ("SharedAccessKeyName=k;SharedAccessKey=a", "no Endpoint"),
    ("Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=a\n", "control character"),
])
def test_unusable_azure_strings_are_refused(conn, why):
    problem = azure_problem(conn)
    assert problem is not None and why in problem


# -- config values: the file, the code, the environment -----------------------------------------
@pytest.mark.parametrize(("field", "value", "why"), [
    ("replication_factor", 2.7, "whole number"),
    ("replication_factor", True, "not true/false"),
    ("replication_factor", "3", "whole number"),
    ("query_fanout", 0, "greater than or equal to 1"),
    ("search_timeout", math.nan, "finite"),
    ("search_timeout", math.inf, "finite"),
    ("search_timeout", -1.0, "greater than 0"),
    ("search_timeout", False, "number"),
    ("key_prefix", 5, "must be text"),
    ("transport_options", ["eventhub"], "mapping"),
])
def test_a_config_built_in_code_is_checked_like_the_file(field, value, why):
    with pytest.raises(ConfigError, match=field) as info:
        HiveConfig(name="h", **{field: value})
    assert why in str(info.value)


@pytest.mark.parametrize(("variable", "value", "why"), [
    ("AMPLIHACK_MEMORY_SEARCH_TIMEOUT", "nan", "finite"),
    ("AMPLIHACK_MEMORY_SEARCH_TIMEOUT", "inf", "finite"),
    ("AMPLIHACK_MEMORY_SEARCH_TIMEOUT", "-1", "greater than 0"),
    ("AMPLIHACK_MEMORY_SEARCH_TIMEOUT", "1s", "number of seconds"),
    ("AMPLIHACK_MEMORY_KEY_PREFIX", "a b", "key_prefix"),
    ("AMPLIHACK_MEMORY_TRANSPORT", "pigeon", "unknown transport"),
])
def test_environment_overrides_are_refused_naming_the_variable(variable, value, why):
    with pytest.raises(ConfigError) as info:
        HiveConfig(name="h").with_env_overrides({variable: value})
    assert why in str(info.value) and variable in str(info.value)


def test_a_bad_url_from_the_environment_is_refused_without_its_password():
    env = {"AMPLIHACK_MEMORY_TRANSPORT": "redis",
           "AMPLIHACK_MEMORY_CONNECTION_STRING": "redis://:Sekr1t/x@h:6379/0"}
    with pytest.raises(ConfigError) as info:
        HiveConfig(name="h").with_env_overrides(env)
    assert "percent-encode" in str(info.value) and "Sekr1t" not in str(info.value)
    assert "AMPLIHACK_MEMORY_CONNECTION_STRING" in str(info.value)


@pytest.mark.parametrize(("variable", "value"), [
    ("AMPLIHACK_GOSSIP_INTERVAL", "nan"), ("AMPLIHACK_GOSSIP_INTERVAL", "inf"),
    ("AMPLIHACK_GOSSIP_INTERVAL", "-5"), ("AMPLIHACK_VIRTUAL_NODES", "2.7"),
    ("AMPLIHACK_VIRTUAL_NODES", "True"), ("AMPLIHACK_STORE_TIMEOUT", "soon")])
def test_tuning_variables_refuse_non_finite_negative_and_wrong_types(variable, value):
    with pytest.raises(ConfigError, match=variable):
        CoreSettings.from_env({variable: value})
