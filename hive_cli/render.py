"""All output of the CLI: Rich for humans, plain JSON for programs.

Humans get one :class:`rich.console.Console` on stdout (tables, answers) and one on stderr
(progress bars, errors), so piping stdout never captures a progress bar. ``--json`` bypasses
Rich entirely: exactly one ``json.dumps`` document on stdout. Rich honours ``NO_COLOR``, and
progress bars are shown only on a terminal and never with ``--json``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from hive_cli.lifecycle import AgentState, StartResult
from hive_cli.supervisor import StopResult

STATUS_STYLE = {"running": "green", "starting": "yellow", "stopped": "dim", "crashed": "red",
                "unresponsive": "red", "orphaned": "magenta"}


class Renderer:
    """Where a command's results go; one per invocation."""

    def __init__(self, json_mode: bool = False, out: Console | None = None,
                 err: Console | None = None) -> None:
        self.json_mode = json_mode
        self.out = out or Console(highlight=False, soft_wrap=False)
        self.err = err or Console(stderr=True, highlight=False)

    # -- primitives ----------------------------------------------------------------------------
    def json(self, document: Any) -> None:
        sys.stdout.write(json.dumps(document, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    def message(self, text: str) -> None:
        """A human line on stdout (skipped in --json mode, where the document says it all)."""
        if not self.json_mode:
            self.out.print(text, soft_wrap=True)

    def note(self, text: str) -> None:
        """A side remark on stderr (shown in both modes)."""
        self.err.print(text)

    @contextmanager
    def progress(self, description: str, total: int) -> Iterator[Any]:
        """Yields ``advance(n)``: a bar on stderr when it is a terminal; when it is not (a CI
        log, a file), a plain line at every tenth of the way; nothing under --json."""
        if self.json_mode:
            yield lambda n=1: None
            return
        if not self.err.is_terminal:
            done = [0, 0]  # items done, tenths reported

            def advance(n: int = 1) -> None:
                done[0] += n
                tenth = done[0] * 10 // total if total else 10
                if tenth > done[1]:
                    done[1] = tenth
                    self.err.print(f"{description}: {done[0]:,}/{total:,}", soft_wrap=True)

            yield advance
            return
        bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TimeElapsedColumn(), console=self.err, transient=True)
        with bar:
            task = bar.add_task(description, total=total)
            yield lambda n=1: bar.advance(task, n)

    def _table(self, *headers: str | Column, **options: Any) -> Table:
        """A Rich table on a terminal; plain aligned columns (no box characters) when stdout
        is piped or redirected, so ``grep`` and ``awk`` see words, not borders."""
        if not self.out.is_terminal:
            options.setdefault("box", None)
            options.setdefault("pad_edge", False)
        return Table(*headers, **options)

    def _line(self, text: str) -> None:
        """A line of prose: never wrapped at the console width (it may be piped or grepped)."""
        self.out.print(text, soft_wrap=True)

    # -- per command ---------------------------------------------------------------------------
    def hives(self, rows: list[dict[str, Any]]) -> None:
        if self.json_mode:
            return self.json({"hives": rows})
        if not rows:
            return self.out.print("no hives (create one with: amplihack-hive create --name NAME)")
        table = self._table("hive", "transport", "agents", "running", "parent", "note")
        for r in rows:
            table.add_row(escape(r["name"]), r.get("transport") or "-", _num(r.get("agents")),
                          _num(r.get("running")), escape(r.get("parent") or "-"),
                          escape(r.get("error") or ""))
        self.out.print(table)

    def config(self, doc: dict[str, Any]) -> None:
        if self.json_mode:
            return self.json(doc)
        table = self._table("setting", "value", show_header=False)
        for key, value in doc.items():
            if key != "agents":
                table.add_row(key, escape(_setting(value)))
        self.out.print(table)
        agents = self._table("agent", "prompt", "kuzu_db")
        for a in doc["agents"]:
            agents.add_row(escape(a["name"]), escape(a["prompt"] or ""), escape(a["kuzu_db"] or ""))
        self.out.print(agents)

    def status(self, hive: str, transport: str, states: list[AgentState],
               ring: dict[str, Any], tree: dict[str, Any] | None = None) -> None:
        """``tree``: the hive's place in a federation, ``{"parent", "children"}``."""
        tree = tree or {"parent": None, "children": []}
        if self.json_mode:
            return self.json({"hive": hive, "transport": transport, "ring": ring,
                              "ok": all(s.status == "running" for s in states),
                              "parent": tree["parent"], "children": tree["children"],
                              "agents": [s.to_json() for s in states]})
        self.out.print(self.status_view(hive, transport, states, ring, tree), soft_wrap=True)

    def status_view(self, hive: str, transport: str, states: list[AgentState],
                    ring: dict[str, Any], tree: dict[str, Any] | None = None) -> Group:
        """The status table and its summary lines (one renderable: ``--watch`` redraws it
        in place); the last says where the hive is in a federation tree."""
        table = self._table(Column("agent", no_wrap=True),
                            Column("status", no_wrap=True, min_width=len("unresponsive")),
                            Column("ring", no_wrap=True), "pid", "uptime", "facts", "rss MB",
                            "restarts", Column("detail", overflow="fold"),
                            title=f"hive {escape(hive)} ({transport})")
        for s in states:
            style = STATUS_STYLE.get(s.status, "")
            ring_style = "" if s.ring_state == "normal" else "yellow"
            table.add_row(escape(s.name), f"[{style}]{s.status}[/]",
                          f"[{ring_style}]{s.ring_state}[/]" if ring_style else s.ring_state,
                          _num(s.pid), _uptime(s.uptime_s), _num(s.facts), _num(s.rss_mb),
                          str(s.restarts), escape(s.detail))
        total = sum(s.facts or 0 for s in states)
        running = sum(s.status == "running" for s in states)
        under = ring["under_replicated"]
        settled = "settled" if ring["settled"] else \
            f"moving ({escape(ring.get('waiting_on') or 'agents on older epochs')})"
        return Group(table,
                     f"{running}/{len(states)} running, {total} facts held "
                     "(counting every replica)",
                     f"ring epoch {ring['epoch']}, {settled}; under-replicated facts: "
                     f"{'unknown (no agent running)' if under is None else under}",
                     f"federation: {escape(tree_line(tree) + _waiting(states))}")

    @contextmanager
    def live(self) -> Iterator[Callable[[Any], None]]:
        """Yields ``show(renderable)``: redrawn in place on a terminal, else printed again
        (with a blank line between snapshots) for a log or a pipe."""
        if not self.out.is_terminal:
            def show(renderable: Any) -> None:
                self.out.print(renderable, soft_wrap=True)
                self.out.print()
            yield show
            return
        with Live(console=self.out, auto_refresh=False, transient=False) as live:
            yield lambda renderable: live.update(renderable, refresh=True)

    def started(self, hive: str, results: list[StartResult]) -> None:
        if self.json_mode:
            return self.json({"hive": hive, "agents": [r.to_json() for r in results],
                              "ok": all(r.ok for r in results)})
        table = self._table("agent", "result", "pid", "ready after", "detail",
                            title=f"start {hive}")
        for r in results:
            style = "red" if not r.ok else "green"
            ready = "-" if r.ready_s is None else f"{r.ready_s:.1f}s"
            table.add_row(escape(r.agent), f"[{style}]{r.outcome}[/]", _num(r.pid), ready,
                          escape(r.detail))
        self.out.print(table)

    def stopped(self, hive: str, results: list[StopResult]) -> None:
        if self.json_mode:
            return self.json({"hive": hive, "ok": not any(r.stuck for r in results),
                              "agents": [{"agent": r.agent, "outcome": r.outcome, "pid": r.pid}
                                         for r in results]})
        table = self._table("agent", "result", "pid", title=f"stop {hive}")
        for r in results:
            style = "red" if r.stuck else ""
            table.add_row(escape(r.agent), f"[{style}]{r.outcome}[/]" if style else r.outcome,
                          _num(r.pid))
        self.out.print(table)

    def learned(self, doc: dict[str, Any]) -> None:
        if self.json_mode:
            return self.json(doc)
        per = ", ".join(f"{a}: {n}" for a, n in doc["per_agent"].items())
        self._line(f"learned {_count(doc['turns'], 'turn')} -> {_count(doc['facts'], 'fact')} "
                   f"({doc['unique_facts']} distinct) "
                   f"in {doc['seconds']:.1f}s ({escape(per)})")
        if doc["failed_shards"]:
            self._line(f"[red]shards that failed to store: "
                           f"{escape(', '.join(doc['failed_shards']))}[/]")

    def answer(self, doc: dict[str, Any]) -> None:
        if self.json_mode:
            return self.json(doc)
        self._line(escape(str(doc["answer"])))
        federated = bool(doc.get("hives_asked"))
        for i, f in enumerate(doc.get("sources") or [], start=1):
            where = f" in hive {f['hive']}" if federated and f.get("hive") else ""
            self._line(f"  [dim][{i}] {escape(str(f['content']))} -- learned by "
                       f"{escape(str(f['source_agent'] or 'unknown agent'))}{escape(where)}, "
                       f"{escape(str(f['fact_id']))}, score {float(f['score']):.3f}[/]")
        self._line(f"[dim]asked {escape(doc['agent'])}; {len(doc['facts'])} fact(s) "
                   f"matched[/]")
        if federated:
            self._line(f"federated: also asked hive(s) {escape(', '.join(doc['hives_asked']))}")
        queried = ", ".join(doc["shards_queried"]) or "-"
        self._line(f"shards queried ({len(doc['shards_queried'])}): {escape(queried)}")
        if doc.get("partial"):
            failed = ", ".join(doc.get("shards_failed") or [])
            self._line(f"[red]partial answer: shards failed: {escape(failed)}[/]")
        if doc.get("shards_rerouted"):
            self._line(f"[yellow]answered from replicas of: "
                       f"{escape(', '.join(doc['shards_rerouted']))} (they did not answer)[/]")

    def eval_report(self, doc: dict[str, Any]) -> None:
        """Per suite: a table of categories x systems (retrieval@k / answers, in %), then
        the shards asked, latency and facts stored per system."""
        k = doc["k"]
        for suite in doc["suites"]:
            systems = suite["systems"]
            table = self._table(title=f"{suite['suite']}: {suite['questions']} questions, "
                                f"{suite['turns']} turns -- {doc['hive']}")
            table.add_column("category")
            table.add_column("n", justify="right")
            for system in systems:
                table.add_column(f"{system['system']} R@{k}", justify="right")
                table.add_column(f"{system['system']} ans", justify="right")
            cells = [(s["categories"], s) for s in systems]
            for category in systems[0]["categories"]:
                row = [category, str(systems[0]["categories"][category]["questions"])]
                for categories, _ in cells:
                    c = categories[category]
                    row += [f"{c['retrieval_at_k_pct']:.0f}", f"{c['answer_pct']:.0f}"]
                table.add_row(*row)
            total = ["all", str(suite["questions"])]
            for system in systems:
                total += [f"{system['retrieval_at_k_pct']:.1f}", f"{system['answer_pct']:.1f}"]
            table.add_row(*total, style="bold")
            self.out.print(table)
            for system in systems:
                stored = suite["facts_stored"].get(system["system"])
                self._line(
                    f"  {escape(system['system'])}: shards asked median "
                    f"{system['shards_asked_median']:g} (max {system['shards_asked_max']:g}), "
                    f"latency p50 {system['latency_ms_p50']:.2f} ms, p95 "
                    f"{system['latency_ms_p95']:.2f} ms"
                    + (f", {stored:,} facts stored" if stored is not None else "")
                    + (f", [red]{system['partial']} partial[/]" if system["partial"] else ""))


def tree_line(tree: dict[str, Any] | None) -> str:
    """A hive's place in its federation, for a human: "parent root; children g2, g3"."""
    tree = tree or {}
    parts = []
    if tree.get("parent"):
        parts.append(f"parent {tree['parent']}")
    if tree.get("children"):
        parts.append(f"children {', '.join(tree['children'])}")
    return "; ".join(parts) if parts else "not in a tree (no parent, no children)"


def _waiting(states: list[AgentState]) -> str:
    """"; waiting to be delivered: 3 to g2" when agents' outboxes hold deliveries for
    another hive (down, or refusing), with the last delivery error if there is one."""
    waiting: dict[str, int] = {}
    errors = []
    for s in states:
        fed = s.reply.get("federation") or {}
        for hive, n in (fed.get("outbox") or {}).items():
            waiting[hive] = waiting.get(hive, 0) + int(n)
        if fed.get("last_error") and (fed.get("outbox") or {}):
            errors.append(str(fed["last_error"]))
    if not waiting:
        return ""
    listed = ", ".join(f"{n} to {hive}" for hive, n in sorted(waiting.items()))
    return f"; deliveries waiting: {listed}" + (f" (last error: {errors[0]})" if errors else "")


def _setting(value: Any) -> str:
    """A config value as a cell: "-" for none, a list as "a, b" (e.g. children)."""
    if value is None or value == []:
        return "-"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _num(value: float | int | None) -> str:
    return "-" if value is None else str(value)


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
