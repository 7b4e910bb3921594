"""Who holds a table when a DDL statement timed out waiting for its lock: the sessions to look at (their
id, their query cut to 200 characters, how long their transaction has been open).

PostgreSQL names them exactly: the sessions holding a granted lock on the table (``pg_locks`` and
``pg_stat_activity``). MySQL/MariaDB's metadata locks are listed only when the ``metadata_lock_info``
plugin (MariaDB) or ``performance_schema.metadata_locks`` (MySQL 8) is there; otherwise the sessions
with an open InnoDB transaction are reported, the usual holders of a metadata lock. SQLite locks the
whole database file and cannot tell who holds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text

QUERY_LIMIT = 200
MAX_BLOCKERS = 5

_PG = text(
    """
    SELECT a.pid::text, left(coalesce(a.query, ''), :limit),
           extract(epoch FROM clock_timestamp() - coalesce(a.xact_start, a.query_start))::float8, a.state
    FROM pg_catalog.pg_locks l
    JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_backend_pid()
      AND l.relation = (SELECT c.oid FROM pg_catalog.pg_class c
                        WHERE c.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace
                                                WHERE nspname = current_schema())
                          AND lower(c.relname) = lower(:name)
                        ORDER BY c.relname = :name DESC LIMIT 1)
    GROUP BY a.pid, a.query, a.xact_start, a.query_start, a.state
    ORDER BY 3 DESC NULLS LAST
    LIMIT :max
    """
)
_MARIADB_MDL = text(
    """
    SELECT m.THREAD_ID, LEFT(COALESCE(p.INFO, ''), :limit), p.TIME, m.LOCK_MODE
    FROM information_schema.METADATA_LOCK_INFO m
    JOIN information_schema.PROCESSLIST p ON p.ID = m.THREAD_ID
    WHERE m.TABLE_SCHEMA = DATABASE() AND LOWER(m.TABLE_NAME) = LOWER(:name)
      AND m.THREAD_ID <> CONNECTION_ID()
    ORDER BY p.TIME DESC LIMIT :max
    """
)
_INNODB_OPEN = text(
    """
    SELECT p.ID, LEFT(COALESCE(p.INFO, t.trx_query, ''), :limit),
           TIMESTAMPDIFF(MICROSECOND, t.trx_started, NOW(6)) / 1000000, t.trx_state
    FROM information_schema.INNODB_TRX t
    JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id
    WHERE p.ID <> CONNECTION_ID()
    ORDER BY t.trx_started LIMIT :max
    """
)


@dataclass(frozen=True, slots=True)
class Blocker:
    session: str
    query: str
    held_for_s: float | None
    state: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "query": self.query,
            "held_for_s": self.held_for_s,
            "state": self.state,
        }


def find_blockers(conn: Connection, *, engine: str, table: str) -> list[Blocker]:
    """The sessions that hold (or most likely hold) ``table``'s lock; empty when it cannot be told."""
    params = {"name": table, "limit": QUERY_LIMIT, "max": MAX_BLOCKERS}
    if engine == "postgresql":
        rows = conn.execute(_PG, params).all()
    elif engine == "mysql":
        try:
            rows = conn.execute(_MARIADB_MDL, params).all()
        except Exception:  # no metadata_lock_info plugin: the open transactions instead
            rows = conn.execute(_INNODB_OPEN, params).all()
    else:
        return []
    return [
        Blocker(
            session=str(r[0]),
            query=str(r[1] or "")[:QUERY_LIMIT],
            held_for_s=round(float(r[2]), 3) if r[2] is not None else None,
            state=str(r[3]) if r[3] is not None else None,
        )
        for r in rows
    ]
