"""The ``federate`` command, and the tree position ``create``/``show``/``status``/``list``
and ``delete`` read: a hive's place in a federation (hive_core.federation_tree).

A link of the tree is one key, ``parent``, in the *child's* config.yaml; a hive's children
are the hives naming it, computed when shown. ``federate`` therefore edits one file, under
the child's lifecycle lock (hive_cli.hive_lock) like every other config change.

Two commands on *different* hives can still race on the tree itself: ``federate --hive a
--parent b`` and ``federate --hive b --parent a`` each hold only their own hive's lock, each
see no cycle, and together make one; ``delete --hive root`` could remove a hive that
``create --parent root`` is checking. So every command that reads the tree to decide a link
(federate, create --parent, delete) also holds :func:`tree_locked`, briefly, always *after*
the hive lock (one order: no deadlock).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import replace
from typing import Annotated, Any

import typer

from hive_cli import hive_lock
from hive_cli.errors import UsageProblem
from hive_cli.options import Hive, Json, complete_hive, name_check
from hive_cli.render import Renderer
from hive_core.federation_tree import TREE_TTL, Tree, check_parent
from hive_core.hive_config import HiveConfig, amplihack_home

# Not a valid hive name (a name starts with a letter or digit): never a hive's own lock.
TREE_LOCK = "_tree.lock"


@contextlib.contextmanager
def tree_locked(wait: float | None = None) -> Iterator[None]:
    """Hold the lock of the whole tree (``$AMPLIHACK_HOME/locks/_tree.lock``) for the body.

    Held only while a command reads the tree and writes one config, so a wait is short; it
    still has the hive locks' deadline (``AMPLIHACK_LOCK_TIMEOUT``)."""
    limit = hive_lock.wait_limit() if wait is None else wait
    path = amplihack_home() / "locks" / TREE_LOCK
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        hive_lock.flock_within(fd, limit, lambda: hive_lock.HiveBusy(
            f"the federation tree is busy: another command held its lock for more than "
            f"{limit:g}s (or set AMPLIHACK_LOCK_TIMEOUT)"))
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def position(hive: str, tree: Tree | None = None) -> dict[str, Any]:
    """``{"parent": name | None, "children": [names]}``: what show/status/list display."""
    tree = tree or Tree.read()
    return {"parent": tree.parent(hive), "children": tree.children(hive)}


def check_new_parent(child: str, parent: str) -> None:
    """The link ``child -> parent`` names a readable hive and makes no cycle (one line)."""
    if parent == child:
        raise UsageProblem(f"hive {child!r} cannot be its own parent")
    check_parent(child, parent)  # ConfigError: unknown (did-you-mean) or a cycle
    HiveConfig.load(parent)  # a parent whose config cannot be read would take no part


LIVE_NOTE = (f"running agents pick it up within {TREE_TTL:g} s, nothing to restart")


def federate_command(
    hive: Hive,
    parent: Annotated[str | None, typer.Option(
        "--parent", help="The hive to become a group of (its parent in the tree).",
        callback=name_check("hive"), autocompletion=complete_hive)] = None,
    detach: Annotated[bool, typer.Option(
        "--detach", help="Leave the tree: remove the hive's parent.")] = False,
    json_out: Json = False,
) -> None:
    """Put a hive under a parent hive (--parent) or take it out (--detach).

    The link is the `parent` key of the hive's own config; a hive's children are the
    hives naming it. Cycles are refused. Works while the hives run: their agents re-read
    the tree within a few seconds. Running it twice is harmless.

    \b
    Examples:
      amplihack-hive federate --hive g1 --parent root
      amplihack-hive federate --hive g1 --parent other-root   # moves g1
      amplihack-hive federate --hive g1 --detach
    """
    if (parent is None) == (not detach):
        raise UsageProblem("give exactly one of --parent HIVE or --detach")
    out = Renderer(json_out)
    with hive_lock.hold(hive, "federate", on_wait=out.note), tree_locked():
        config = HiveConfig.load(hive)
        previous = config.parent
        if parent is not None and previous != parent:
            check_new_parent(hive, parent)
        changed = previous != parent
        if changed:
            replace(config, parent=parent).save()
        children = Tree.read().children(hive)
    if json_out:
        return out.json({"hive": hive, "parent": parent, "previous_parent": previous,
                         "changed": changed, "children": children})
    out.message(_line(hive, parent, previous))


def _line(hive: str, parent: str | None, previous: str | None) -> str:
    if parent is None:
        if previous is None:
            return f"hive {hive} has no parent: nothing to detach"
        return f"detached hive {hive} from {previous} ({LIVE_NOTE})"
    if previous == parent:
        return f"hive {hive} is already a group of {parent}: nothing to change"
    if previous is None:
        return f"hive {hive} is now a group of {parent} ({LIVE_NOTE})"
    return f"moved hive {hive} from {previous} to {parent} ({LIVE_NOTE})"
