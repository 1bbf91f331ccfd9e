"""``amplihack-hive``: the commands. Parsing and wiring only; the work is in other modules.

Exit codes: 0 ok, 1 failure, 2 usage error, 3 ``status`` found an agent not running.
Every failure is one line on stderr (``amplihack-hive: error: ...``), never a traceback
(set ``AMPLIHACK_DEBUG=1`` to see one). ``--json`` prints one JSON document on stdout.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from hive_cli import (
    federate_cmd,
    hive_lock,
    inputs,
    learn_run,
    lifecycle,
    operations,
    ring_ops,
    supervisor,
)
from hive_cli.errors import CliFailure, UsageProblem, exit_code_for, one_line
from hive_cli.eval_cmd import eval_command
from hive_cli.federate_cmd import federate_command
from hive_cli.forget_cmd import forget_command
from hive_cli.logs_cmd import logs_command
from hive_cli.options import (
    AgentOpt,
    Hive,
    Json,
    complete_hive,
    name_check,
    refuse_non_finite,
    usage,
)
from hive_cli.process_cmds import restart_command, start_command, stop_command
from hive_cli.render import Renderer
from hive_cli.secret_cmd import rotate_secret_command
from hive_cli.status_cmd import status_command
from hive_cli.transport_factory import check_available
from hive_core.errors import ConfigError
from hive_core.hive_config import AgentConfig, HiveConfig
from hive_core.redact import RedactingFormatter
from hive_core.semantic import installed as semantic_installed
from hive_core.semantic import semantic_index
from hive_core.semantic.embedder import INSTALL_HINT
from hive_core.transports.registry import names as transport_names

app = typer.Typer(
    name="amplihack-hive",
    help="Run a hive of agents that share one distributed, sharded fact memory.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
    epilog="Exit codes: 0 ok, 1 failure, 2 usage error, 3 (status) an agent is not running. "
    "Hives live in $AMPLIHACK_HOME/hives (default ~/.amplihack). NO_COLOR=1 disables colour.",
)


def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("amplihack-hive")
        except PackageNotFoundError:  # run from a source tree that was never installed
            number = "unknown (not installed)"
        sys.stdout.write(f"amplihack-hive {number}\n")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[bool, typer.Option(
        "--version", is_eager=True, callback=_show_version,
        help="Print the version and exit.")] = False,
) -> None:
    """Run a hive of agents that share one distributed, sharded fact memory."""


# -- configuration ---------------------------------------------------------------------------
@app.command()
def create(
    name: Annotated[str, typer.Option("--name", help="Hive name.",
                                      callback=name_check("hive"))],
    agents: Annotated[int, typer.Option(min=1, max=1000, help="Number of agents.")] = 5,
    transport: Annotated[str, typer.Option(
        help=" | ".join(transport_names()))] = "local",
    connection_string: Annotated[str | None, typer.Option(
        help="Broker connection string (stored in the 0600 config, shown redacted).")] = None,
    storage_path: Annotated[Path | None, typer.Option(
        help="Where shards live (default: the hive's data/ folder).")] = None,
    shard_backend: Annotated[str, typer.Option(help="kuzu | memory")] = "kuzu",
    replication_factor: Annotated[int, typer.Option(help="Copies of each fact.")] = 3,
    query_fanout: Annotated[int, typer.Option(help="Max shards one question asks.")] = 5,
    key_prefix: Annotated[str, typer.Option(
        help="Namespace of this hive's keys on a shared broker (redis).")] = "amplihack",
    semantic: Annotated[bool | None, typer.Option(
        "--semantic/--no-semantic", show_default="on when the [semantic] extra is installed",
        help="Re-rank answers by meaning (the [semantic] extra; see README).")] = None,
    parent: Annotated[str | None, typer.Option(
        "--parent", help="Make it a group of this existing hive (see `federate`).",
        callback=name_check("hive"), autocompletion=complete_hive)] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing hive's config.")] = False,
    json_out: Json = False,
) -> None:
    """Create a hive: writes $AMPLIHACK_HOME/hives/NAME/config.yaml (mode 0600).

    \b
    Examples:
      amplihack-hive create --name ops --agents 5
      amplihack-hive create --name ops --transport redis --connection-string redis://host:6379/0
      amplihack-hive create --name g1 --parent root   # a group of the existing hive root
      amplihack-hive create --name ops --no-semantic   # lexical ranking only
    """
    installed = semantic_installed()
    if semantic is None:  # on where it can be: it answers ~10 points more (README)
        semantic = installed
    config = usage(lambda: HiveConfig(
        name=name, transport=transport, connection_string=connection_string,
        storage_path=str(storage_path.resolve()) if storage_path else None,
        shard_backend=shard_backend, replication_factor=replication_factor,
        query_fanout=query_fanout, key_prefix=key_prefix, parent=parent, semantic=semantic,
        agents=tuple(AgentConfig(f"agent_{i}") for i in range(agents))))
    if semantic:
        semantic_index()  # a missing extra is one line now, not an agent that fails later
    check_available(config)  # e.g. an Azure hive with no connection string anywhere
    out = Renderer(json_out)
    with hive_lock.hold(name, "create", on_wait=out.note), federate_cmd.tree_locked():
        if parent is not None:  # before anything is written: a bad link creates nothing
            federate_cmd.check_new_parent(name, parent)
        path = _create(config, force)
    if json_out:
        return out.json({"hive": name, "config": str(path), "agents": config.agent_names(),
                         "transport": config.transport, "parent": parent,
                         "semantic": config.semantic})
    group = f" as a group of {parent}" if parent else ""
    ranking = "answers re-ranked by meaning" if config.semantic else "lexical ranking"
    out.message(f"created hive {name}{group} with {agents} agents ({config.transport}, "
                f"{ranking}): {path}")
    if not config.semantic and not installed:
        out.note(escape(f"for answers re-ranked by meaning: {INSTALL_HINT}, then set "
                        f"`semantic: true` in {path} (agents read it when they start)"))


def _create(config: HiveConfig, force: bool) -> Path:
    name = config.name
    if config.config_path.exists():
        if not force:
            raise CliFailure(f"hive {name!r} already exists at {config.directory} "
                             "(use --force to overwrite its config)")
        try:
            existing = HiveConfig.load(name)
        except ConfigError:  # a broken config may be overwritten; its agents are unknown
            existing = None
        if existing is not None:
            operations.require_stopped(existing, existing.agent_names(), f"overwrite hive {name!r}")
    return config.save()


HandoffTimeout = Annotated[float, typer.Option(
    "--timeout", min=1, help="Seconds to wait for the ring to move.")]


@app.command("add-agent")
def add_agent(
    hive: Hive,
    agent_name: Annotated[str, typer.Option(help="New agent's name.",
                                            callback=name_check("agent"))],
    prompt: Annotated[str, typer.Option(help="The agent's system prompt.")],
    kuzu_db: Annotated[Path | None, typer.Option(help="Path of the agent's Kuzu shard.")] = None,
    start_now: Annotated[bool, typer.Option(
        "--start", help="Start it now and wait until it holds its ranges.")] = False,
    timeout: HandoffTimeout = 300.0,
    json_out: Json = False,
) -> None:
    """Add an agent to a hive's config; with --start it joins the running hive at once.

    A joining agent pulls the ranges it will own from their current owners; reads keep
    using those owners until it holds them all, so no answer changes while it joins.

    \b
    Examples:
      amplihack-hive add-agent --hive ops --agent-name sec --prompt "You track incidents"
      amplihack-hive add-agent --hive ops --agent-name sec --start
    """
    out = Renderer(json_out)
    with hive_lock.hold(hive, "add-agent", on_wait=out.note):
        config = HiveConfig.load(hive)
        agent = AgentConfig(agent_name, prompt, str(kuzu_db.resolve()) if kuzu_db else None)
        updated = config.with_agent(agent)
        if start_now:
            check_available(updated)
        updated.save()
        doc: dict[str, object] = {"hive": hive, "added": agent_name, "started": False}
        if start_now:
            with operations.connected(updated) as link:
                result = lifecycle.start(updated, link, [agent_name], timeout)[0]
            if not result.ok:
                raise CliFailure(f"added agent {agent_name} but it failed to start: "
                                 f"{result.detail}")
            with ring_ops.view_store(updated) as store:
                view = ring_ops.wait_settled(store, timeout)
            doc.update(started=True, pid=result.pid, epoch=view.epoch)
    if json_out:
        return out.json(doc)
    joined = f"; it joined the ring (epoch {doc['epoch']})" if start_now else \
        f" (start it with: amplihack-hive start --hive {hive} --agents {agent_name})"
    out.message(f"added agent {agent_name} to hive {hive}{joined}")


@app.command("remove-agent")
def remove_agent(
    hive: Hive,
    agent_name: Annotated[str, typer.Option(help="Agent to remove.",
                                            callback=name_check("agent"))],
    timeout: HandoffTimeout = 300.0,
    json_out: Json = False,
) -> None:
    """Remove an agent; on a running hive its ranges move to their new owners first.

    The agent keeps serving until the others hold what it owned, then it is stopped and
    removed from the config (its shard data is kept). Refused when fewer agents than the
    replication factor would remain.

    \b
    Examples:
      amplihack-hive remove-agent --hive ops --agent-name sec
    """
    out = Renderer(json_out)
    with hive_lock.hold(hive, "remove-agent", on_wait=out.note):
        config = HiveConfig.load(hive)
        updated = config.without_agent(agent_name)
        moved = ring_ops.decommission(config, [agent_name], timeout)
        lifecycle.stop_agents(config, [agent_name], supervisor.STOP_TIMEOUT_S)
        updated.save()
        supervisor.clear_pid(config, agent_name)
    if json_out:
        return out.json({"hive": hive, "removed": agent_name, "handoff": moved})
    how = {"moved": "; its ranges moved to their new owners",
           "pending": "; its ranges move to their new owners when the hive next runs",
           "none": ""}[moved]
    out.message(f"removed agent {agent_name} from hive {hive}{how}")


@app.command("list")
def list_(json_out: Json = False) -> None:
    """List the hives under $AMPLIHACK_HOME/hives.

    \b
    Examples:
      amplihack-hive list
      amplihack-hive list --json
    """
    Renderer(json_out).hives(operations.list_hives())


@app.command()
def show(hive: Hive, json_out: Json = False) -> None:
    """Show a hive's config (secrets redacted).

    \b
    Examples:
      amplihack-hive show --hive ops
    """
    config = HiveConfig.load(hive)
    doc = config.to_dict(redact=True)
    doc["children"] = federate_cmd.position(hive)["children"]  # computed: never in the file
    doc["directory"] = str(config.directory)
    Renderer(json_out).config(doc)


@app.command()
def delete(
    hive: Hive,
    purge_data: Annotated[bool, typer.Option(help="Also delete every shard's data.")] = False,
    json_out: Json = False,
) -> None:
    """Delete a stopped hive (its data is kept unless --purge-data).

    A hive that is the parent of others is refused: detach them first (`federate --detach`).

    \b
    Examples:
      amplihack-hive delete --hive ops
      amplihack-hive delete --hive ops --purge-data
    """
    out = Renderer(json_out)
    with hive_lock.hold(hive, "delete", on_wait=out.note), federate_cmd.tree_locked():
        doc = operations.delete_hive(HiveConfig.load(hive), purge_data)
    if json_out:
        return out.json(doc)
    kept = f" (shard data kept in {doc['kept_data']})" if doc["kept_data"] else ""
    out.message(f"deleted hive {hive}{kept}")


# -- memory ----------------------------------------------------------------------------------
@app.command()
def learn(
    hive: Hive,
    source: Annotated[str | None, typer.Argument(help="'-' to read stdin.")] = None,
    file: Annotated[Path | None, typer.Option(help="One turn per line, or JSONL.")] = None,
    text: Annotated[str | None, typer.Option(help="Turns given inline (one per line).")] = None,
    agent: AgentOpt = None,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds per LEARN batch.")] = 120.0,
    parallel: Annotated[int, typer.Option(
        min=1, max=256, help="Agents learning at the same time.")] = operations.LEARN_PARALLEL,
    batch: Annotated[int, typer.Option(
        min=1, max=1000, help="Turns per LEARN message.")] = operations.LEARN_BATCH,
    restore: Annotated[bool, typer.Option(
        "--restore", help="Learn again facts that were retracted (forget) earlier.")] = False,
    json_out: Json = False,
) -> None:
    """Teach the hive: turn i goes to running agent i mod N, which places facts on the ring.

    A fact retracted earlier (forget) is not learned again unless --restore is given: the
    learn then exits 1 and says how many. A batch whose agent died goes to another one.

    \b
    Examples:
      amplihack-hive learn --hive ops --file notes.txt
      amplihack-hive learn --hive ops --file chat.jsonl   # content, session, turn, time
      cat notes.txt | amplihack-hive learn --hive ops -
    """
    given = [x for x in (source, file, text) if x is not None]
    if len(given) != 1:
        raise UsageProblem("give exactly one of --file F, --text T or - (stdin)")
    if source is not None and source != "-":
        raise UsageProblem(f"unexpected argument {source!r}: use --file to learn a file")
    config = HiveConfig.load(hive)
    check_available(config)
    if file is not None and not file.exists():
        raise UsageProblem(f"--file {file}: no such file")
    turns = inputs.open_turns(Path("-") if source == "-" else file, text,
                              config.max_turn_bytes)
    out = Renderer(json_out)
    live = operations.require_live(config, agent)
    if restore:
        operations.require_all_live(config, "learn --restore")
    with operations.connected(config) as link:
        running = operations.running_among(config, link, live, agent)
        with out.progress("turns learned", turns.total) as bar:
            doc = learn_run.learn(link, turns, turns.total, running, timeout, bar, batch,
                                  parallel, restore)
    out.learned(doc)
    learn_run.check_outcome(doc)


@app.command()
def ask(
    hive: Hive,
    question: Annotated[str, typer.Argument(help="The question.")],
    agent: AgentOpt = None,
    limit: Annotated[int, typer.Option(min=1, max=100, help="Facts to return.")] = 10,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait.")] = 30.0,
    federated: Annotated[bool, typer.Option(
        "--federated/--local",
        help="Also search the parent hive and its other groups (the default; a hive in no "
             "federation has none), or only this hive.")] = True,
    json_out: Json = False,
) -> None:
    """Ask one agent; it answers from the whole hive and shows the facts it used.

    In a federation (`create --parent`, `federate`) the question also goes to the parent
    hive and its other groups, one routed search each, merged so a fact counts once.

    \b
    Examples:
      amplihack-hive ask --hive ops "Who leads Project Osprey now?"
      amplihack-hive ask --hive ops --agent agent_2 "How many pets does Ada have?" --json
      amplihack-hive ask --hive g1 --local "Who leads Project Heron?"
    """
    if not question.strip():
        raise UsageProblem("the question is empty")
    config = HiveConfig.load(hive)
    check_available(config)
    live = operations.require_live(config, agent)
    with operations.connected(config) as link:
        doc = operations.ask_first(link, live, question, limit, timeout, federated)
    Renderer(json_out).answer(doc)


app.command("status")(status_command)
app.command("logs")(logs_command)
app.command("eval")(eval_command)
app.command("forget")(forget_command)
app.command("federate")(federate_command)
app.command("start")(start_command)
app.command("stop")(stop_command)
app.command("restart")(restart_command)
app.command("rotate-secret")(rotate_secret_command)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv``; returns the exit code (errors printed as one line)."""
    command = refuse_non_finite(typer.main.get_command(app))
    try:
        code = command.main(args=argv, prog_name="amplihack-hive", standalone_mode=False)
        return int(code) if isinstance(code, int) else 0
    except typer.Abort:
        sys.stderr.write("amplihack-hive: error: aborted\n")
        return 1
    except Exception as exc:
        if type(exc).__name__ != "NoArgsIsHelpError":  # bare command or group: show its help
            return _fail(exc, argv)
        sys.stdout.write(str(exc.format_message()) + "\n")
        return exit_code_for(exc)
    except KeyboardInterrupt as exc:
        return _fail(exc, argv)


def _fail(exc: BaseException, argv: list[str] | None) -> int:
    """The one error line on stderr; under --json also ``{"error", "exit_code"}`` on stdout,
    so a program reading stdout gets a document whatever happened."""
    if os.environ.get("AMPLIHACK_DEBUG") and not isinstance(exc, KeyboardInterrupt):
        raise exc
    line, code = one_line(exc), exit_code_for(exc)
    sys.stderr.write(f"amplihack-hive: error: {line}\n")
    if "--json" in (sys.argv[1:] if argv is None else argv):
        sys.stdout.write(json.dumps({"error": line, "exit_code": code}) + "\n")
    return code


def _quiet_library_logs() -> None:
    """A command is short-lived and reports failures as its one error line and exit code;
    a transport's retry warnings on the way there are noise (AMPLIHACK_DEBUG=1 shows them)."""
    level = logging.DEBUG if os.environ.get("AMPLIHACK_DEBUG") else logging.ERROR
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("amplihack-hive: %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("hive_core")
    root.addHandler(handler)
    root.setLevel(level)


def main() -> None:
    """Console-script entry point (``amplihack-hive``)."""
    _quiet_library_logs()
    sys.exit(run())
