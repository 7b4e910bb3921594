"""The metrics' own rules: bounded labels, and recording that never fails the work it measures."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from sqlalchemy import exc as sa_exc

from schemasaga.byodb.errors import ByodbError, classify
from schemasaga.eventstore import RecordedEvent
from schemasaga.observability import metrics


def recorded(event_type: str, **data: object) -> RecordedEvent:
    return RecordedEvent(
        event_id=uuid4(),
        event_type=event_type,
        data={"table_id": str(uuid4()), "operation_id": str(uuid4()), **data},
        metadata={},
        schema_version=1,
        position=1,
        created_at=datetime.now(UTC),
        valid_at=None,
        stream="Table$x",
        version=0,
    )


def accepted(kind: str, engine: str) -> float:
    return metrics.OPERATIONS_ACCEPTED.labels(kind, engine)._value.get()


def test_accepted_operations_are_counted_by_kind_and_engine() -> None:
    observer = metrics.CommitMetrics({"db1": "mysql"}.get)
    before = {k: accepted(k, "mysql") for k in ("create_table", "add_column", "remove_column", "adopt")}
    observer.committed(
        [
            recorded("TableCreated", name="t", database="db1", columns=[]),
            recorded("TableChanged", action="add", column={}),
            recorded("TableChanged", action="remove", column={}),
            recorded("TableReconciliationRequested", strategy="adopt"),
            recorded("SagaStepCompleted", step="verify"),
        ],
        {"Table$x": "db1"},
    )
    assert {k: accepted(k, "mysql") - v for k, v in before.items()} == {
        "create_table": 1,
        "add_column": 1,
        "remove_column": 1,
        "adopt": 1,
    }


def test_recording_never_fails_the_work_it_measures(caplog: pytest.LogCaptureFixture) -> None:
    def broken(_: str) -> str | None:
        raise RuntimeError("no engine")

    with caplog.at_level(logging.ERROR):
        metrics.CommitMetrics(broken).committed([recorded("TableDeleted")], {"Table$x": "db1"})
    assert "recording metrics failed" in caplog.text


def test_a_retry_is_labelled_with_the_drivers_error_class() -> None:
    class LockNotAvailable(Exception):
        pass

    with pytest.raises(ByodbError) as caught:
        try:
            raise sa_exc.OperationalError("ALTER TABLE t", {}, LockNotAvailable("canceling statement"))
        except sa_exc.OperationalError as exc:
            raise classify(exc) from exc
    assert metrics.error_class(caught.value) == "LockNotAvailable"
    assert metrics.error_class(TimeoutError()) == "TimeoutError"
