"""A plan: the statements a change runs on its table's engine, what each costs, and what to watch for.

The planner (``byodb.planner``) writes it from the schemas before and after the change; the API answers it
for ``?dry_run=true``; the change's event records it, and its saga runs exactly these statements.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Statement:
    sql: str
    # The lock it takes on the table, in the engine's words ("ACCESS EXCLUSIVE", "SHARE", ...).
    lock: str
    rewrites: bool = False  # whether it rewrites every row (the table is copied)
    scans: bool = False  # whether it reads every row (to check or to build an index)
    # False for statements that cannot run in a transaction (PostgreSQL's CREATE INDEX CONCURRENTLY).
    transactional: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "sql": self.sql,
            "lock": self.lock,
            "rewrites": self.rewrites,
            "scans": self.scans,
            "transactional": self.transactional,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Statement:
        return cls(
            sql=data["sql"],
            lock=data["lock"],
            rewrites=bool(data.get("rewrites", False)),
            scans=bool(data.get("scans", False)),
            transactional=bool(data.get("transactional", True)),
        )


@dataclass(frozen=True, slots=True)
class Plan:
    engine: str
    statements: tuple[Statement, ...] = ()
    warnings: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "statements": [s.to_dict() for s in self.statements],
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        return cls(
            engine=data["engine"],
            statements=tuple(Statement.from_dict(s) for s in data["statements"]),
            warnings=tuple(data.get("warnings", ())),
        )
