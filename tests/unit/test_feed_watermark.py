"""The feed's settled position (services/feed.py): positions up to the sequence's value S are delivered
only once every transaction that may hold one of them has ended."""

from __future__ import annotations

import pytest

from schemasaga.domain.errors import InvalidLastEventId, UnknownEventType
from schemasaga.services.feed import Watermark, parse_event_types, resume_position


def test_nothing_running_settles_everything_handed_out() -> None:
    w = Watermark()
    assert w.observe(high=7, horizon=100, xmax=100) == 7
    assert not w.pending


def test_a_running_transaction_holds_the_positions_back_until_the_horizon_passes_the_xmax_seen() -> None:
    w = Watermark(settled=3)
    # xid 95 still runs: positions 4..9 may belong to it (or to anything below xmax 100).
    assert w.observe(high=9, horizon=95, xmax=100) == 3
    assert w.pending
    # Later: 95 ended but 99 still runs (it started before the first look): still held.
    assert w.observe(high=12, horizon=99, xmax=104) == 3
    # Everything below 100 ended: 9 settles, and this look records (12, 105).
    assert w.observe(high=12, horizon=101, xmax=105) == 9
    # Once the horizon reaches 105, 12 is settled.
    assert w.observe(high=12, horizon=103, xmax=106) == 9
    assert w.observe(high=13, horizon=105, xmax=107) == 12
    assert w.observe(high=13, horizon=107, xmax=107) == 13


def test_the_settled_position_never_goes_back() -> None:
    w = Watermark(settled=20)
    assert w.observe(high=15, horizon=5, xmax=5) == 20


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
