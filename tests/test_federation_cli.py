"""The federation tree from the command line: create --parent, federate, --detach, and how
show, status, list and delete see the tree (issue 11, config/CLI side).

Most runs are in-process (``cli``: the console script's code path); the end-to-end ones run
the installed console script as a user does (``cli_process``). Every refusal is checked to
write nothing (``config_snapshot``).
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from cli_helpers import cli, cli_process, config_snapshot

from hive_core.federation_tree import Tree
from hive_core.hive_config import HiveConfig


def make(capsys, name: str, *extra: str) -> None:
    res = cli(capsys, "create", "--name", name, "--agents", "1", "--replication-factor", "1",
              *extra)
    assert res.code == 0, res.err


def status_json(capsys, hive: str) -> dict:
    res = cli(capsys, "status", "--hive", hive, "--json")
    assert res.code == 3, res.err  # no agent runs: exit 3, the document is still complete
    return res.json()


def one_error_line(res) -> str:
    lines = res.err.strip().splitlines()
    assert len(lines) == 1, res.err
    assert lines[0].startswith("amplihack-hive: error: ")
    return lines[0]


# -- create --parent ---------------------------------------------------------------------------
def test_create_with_parent_writes_the_link_in_the_child(amplihack_home, capsys):
    make(capsys, "root")
    res = cli(capsys, "create", "--name", "g1", "--agents", "1", "--replication-factor", "1",
              "--parent", "root", "--json")
    assert res.code == 0, res.err
    assert res.json()["parent"] == "root"
    assert HiveConfig.load("g1").parent == "root"
    assert HiveConfig.load("root").parent is None  # the parent's file is not touched
    assert Tree.read().children("root") == ["g1"]
    human = cli(capsys, "create", "--name", "g2", "--parent", "root")
    assert human.code == 0 and "as a group of root" in human.out


def test_create_with_unknown_parent_says_did_you_mean_and_writes_nothing(amplihack_home,
                                                                         capsys):
    make(capsys, "root")
    before = config_snapshot(amplihack_home)
    res = cli(capsys, "create", "--name", "g1", "--parent", "rot")
    assert res.code == 1
    line = one_error_line(res)
    assert "no hive named 'rot'" in line and "did you mean 'root'?" in line
    assert config_snapshot(amplihack_home) == before
    assert not (amplihack_home / "hives" / "g1").exists()
    as_json = cli(capsys, "create", "--name", "g1", "--parent", "rot", "--json")
    assert as_json.json() == {"error": line.removeprefix("amplihack-hive: error: "),
                              "exit_code": 1}


def test_create_as_its_own_parent_is_a_usage_error(amplihack_home, capsys):
    res = cli(capsys, "create", "--name", "solo", "--parent", "solo")
    assert res.code == 2 and "cannot be its own parent" in one_error_line(res)
    assert config_snapshot(amplihack_home) == {}


# -- federate / detach ---------------------------------------------------------------------------
def test_federate_and_detach_are_idempotent_and_say_so(amplihack_home, capsys):
    make(capsys, "root")
    make(capsys, "g1")
    first = cli(capsys, "federate", "--hive", "g1", "--parent", "root")
    assert first.code == 0, first.err
    assert "now a group of root" in first.out and "nothing to restart" in first.out
    assert HiveConfig.load("g1").parent == "root"
    again = cli(capsys, "federate", "--hive", "g1", "--parent", "root", "--json")
    assert again.code == 0
    assert again.json() == {"hive": "g1", "parent": "root", "previous_parent": "root",
                            "changed": False, "children": []}
    detached = cli(capsys, "federate", "--hive", "g1", "--detach", "--json")
    assert detached.code == 0
    assert detached.json()["changed"] is True and detached.json()["previous_parent"] == "root"
    assert HiveConfig.load("g1").parent is None
    twice = cli(capsys, "federate", "--hive", "g1", "--detach")
    assert twice.code == 0 and "nothing to detach" in twice.out


def test_federate_needs_exactly_one_of_parent_or_detach(amplihack_home, capsys):
    make(capsys, "root")
    make(capsys, "g1")
    for argv in (("federate", "--hive", "g1"),
                 ("federate", "--hive", "g1", "--parent", "root", "--detach")):
        res = cli(capsys, *argv)
        assert res.code == 2 and "exactly one of --parent" in one_error_line(res)
    assert HiveConfig.load("g1").parent is None


def test_two_hive_cycle_is_refused_in_one_line(amplihack_home, capsys):
    make(capsys, "root")
    make(capsys, "g1", "--parent", "root")
    before = config_snapshot(amplihack_home)
    res = cli(capsys, "federate", "--hive", "root", "--parent", "g1")
    assert res.code == 1
    assert one_error_line(res).endswith(
        "'g1' cannot be the parent of 'root': it would make a cycle (root -> g1 -> root)")
    assert config_snapshot(amplihack_home) == before
    as_json = cli(capsys, "federate", "--hive", "root", "--parent", "g1", "--json")
    assert as_json.json()["exit_code"] == 1 and "cycle" in as_json.json()["error"]


def test_three_hive_cycle_is_refused(amplihack_home, capsys):
    make(capsys, "root")
    make(capsys, "mid", "--parent", "root")
    make(capsys, "leaf", "--parent", "mid")
    before = config_snapshot(amplihack_home)
    res = cli(capsys, "federate", "--hive", "root", "--parent", "leaf")
    assert res.code == 1
    assert "it would make a cycle (root -> leaf -> mid -> root)" in one_error_line(res)
    assert config_snapshot(amplihack_home) == before
    # create --force of the root under its own grandchild: the same refusal, nothing written.
    forced = cli(capsys, "create", "--name", "root", "--parent", "leaf", "--force")
    assert forced.code == 1 and "cycle" in one_error_line(forced)
    assert config_snapshot(amplihack_home) == before


def test_federate_to_unknown_parent_or_itself(amplihack_home, capsys):
    make(capsys, "root")
    make(capsys, "g1")
    res = cli(capsys, "federate", "--hive", "g1", "--parent", "roots")
    assert res.code == 1 and "did you mean 'root'?" in one_error_line(res)
    itself = cli(capsys, "federate", "--hive", "g1", "--parent", "g1")
    assert itself.code == 2 and "cannot be its own parent" in one_error_line(itself)
    missing = cli(capsys, "federate", "--hive", "nope", "--parent", "root")
    assert missing.code == 1 and "no hive named 'nope'" in one_error_line(missing)
    assert HiveConfig.load("g1").parent is None


def test_reparenting_leaves_no_stale_link(amplihack_home, capsys):
    make(capsys, "a")
    make(capsys, "b")
    make(capsys, "c", "--parent", "a")
    assert status_json(capsys, "a")["children"] == ["c"]
    moved = cli(capsys, "federate", "--hive", "c", "--parent", "b")
    assert moved.code == 0 and "moved hive c from a to b" in moved.out
    old, new, child = (status_json(capsys, h) for h in ("a", "b", "c"))
    assert (old["parent"], old["children"]) == (None, [])
    assert (new["parent"], new["children"]) == (None, ["c"])
    assert (child["parent"], child["children"]) == ("b", [])


# -- how the tree shows ----------------------------------------------------------------------------
def test_show_status_and_list_display_the_tree(amplihack_home, capsys):
    make(capsys, "root")
    make(capsys, "g1", "--parent", "root")
    make(capsys, "g2", "--parent", "root")
    root = status_json(capsys, "root")
    assert (root["parent"], root["children"]) == (None, ["g1", "g2"])
    assert status_json(capsys, "g2")["parent"] == "root"
    human = cli(capsys, "status", "--hive", "root")
    assert "federation: children g1, g2" in human.out
    assert "federation: parent root" in cli(capsys, "status", "--hive", "g1").out
    shown = cli(capsys, "show", "--hive", "root", "--json").json()
    assert (shown["parent"], shown["children"]) == (None, ["g1", "g2"])
    assert cli(capsys, "show", "--hive", "g1", "--json").json()["parent"] == "root"
    show_lines = cli(capsys, "show", "--hive", "root").out.splitlines()
    assert any(line.split() == ["children", "g1,", "g2"] for line in show_lines), show_lines
    rows = {r["name"]: r for r in cli(capsys, "list", "--json").json()["hives"]}
    assert {n: r["parent"] for n, r in rows.items()} == {"g1": "root", "g2": "root",
                                                         "root": None}
    table = cli(capsys, "list").out.splitlines()
    assert table[0].split()[:5] == ["hive", "transport", "agents", "running", "parent"]
    assert [line.split()[4] for line in table[1:]] == ["root", "root", "-"]


def test_delete_of_a_parent_is_refused_until_children_detach(amplihack_home, capsys):
    make(capsys, "root")
    make(capsys, "g1", "--parent", "root")
    make(capsys, "g2", "--parent", "root")
    before = config_snapshot(amplihack_home)
    res = cli(capsys, "delete", "--hive", "root")
    assert res.code == 1
    line = one_error_line(res)
    assert "parent of g1, g2" in line and "federate --hive g1 --detach" in line
    assert config_snapshot(amplihack_home) == before
    for child in ("g1", "g2"):
        assert cli(capsys, "federate", "--hive", child, "--detach").code == 0
    assert cli(capsys, "delete", "--hive", "root").code == 0
    assert "root" not in [r["name"] for r in cli(capsys, "list", "--json").json()["hives"]]
    # A child (a leaf) is deleted at once: its link lives in its own file only.
    make(capsys, "root")
    make(capsys, "g3", "--parent", "root")
    assert cli(capsys, "delete", "--hive", "g3").code == 0
    assert status_json(capsys, "root")["children"] == []


def test_help_has_examples(tmp_path):
    federate = cli_process(tmp_path, "federate", "--help")
    assert federate.code == 0
    assert "amplihack-hive federate --hive g1 --parent root" in federate.out
    assert "--detach" in federate.out
    create = cli_process(tmp_path, "create", "--help")
    assert "--parent" in create.out and "create --name g1 --parent root" in create.out
    assert "federate" in cli_process(tmp_path, "--help").out


# -- as a user runs it ---------------------------------------------------------------------------
def test_console_script_tree_end_to_end(tmp_path):
    home = tmp_path / "h"

    def run(*argv: str):
        return cli_process(home, *argv)

    assert run("create", "--name", "root", "--agents", "1").code == 0
    for g in ("g1", "g2", "g3"):
        res = run("create", "--name", g, "--agents", "1", "--parent", "root")
        assert res.code == 0, res.err
    cycle = run("federate", "--hive", "root", "--parent", "g2", "--json")
    assert cycle.code == 1
    assert cycle.json()["error"].endswith("it would make a cycle (root -> g2 -> root)")
    assert len(cycle.err.strip().splitlines()) == 1
    assert run("federate", "--hive", "g3", "--parent", "g1").code == 0
    root = run("status", "--hive", "root", "--json").json()
    assert root["children"] == ["g1", "g2"]
    assert run("status", "--hive", "g1", "--json").json()["children"] == ["g3"]
    assert run("federate", "--hive", "g3", "--detach").code == 0
    assert run("status", "--hive", "g1", "--json").json()["children"] == []


@pytest.mark.timeout(120)
def test_federate_works_while_the_hive_runs(tmp_path):
    """No agent has to stop for a link to change (running agents re-read the tree)."""
    home = tmp_path / "h"
    assert cli_process(home, "create", "--name", "root", "--agents", "1",
                       "--replication-factor", "1", "--shard-backend", "memory").code == 0
    assert cli_process(home, "create", "--name", "g1", "--agents", "1",
                       "--replication-factor", "1", "--shard-backend", "memory").code == 0
    started = cli_process(home, "start", "--hive", "g1", "--json", timeout=90)
    assert started.code == 0, started.err
    pids = [a["pid"] for a in started.json()["agents"]]
    try:
        res = cli_process(home, "federate", "--hive", "g1", "--parent", "root")
        assert res.code == 0, res.err
        status = cli_process(home, "status", "--hive", "g1", "--json")
        assert status.code == 0, status.err  # still running: nothing was restarted
        assert status.json()["parent"] == "root"
        assert [a["pid"] for a in status.json()["agents"]] == pids
    finally:
        stopped = cli_process(home, "stop", "--hive", "g1", timeout=60)
        if stopped.code != 0:
            for pid in pids:
                _kill(pid)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    time.sleep(0.1)
