"""The causation tree of one correlation, for the console (pure: no I/O).

What the store records: every event carries ``correlation_id`` (the operation id for a table change and
each event of its saga, the scan id for a drift scan) and ``causation_id`` (the event or request that
caused it; it defaults to the correlation id when the writer names none). The tree's root is the request
that started the correlation; an event hangs below the event its ``causation_id`` names when that is one
of the correlation's events, else below the previous event of the same table (a saga runs its steps one
at a time, in order, each one caused by the outcome of the one before), else below the request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from schemasaga.eventstore import RecordedEvent


@dataclass
class Node:
    event: RecordedEvent
    children: list[Node] = field(default_factory=list)


@dataclass
class Tree:
    correlation_id: str
    request: dict[str, Any]
    children: list[Node]


def _subject(event: RecordedEvent) -> str:
    """What the event is about (its table or database), so that unrelated subjects branch apart."""
    for key in ("table_id", "database", "name"):
        if key in event.data:
            return f"{key}:{event.data[key]}"
    return ""


def causation_tree(correlation_id: str, events: list[RecordedEvent]) -> Tree:
    """``events``: the correlation's events, oldest first."""
    nodes = {e.event_id: Node(e) for e in events}
    last_of: dict[str, UUID] = {}
    roots: list[Node] = []
    for event in events:
        cause = event.metadata.get("causation_id")
        parent: UUID | None = None
        try:
            named = UUID(str(cause)) if cause is not None else None
        except ValueError:
            named = None
        if named is not None and named in nodes and named != event.event_id:
            parent = named
        else:
            parent = last_of.get(_subject(event))
        (nodes[parent].children if parent is not None else roots).append(nodes[event.event_id])
        last_of[_subject(event)] = event.event_id
    first = events[0].metadata if events else {}
    request = {key: first.get(key) or "" for key in ("request_id", "actor", "actor_note")}
    return Tree(correlation_id=correlation_id, request=request, children=roots)
