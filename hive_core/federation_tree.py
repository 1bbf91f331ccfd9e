"""The federation tree of the hives under one ``AMPLIHACK_HOME``: who is whose parent.

One owner for every link: a group hive's ``parent`` key in its own config.yaml. A hive's
children are the hives that name it, computed, never stored -- so re-parenting a hive edits
one file and cannot leave the old parent listing it (the in-process library once edited
links from both ends and kept stale children).

:func:`check_parent` refuses a link that would make a cycle or names no hive.
:class:`TreeView` is what a running agent reads: the tree as the files say now, re-read at
most every ``ttl`` seconds, so ``federate`` and ``federate --detach`` reach running hives
without a restart.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from hive_core.errors import ConfigError, HiveError
from hive_core.hive_config import HiveConfig, did_you_mean, hive_names

TREE_TTL = 2.0  # seconds a running agent keeps the tree it read


@dataclass(frozen=True, slots=True)
class Tree:
    """Parent of every hive that has one; hives whose config cannot be read are listed
    in ``broken`` (they take no part: a link is only as good as the file holding it)."""

    parents: dict[str, str]
    broken: tuple[str, ...] = ()

    @classmethod
    def read(cls) -> Tree:
        parents: dict[str, str] = {}
        broken: list[str] = []
        for name in hive_names():
            try:
                parent = HiveConfig.load(name).parent
            except HiveError:
                broken.append(name)
                continue
            if parent is not None:
                parents[name] = parent
        return cls(parents, tuple(broken))

    def parent(self, hive: str) -> str | None:
        return self.parents.get(hive)

    def children(self, hive: str) -> list[str]:
        return sorted(child for child, parent in self.parents.items() if parent == hive)

    def siblings(self, hive: str) -> list[str]:
        parent = self.parent(hive)
        return [] if parent is None else [c for c in self.children(parent) if c != hive]

    def ancestors(self, hive: str) -> list[str]:
        """Parent, grandparent, ...; stops at a cycle (a hand-edited file may hold one)."""
        out: list[str] = []
        node = self.parents.get(hive)
        while node is not None and node != hive and node not in out:
            out.append(node)
            node = self.parents.get(node)
        return out

    def federated(self, hive: str) -> list[str]:
        """The hives a federated question from ``hive`` asks besides itself: its parent, the
        parent's other children, and its own children (each once)."""
        parent = self.parent(hive)
        out = ([parent] if parent is not None else []) + self.siblings(hive)
        out += [c for c in self.children(hive) if c not in out]
        return [h for h in out if h != hive]

    def in_tree(self, hive: str) -> bool:
        return self.parent(hive) is not None or bool(self.children(hive))


def check_parent(child: str, parent: str | None, tree: Tree | None = None) -> None:
    """Refuse a link that names no hive or closes a cycle, with one line saying which."""
    if parent is None:
        return
    if parent == child:
        raise ConfigError(f"hive {child!r} cannot be its own parent")
    names = hive_names()
    if parent not in names:
        raise ConfigError(f"no hive named {parent!r} to be the parent of {child!r}"
                          + did_you_mean(parent, names))
    tree = tree or Tree.read()
    chain = [parent, *tree.ancestors(parent)]
    if child in chain:
        loop = " -> ".join([child, *chain[:chain.index(child) + 1]])
        raise ConfigError(f"{parent!r} cannot be the parent of {child!r}: it would make a "
                          f"cycle ({loop})")


class TreeView:
    """The tree for a running agent, re-read when older than ``ttl`` seconds."""

    def __init__(self, ttl: float = TREE_TTL) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._tree: Tree | None = None
        self._at = 0.0

    def tree(self) -> Tree:
        with self._lock:
            now = time.monotonic()
            if self._tree is None or now - self._at >= self.ttl:
                self._tree = Tree.read()
                self._at = now
            return self._tree
