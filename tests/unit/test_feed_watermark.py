"""The feed's settled position (services/feed.py): positions up to the sequence's value S are delivered
only once every transaction that may hold one of them has ended."""

from __future__ import annotations

import pytest

from schemasaga.domain.errors import InvalidLastEventId, UnknownEventType
from schemasaga.services.feed import Watermark, parse_event_types, resume_position


def test_nothing_running_settles_everything_handed_out() -> None:
    w = Watermark()
    assert w.observe(high=7, running=frozenset()) == 7
    assert not w.pending


def test_positions_wait_for_every_transaction_running_when_they_were_seen() -> None:
    w = Watermark(settled=3)
    # 95 and 99 run: positions 4..9 may be theirs.
    assert w.observe(high=9, running=frozenset({95, 99})) == 3
    assert w.pending
    # 95 ended, 99 still runs (and 101 started): still held.
    assert w.observe(high=12, running=frozenset({99, 101})) == 3
    # 99 ended: 9 settles; 12 waits for 101, recorded by this look.
    assert w.observe(high=12, running=frozenset({101})) == 9
    assert w.observe(high=13, running=frozenset({101, 104})) == 9
    assert w.observe(high=13, running=frozenset({104})) == 12
    assert w.observe(high=13, running=frozenset()) == 13


def test_the_settled_position_never_goes_back() -> None:
    w = Watermark(settled=20)
    assert w.observe(high=15, running=frozenset()) == 20


def test_resume_position_takes_last_event_id_first_and_refuses_what_is_no_position() -> None:
    assert resume_position(last_event_id="42", after=7) == 42
    assert resume_position(last_event_id=None, after=7) == 7
    assert resume_position(last_event_id=None, after=None) == 0
    for bad in ("", "x", "-1", "1.5", "٣", str(2**63)):
        with pytest.raises(InvalidLastEventId):
            resume_position(last_event_id=bad, after=None)
    with pytest.raises(InvalidLastEventId):
        resume_position(last_event_id=None, after=-1)


def test_event_types_are_checked() -> None:
    assert parse_event_types([]) is None
    assert parse_event_types(["TableCreated", "TableCreated", "TokenCreated"]) == (
        "TableCreated",
        "TokenCreated",
    )
    with pytest.raises(UnknownEventType):
        parse_event_types(["TableCreated", "Nope"])
