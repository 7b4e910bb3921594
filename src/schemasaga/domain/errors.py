"""Domain errors. Each carries a stable code and the HTTP status the API answers with."""

from __future__ import annotations


class DomainError(Exception):
    code = "invalid"
    status = 422

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidName(DomainError):
    code = "invalid_name"
    status = 422


class InvalidColumn(DomainError):
    code = "invalid_column"
    status = 422


class TableNotFound(DomainError):
    code = "table_not_found"
    status = 404


class ColumnNotFound(DomainError):
    code = "column_not_found"
    status = 404


class ColumnExists(DomainError):
    code = "column_exists"
    status = 409


class NameTaken(DomainError):
    code = "name_taken"
    status = 409


class TableGone(DomainError):
    """The table was deleted (or its creation was rejected): nothing more can change it."""

    code = "table_gone"
    status = 409


class PrimaryKeyColumn(DomainError):
    code = "primary_key_column"
    status = 422


class IllegalTransition(DomainError):
    """An outcome or saga step that does not fit the table's state (a bug or a stale job)."""

    code = "illegal_transition"
    status = 409
