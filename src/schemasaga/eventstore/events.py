"""The event store's vocabulary: events to append, events read back, versions, checkpoints, errors."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal
from uuid import UUID

ANY: Final = "any"
"""expected_version: append whatever the stream's version."""
NO_STREAM: Final = -1
"""expected_version: the stream must not exist yet."""

ExpectedVersion = int | Literal["any"]
"""ANY, NO_STREAM, or an int >= 0: the version (0-based) of the stream's last event."""


def new_event_id() -> UUID:
    """A time-ordered event id (UUID version 7, RFC 9562): the milliseconds since the epoch, then 74
    random bits. Ids appended together sort together, so the unique index on event ids (and the others
    that lead with one: an event's streams, its correlation id, which defaults to the event id) takes
    each new entry on its last pages, as it does a position, instead of on a random page of the whole
    index: fewer pages read and dirtied per append, and fewer full-page images in the WAL after each
    checkpoint. Random uuid4 ids from callers stay valid: the order of ids means nothing."""
    rand = int.from_bytes(os.urandom(10))
    return UUID(
        int=(time.time_ns() // 1_000_000) << 80  # unix_ts_ms: 48 bits
        | 0x7 << 76  # version 7
        | (rand >> 62 & 0xFFF) << 64  # rand_a: 12 bits
        | 0b10 << 62  # the RFC's variant
        | (rand & (1 << 62) - 1)  # rand_b: 62 bits
    )


class EventStoreError(Exception):
    """Base of the event store's errors."""


class WrongExpectedVersion(EventStoreError):
    """The stream's version is not the one the writer expected; nothing was written."""

    def __init__(self, stream: str, expected: ExpectedVersion, actual: int | None) -> None:
        self.stream = stream
        self.expected = expected
        self.actual = actual
        shown = "unknown (a concurrent writer got there first)" if actual is None else str(actual)
        super().__init__(f"stream {stream!r}: expected version {expected}, actual version {shown}")


class EventNotFound(EventStoreError):
    """No event has this id."""

    def __init__(self, event_id: UUID) -> None:
        self.event_id = event_id
        super().__init__(f"no event with id {event_id}")


class EventDuplicated(EventStoreError):
    """An event id is stored already, or an event is linked twice into one stream; nothing was written."""


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append. Metadata gets correlation_id, causation_id and timestamp when absent."""

    event_type: str
    data: Mapping[str, Any]
    metadata: Mapping[str, Any] = field(default_factory=dict)
    event_id: UUID = field(default_factory=new_event_id)
    schema_version: int = 1
    valid_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where a follower of the global log is: the last event it handled, in (tx_id, position) order."""

    tx_id: int
    position: int


START: Final = Checkpoint(tx_id=0, position=0)
"""Before the first event of the global log."""


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """A stored event. stream and version say where it was read from (None for global reads; for events
    yielded by EventStore.follow, the stream each was appended to and its version there); tx_id is
    set only on events yielded by EventStore.follow, where it makes the follower's checkpoint."""

    event_id: UUID
    event_type: str
    data: dict[str, Any]
    metadata: dict[str, Any]
    schema_version: int
    position: int
    created_at: datetime
    valid_at: datetime | None
    stream: str | None
    version: int | None
    tx_id: int | None = None

    @property
    def checkpoint(self) -> Checkpoint:
        """The follower checkpoint just after this event (only for events yielded by follow)."""
        if self.tx_id is None:
            raise EventStoreError(
                "only events yielded by EventStore.follow carry a checkpoint: a position from another read"
                " could skip events whose transactions commit later"
            )
        return Checkpoint(tx_id=self.tx_id, position=self.position)
