"""Secrets out of every text the product shows: one function, :func:`redact_secret`.

A connection string reaches the screen in many ways: ``show`` and ``--json`` print the config,
an error line quotes the string it could not use, a broker SDK's exception text embeds the URL
it dialled, an agent's log line names where it connects. Every one of them goes through this
module, so there is one definition of "what a secret looks like" to get right and to test.

Two forms are recognised, anywhere in a text (free text, a repr, a JSON line):

* **URL credentials**: ``scheme://USERINFO@host`` -> ``scheme://***@host``. USERINFO is
  everything from ``://`` to the *last* ``@`` on the line, because a password may itself hold
  ``/``, ``@``, ``:``, ``%``, quotes or spaces when it was not percent-encoded. A second
  ``@`` later on the same line therefore hides more than needed (never less).
* **Secret keys** in ``key=value`` form: Azure's ``;``-separated connection strings
  (``SharedAccessKey=``, ``SharedAccessSignature=``, ``AccountKey=``), URL query strings
  (``?password=``, ``&sig=``) and ``Password=``/``pwd=`` pairs -> ``key=***``. A value ends
  at ``;``, ``&``, whitespace or a quote, none of which appears in a base64 key or
  unencoded in a query value.

The result is stable under repetition (``redact_secret(redact_secret(t)) ==
redact_secret(t)``), so layers may each redact what they pass on. :func:`secrets_in` lists the
secret parts of one connection string; tests use it to audit output for leaks.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote

MASK = "***"

# A key whose name ends in one of these holds a secret: SharedAccessKey, AccountKey, a
# misspelt SharedAccesKey, api_key, sig, password, client_secret, access_token, ...
_SECRET_KEYS = ("key", "signature", "sig", "password", "passwd", "pwd", "secret", "token")
# A secret key, not the tail of a longer name (SharedAccessKeyName=, xsig=), then its value.
_KEY_VALUE = re.compile(
    r"(?P<key>(?<![A-Za-z0-9_])[A-Za-z0-9_]{0,40}?(?:" + "|".join(_SECRET_KEYS) + r")"
    r"[ \t]*=[ \t]*)"
    r"(?P<value>[^;&\s'\"]+)", re.IGNORECASE)
# A whitespace-delimited token holding "://" (found from the token's start only, so a long
# text is scanned in linear time), and the scheme in it: a short word before "://".
_URL_TOKEN = re.compile(r"(?<!\S)(?=\S*?://)\S+")
_SCHEME = re.compile(r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,30}://")


def redact_secret(text: str) -> str:
    """``text`` with URL credentials and secret ``key=value`` values replaced by ``***``."""
    out = _KEY_VALUE.sub(lambda m: f"{m.group('key')}{MASK}", text)
    return _URL_TOKEN.sub(lambda m: _hide_userinfo(m.group()), out)


def _hide_userinfo(token: str) -> str:
    """``scheme://USERINFO@rest`` -> ``scheme://***@rest``: USERINFO runs from the first
    scheme to the token's last "@" (two URLs in one token: both hidden, with what is
    between them)."""
    scheme = _SCHEME.search(token)
    at = token.rfind("@")
    if scheme is None or at < scheme.end():
        return token
    return f"{token[:scheme.end()]}{MASK}{token[at:]}"


def secrets_in(connection_string: str) -> set[str]:
    """The secret parts of one connection string, as written and percent-decoded: the URL
    password (or the whole user-info when it has no ``:``) and every secret key's value."""
    found: set[str] = set()
    for m in _KEY_VALUE.finditer(connection_string):
        found.add(m.group("value"))
    for m in _URL_TOKEN.finditer(connection_string):
        scheme, at = _SCHEME.search(m.group()), m.group().rfind("@")
        if scheme is not None and at > scheme.end():
            cred = m.group()[scheme.end():at]
            found.add(cred.partition(":")[2] if ":" in cred else cred)
    found |= {unquote(s) for s in found}
    # "SharedAccessSignature=SharedAccessSignature sr=...&sig=..." names its kind first.
    return {s for s in found if s and s != MASK and s != "SharedAccessSignature"}


class RedactingFormatter(logging.Formatter):
    """A log formatter whose every line (message, exception and stack text included) went
    through :func:`redact_secret`: an SDK's exception may quote the URL it dialled."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_secret(super().format(record))


def redact_log_handlers(logger: logging.Logger) -> None:
    """Make every handler of ``logger`` redact, keeping each handler's own format."""
    for handler in logger.handlers:
        fmt = handler.formatter
        handler.setFormatter(RedactingFormatter(fmt._fmt if fmt else None,
                                                fmt.datefmt if fmt else None))
