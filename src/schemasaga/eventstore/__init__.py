"""The event store: named streams of events in PostgreSQL, with expected versions, links, reads of
streams and of the global log, a commit-safe follower, upcasting and snapshots."""

from schemasaga.eventstore.events import (
    ANY,
    NO_STREAM,
    START,
    Checkpoint,
    EventDuplicated,
    EventNotFound,
    EventStoreError,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    WrongExpectedVersion,
)
from schemasaga.eventstore.store import EventStore, LeanEvent, lean_events
from schemasaga.eventstore.upcasting import Upcaster, Upcasters

__all__ = [
    "ANY",
    "NO_STREAM",
    "START",
    "Checkpoint",
    "EventDuplicated",
    "EventNotFound",
    "EventStore",
    "EventStoreError",
    "ExpectedVersion",
    "LeanEvent",
    "NewEvent",
    "RecordedEvent",
    "Upcaster",
    "Upcasters",
    "WrongExpectedVersion",
    "lean_events",
]
