"""The causation tree of a correlation: below the event its causation_id names, else below the previous
event about the same table, else below the request."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from schemasaga.api.causation import Node, causation_tree
from schemasaga.eventstore import RecordedEvent

SCAN = str(uuid4())


def event(kind: str, table: UUID, position: int, **metadata: Any) -> RecordedEvent:
    meta = {"correlation_id": SCAN, "causation_id": SCAN, "request_id": "r-1", "actor": "ops", **metadata}
    return RecordedEvent(
        event_id=uuid4(),
        event_type=kind,
        data={"table_id": str(table)},
        metadata=meta,
        schema_version=1,
        position=position,
        created_at=datetime.now(UTC),
        valid_at=None,
        stream=None,
        version=None,
    )


def shape(nodes: list[Node]) -> list[Any]:
    return [(n.event.event_type, shape(n.children)) for n in nodes]


def test_a_saga_is_a_chain_and_other_tables_branch_from_the_request() -> None:
    a, b = uuid4(), uuid4()
    accepted = event("TableChanged", a, 1)
    step = event("SagaStepCompleted", a, 3)
    drift = event("TableDriftDetected", b, 2)
    confirmed = event("TableChangeConfirmed", a, 4)
    tree = causation_tree(SCAN, [accepted, drift, step, confirmed])
    assert tree.request == {"request_id": "r-1", "actor": "ops", "actor_note": ""}
    assert shape(tree.children) == [
        ("TableChanged", [("SagaStepCompleted", [("TableChangeConfirmed", [])])]),
        ("TableDriftDetected", []),
    ]


def test_a_causation_id_that_names_an_event_wins() -> None:
    a = uuid4()
    accepted = event("TableChanged", a, 1)
    failed = event("SagaAttemptFailed", a, 2)
    # Caused by the acceptance, not by the failed attempt before it.
    rejected = event("TableChangeRejected", a, 3, causation_id=str(accepted.event_id))
    tree = causation_tree(SCAN, [accepted, failed, rejected])
    assert shape(tree.children) == [
        ("TableChanged", [("SagaAttemptFailed", []), ("TableChangeRejected", [])])
    ]
