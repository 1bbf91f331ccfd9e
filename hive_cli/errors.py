"""How a failure leaves the CLI: one line on stderr and an exit code, never a traceback.

Exit codes (documented in ``amplihack-hive --help``)::

    0  success
    1  the command failed (hive not found, agent not running, transport error, ...)
    2  usage error: a bad option, argument or name on the command line
    3  ``status`` only: at least one agent is not running

Errors in what the user *typed* are usage errors (2); errors in the state of the hive or in
the content of a file are failures (1). Every :class:`~hive_core.errors.HiveError` maps to 1;
usage errors of the command-line parser and :class:`UsageProblem` map to 2.
"""

from __future__ import annotations

from typing import Any

from hive_core.errors import HiveError
from hive_core.redact import redact_secret

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3
EXIT_INTERRUPTED = 130


class CliFailure(Exception):
    """A command could not do its job for a reason the user can act on (exit 1)."""

    exit_code = EXIT_FAILURE


class Interrupted(CliFailure):
    """Ctrl-C, with what was done by then (exit 130). Raised by the command itself, because
    Typer turns a KeyboardInterrupt into a silent exit before the CLI could say anything."""

    exit_code = EXIT_INTERRUPTED


class UsageProblem(CliFailure):
    """Something typed on the command line is wrong (exit 2)."""

    exit_code = EXIT_USAGE


def is_parser_error(exc: BaseException) -> bool:
    """An error of Typer's (vendored Click) parser: it carries ``exit_code``/``format_message``.

    Matched by shape because Typer does not export its Click exception classes publicly.
    """
    return callable(getattr(exc, "format_message", None)) and isinstance(
        getattr(exc, "exit_code", None), int
    )


def exit_code_for(exc: BaseException) -> int:
    if isinstance(exc, CliFailure):
        return exc.exit_code
    if is_parser_error(exc):
        return int(getattr(exc, "exit_code", EXIT_FAILURE))
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return EXIT_FAILURE


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` folded onto one line (the CLI prints exactly one), secrets
    redacted: an exception's text may quote a connection string."""
    if isinstance(exc, (HiveError, CliFailure)):
        text = str(exc) or type(exc).__name__
    elif is_parser_error(exc):
        text = str(exc.format_message())
        ctx: Any = getattr(exc, "ctx", None)
        if ctx is not None and getattr(ctx, "command_path", ""):
            text = f"{text} (see '{ctx.command_path} --help')"
    elif isinstance(exc, KeyboardInterrupt):
        text = "interrupted"
    elif isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        text = f"{exc.strerror or exc}{where}"
    else:
        text = f"internal error: {type(exc).__name__}: {exc} (AMPLIHACK_DEBUG=1 shows a traceback)"
    return redact_secret(" ".join(text.split()))
