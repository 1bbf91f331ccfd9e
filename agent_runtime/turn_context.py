"""The turn before: what a LEARN item that opens with a pronoun carries for its extractor.

"He said he finally bought a Skoda." names nobody; the turn before it in the conversation
("I walked to the station with Diego Alvarez.") does. Extraction writes the name in
(agent_runtime.learning.antecedent), so the fact answers "Which car did Diego Alvarez buy?"
on its own -- found by the name's postings like any fact that says it, on at most
``query_fanout`` shards, the same at every hive size.

Why it is attached by whoever streams the turns, not looked up by the agent: ``learn`` deals
turn i to agent i mod N, so consecutive turns are learned by different agents, and an agent
cannot ask for a turn it never saw. The sender has both in hand. Only turns that open with a
pronoun carry it (most do not), so a learn sends few extra bytes; the turn before is whole
(it is no longer than the per-turn limit), because its subject may have been named in its
first sentence and carried through the rest.

"The turn before" is the previous item of the same conversation in the stream: same
``session`` (items without one count as one conversation), in order -- a text file's blank
lines leave gaps in the line numbers, not in the conversation.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from agent_runtime.learning import opens_with_pronoun


def with_before(turns: Iterable[Any]) -> Iterator[Any]:
    """``turns`` (LEARN items: str or dicts with ``content``), each one that opens with a
    pronoun given ``before``: the content of the item before it in its conversation. Items
    are copied when changed, never modified; a ``before`` already set is kept."""
    last: dict[Any, str] = {}  # conversation -> content of its latest turn
    for item in turns:
        if isinstance(item, str):
            session: Any = None
            content = item
        elif isinstance(item, dict) and isinstance(item.get("content"), str):
            session, content = item.get("session"), item["content"]
        else:  # malformed: the agent refuses it with the LEARN usage line
            yield item
            continue
        previous = last.get(session)
        if previous is not None and opens_with_pronoun(content):
            if isinstance(item, str):
                item = {"content": item, "before": previous}
            elif "before" not in item:
                item = {**item, "before": previous}
        last[session] = content
        yield item


def item_texts(item: Any) -> tuple[str, str]:
    """What a LEARN item makes an agent read: its text (a string, or ``{"content": ...}``) and
    the turn before it; "" for what is absent or malformed (the extractor's own check names
    the problem). The agent's budget and the CLI's batch sizes count both."""
    if isinstance(item, str):
        return item, ""
    if not isinstance(item, dict):
        return "", ""
    content, before = item.get("content"), item.get("before")
    return (content if isinstance(content, str) else "",
            before if isinstance(before, str) else "")
