"""Is a broker connection string usable? Checked when a config is built, so ``create`` refuses
what no client could parse instead of storing it for ``start`` to trip over.

Each check returns ``None`` when the string is fine, else one reason with what to do. A reason
never quotes the string or a part of it (the caller shows it through
:func:`hive_core.redact.redact_secret`): a client library's own parse error can quote the
password (redis-py: "Port could not be cast to integer value as 'pw'").

* Redis: ``redis://[[user]:password@]host[:port][/db][?option=value...]`` (``rediss://`` for
  TLS), parsed the way redis-py parses it (``urllib.parse``). A password holding ``/``,
  ``?``, ``#`` or whitespace must be percent-encoded, or the host is read from the middle of
  the password.
* Azure (Event Hubs, Service Bus): ``Endpoint=sb://NAMESPACE/;SharedAccessKeyName=N;
  SharedAccessKey=K`` (or ``SharedAccessSignature=...``), split the way azure-core splits it:
  ``;``-separated ``key=value`` pairs, keys unique regardless of case.
"""

from __future__ import annotations

import functools
import inspect
import re
from urllib.parse import parse_qs, urlsplit

# No "@" in a hint: redaction would take the hint for credentials (it shows as "***@").
REDIS_FORM = "use redis://HOST:PORT/DB (a password goes before the host, ending in '@') " \
    "or rediss:// for TLS"
AZURE_FORM = ("use the namespace's connection string: Endpoint=sb://NAMESPACE."
              "servicebus.windows.net/;SharedAccessKeyName=...;SharedAccessKey=...")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_AZURE_KEYS = {k.lower(): k for k in ("Endpoint", "SharedAccessKeyName", "SharedAccessKey",
                                      "SharedAccessSignature", "EntityPath",
                                      "UseDevelopmentEmulator")}
_AZURE_SCHEMES = ("sb", "fake")  # fake:// is hive_core.transports.azurefake


def redis_problem(url: str) -> str | None:
    """Why redis-py could not connect with ``url``, or None."""
    if not url.startswith(("redis://", "rediss://")):
        return REDIS_FORM
    if _CONTROL.search(url):
        return ("it contains whitespace or a control character: percent-encode it "
                "(a space in the password is %20)")
    parts = urlsplit(url)
    if "@" in url[url.index("://") + 3:] and "@" not in parts.netloc:
        # The user-info ended at a "/", "?" or "#" inside the password.
        return ("the password holds '/', '?' or '#': percent-encode them "
                "(%2F, %3F, %23)")
    if not parts.hostname:
        return f"it names no host: {REDIS_FORM}"
    try:
        bad_port = parts.port == 0 or parts.netloc.endswith(":")
    except ValueError:  # not a number, or out of range
        bad_port = True
    if bad_port:
        return "the port is not a number from 1 to 65535"
    if parts.path not in ("", "/") and not re.fullmatch(r"/\d+", parts.path):
        return f"the database after the host must be a number, e.g. /0: {REDIS_FORM}"
    if parts.fragment:
        return f"it has a '#' fragment: {REDIS_FORM}"
    unknown = sorted(set(parse_qs(parts.query, keep_blank_values=True))
                     - _redis_query_options(parts.scheme))
    if unknown:
        return f"unknown option(s) after '?': {', '.join(unknown)}"
    return _redis_parses(url)


def _redis_parses(url: str) -> str | None:
    """redis-py's own verdict on the option values (its message names only the option)."""
    from redis.connection import parse_url

    try:
        parse_url(url)
    except ValueError as exc:
        named = re.search(r"'([A-Za-z_]+)'", str(exc))
        return (f"the value of option {named.group(1)!r} is invalid" if named
                else "redis-py cannot parse it")
    return None


@functools.cache
def _redis_query_options(scheme: str) -> frozenset[str]:
    """Query options redis-py hands to its connection class (others fail at connect)."""
    from redis import connection

    classes = [connection.AbstractConnection, connection.Connection]
    if scheme == "rediss":
        classes.append(connection.SSLConnection)
    names = set(connection.URL_QUERY_ARGUMENT_PARSERS)
    for cls in classes:
        names |= set(inspect.signature(cls.__init__).parameters)
    return frozenset(names - {"self", "kwargs"})


def azure_problem(conn: str) -> str | None:
    """Why the Azure SDKs could not parse ``conn``, or None."""
    if re.search(r"[\x00-\x1f\x7f]", conn):
        return "it contains a control character (a line break?)"
    segments = conn.strip().rstrip(";").split(";")
    seen: dict[str, str] = {}
    for i, segment in enumerate(segments, 1):
        key, eq, value = segment.partition("=")
        if not eq or not key or not value:
            return f"part {i} is not a NAME=VALUE pair: {AZURE_FORM}"
        canonical = _AZURE_KEYS.get(key.lower())
        if canonical is None:
            # A key name is short and all letters; anything else may be a misplaced secret.
            shown = repr(key) if re.fullmatch(r"[A-Za-z]{1,40}", key) else "an unknown key"
            return f"unknown key {shown} (known: {', '.join(_AZURE_KEYS.values())})"
        if canonical in seen:
            return f"{canonical} is given twice"
        seen[canonical] = value
    endpoint = seen.get("Endpoint")
    if endpoint is None:
        return f"it has no Endpoint: {AZURE_FORM}"
    parts = urlsplit(endpoint.strip())
    if parts.scheme.lower() not in _AZURE_SCHEMES or not parts.netloc:
        return f"the Endpoint must be sb://NAMESPACE/: {AZURE_FORM}"
    if ("SharedAccessKey" in seen) != ("SharedAccessKeyName" in seen):
        return "SharedAccessKey and SharedAccessKeyName go together: give both"
    if "SharedAccessKey" not in seen and "SharedAccessSignature" not in seen:
        return "it has no SharedAccessKey or SharedAccessSignature"
    return None
