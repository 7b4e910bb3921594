"""BYODB adapters: idempotent, inspected DDL on users' PostgreSQL, MySQL/MariaDB and SQLite databases."""

from schemasaga.byodb.adapter import ByodbAdapter, DdlLimits, open_adapter
from schemasaga.byodb.errors import ByodbError, PermanentByodbError, TransientByodbError, classify
from schemasaga.byodb.identifiers import InvalidIdentifier, validate_identifier

__all__ = [
    "ByodbAdapter",
    "ByodbError",
    "DdlLimits",
    "InvalidIdentifier",
    "PermanentByodbError",
    "TransientByodbError",
    "classify",
    "open_adapter",
    "validate_identifier",
]
