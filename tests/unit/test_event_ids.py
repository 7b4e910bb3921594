"""Default event ids are time-ordered (UUID version 7), so appends put them at the end of the indexes that
lead with an event id instead of on a random page (issue 12, event append)."""

from __future__ import annotations

import time
from uuid import RFC_4122

from schemasaga.eventstore import NewEvent
from schemasaga.eventstore.events import new_event_id


def test_default_event_ids_are_uuid7_with_the_creation_time_first() -> None:
    before = time.time_ns() // 1_000_000
    event_id = NewEvent("Thing", {}).event_id
    after = time.time_ns() // 1_000_000
    assert event_id.version == 7
    assert event_id.variant == RFC_4122
    assert before <= event_id.int >> 80 <= after


def test_ids_made_later_sort_after_and_never_repeat() -> None:
    first = [new_event_id() for _ in range(20_000)]
    time.sleep(0.002)
    later = new_event_id()
    assert max(first) < later
    assert len(set(first)) == len(first)
