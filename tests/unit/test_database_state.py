"""A registered database's name rules and the state its events fold into."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from schemasaga.domain.database import (
    STATUS_AVAILABLE,
    STATUS_UNKNOWN,
    STATUS_UNREACHABLE,
    DatabaseCredentialsRotated,
    DatabaseRegistered,
    DatabaseState,
    DatabaseStatusChanged,
    DatabaseUnregistered,
    DatabaseUrlChanged,
    fold,
    validate_name,
)
from schemasaga.domain.errors import InvalidDatabaseName

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def registered(*, server_version: str | None = "16.2") -> DatabaseRegistered:
    return DatabaseRegistered(
        name="analytics",
        engine="postgresql",
        display={"host": "db", "database": "analytics"},
        url_encrypted="token-1",
        key_id="k1",
        source="api",
        server_version=server_version,
        identity="postgresql.cluster:c1",
    )


# -- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Analytics", "1st", "a" * 64, "", "with-dash"])
def test_a_malformed_name_is_refused_saying_what_a_name_is(name: str) -> None:
    message = (
        f"invalid database name {name!r}: use 1 to 63 lower-case letters, digits and underscores, "
        "starting with a letter"
    )
    with pytest.raises(InvalidDatabaseName, match=f"^{re.escape(message)}$"):
        validate_name(name)


def test_the_default_name_is_kept_for_the_configured_database() -> None:
    message = "the name 'default' is reserved for the database configured by SCHEMASAGA_BYODB_URL"
    with pytest.raises(InvalidDatabaseName, match=f"^{re.escape(message)}$"):
        validate_name("default")
    validate_name("default", allow_default=True)
    validate_name("a" * 63)


# -- state ---------------------------------------------------------------------------------------


def test_a_registration_tried_on_the_server_is_available() -> None:
    state = fold("analytics", [(registered(), at(0))])
    assert state == DatabaseState(
        name="analytics",
        version=0,
        registered=True,
        engine="postgresql",
        display={"host": "db", "database": "analytics"},
        url_encrypted="token-1",
        key_id="k1",
        source="api",
        status=STATUS_AVAILABLE,
        server_version="16.2",
        identity="postgresql.cluster:c1",
        created_at=at(0),
        updated_at=at(0),
    )


def test_a_registration_recorded_without_connecting_has_an_unknown_status() -> None:
    state = fold("analytics", [(registered(server_version=None), at(0))])
    assert (state.status, state.server_version) == (STATUS_UNKNOWN, None)


def test_each_event_changes_what_it_says_and_the_times_follow() -> None:
    state = DatabaseState(name="analytics")
    state.apply(registered(), at(0))

    state.apply(
        DatabaseStatusChanged(
            name="analytics", status=STATUS_UNREACHABLE, server_version=None, error="refused"
        ),
        at(10),
    )
    assert (state.status, state.server_version) == (STATUS_UNREACHABLE, None)
    state.apply(
        DatabaseStatusChanged(name="analytics", status=STATUS_AVAILABLE, server_version="16.3", error=None),
        at(20),
    )
    assert (state.status, state.server_version) == (STATUS_AVAILABLE, "16.3")

    state.apply(
        DatabaseCredentialsRotated(
            name="analytics", url_encrypted="token-2", key_id="k2", previous_key_id="k1"
        ),
        at(30),
    )
    assert (state.url_encrypted, state.key_id) == ("token-2", "k2")
    assert (state.status, state.identity) == (STATUS_AVAILABLE, "postgresql.cluster:c1")  # same URL

    state.apply(
        DatabaseUrlChanged(
            name="analytics", engine="mysql", display={"host": "db2"}, url_encrypted="token-3", key_id="k2"
        ),
        at(40),
    )
    assert (state.engine, state.display, state.url_encrypted) == ("mysql", {"host": "db2"}, "token-3")
    assert (state.status, state.server_version, state.identity) == (STATUS_UNKNOWN, None, None)

    state.apply(DatabaseUnregistered(name="analytics"), at(50))
    assert state.registered is False
    assert (state.url_encrypted, state.identity) == ("", None)  # nothing left to decrypt
    assert (state.version, state.created_at, state.updated_at) == (5, at(0), at(50))


def test_fold_applies_the_events_in_order_with_their_times() -> None:
    events = [
        (registered(), at(0)),
        (
            DatabaseStatusChanged(name="analytics", status="unreachable", server_version=None, error="x"),
            at(5),
        ),
        (DatabaseUnregistered(name="analytics"), at(9)),
    ]
    state = fold("analytics", events)
    expected = DatabaseState(name="analytics")
    for event, when in events:
        expected.apply(event, when)
    assert state == expected
    assert (state.version, state.created_at, state.updated_at) == (2, at(0), at(9))
    assert fold("nothing", []) == DatabaseState(name="nothing", version=-1)
