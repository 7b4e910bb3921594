"""Every error a command or query can answer with, as domain facts: a stable ``code`` and a message.

Which HTTP status each one is answered with is the web layer's choice (``api/errors.py``); a CLI
command prints the message. Errors of the infrastructure (a BYODB's driver, the event store, the
job queue) are not here: services turn the ones a caller must see into one of these.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    code = "invalid"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        # Facts a program may act on, answered beside the message (say, the rows a change cannot keep).
        self.details = details


# -- requests ------------------------------------------------------------------------------------


class InvalidName(DomainError):
    code = "invalid_name"


class InvalidColumn(DomainError):
    code = "invalid_column"


class InvalidDefault(DomainError):
    """A column default that is no value of the column's type."""

    code = "invalid_default"


class InvalidIndex(DomainError):
    code = "invalid_index"


class InvalidTableId(DomainError):
    code = "invalid_table_id"


class InvalidCursor(DomainError):
    """A page cursor (``after``) that names nothing the list holds."""

    code = "invalid_cursor"


# -- tables --------------------------------------------------------------------------------------


class TableNotFound(DomainError):
    code = "table_not_found"


class ColumnNotFound(DomainError):
    code = "column_not_found"


class ColumnExists(DomainError):
    code = "column_exists"


class IndexNotFound(DomainError):
    code = "index_not_found"


class IndexExists(DomainError):
    code = "index_exists"


class UnsupportedChange(DomainError):
    """A change schemasaga does not make (a type change outside the supported matrix, a change to the
    primary key)."""

    code = "unsupported_change"


class VersionMismatch(DomainError):
    """``If-Match`` named a version of the table other than its current one: nothing was written."""

    code = "version_mismatch"


class NameTaken(DomainError):
    code = "name_taken"


class IncompatibleRows(DomainError):
    """Rows of the table would violate the change (NULLs where NOT NULL is asked, duplicates where
    uniqueness is, values a new type cannot hold): refused before any DDL. ``details``: ``count`` and up
    to five ``primary_keys``."""

    code = "incompatible_rows"


class TableExistsUnmanaged(DomainError):
    """A table of that name exists in the database, and schemasaga does not manage it: creating it would
    take it over (and a later delete would drop its rows). ``POST /v1/tables/track`` is the explicit way."""

    code = "table_exists_unmanaged"


class TrashNotFound(DomainError):
    code = "trash_not_found"


class TrashPurged(DomainError):
    """The trash entry was purged (or restored): its data is no longer in the trash."""

    code = "purged"


class TableGone(DomainError):
    """The table was deleted (or its creation was rejected): nothing more can change it."""

    code = "table_gone"


class PrimaryKeyColumn(DomainError):
    code = "primary_key_column"


class IllegalTransition(DomainError):
    """An outcome or saga step that does not fit the table's state (a bug or a stale job)."""

    code = "illegal_transition"


class ConcurrentChange(DomainError):
    """The table kept changing under the command, which gave up deciding again; nothing was written."""

    code = "concurrent_change"


class OperationNotFound(DomainError):
    code = "operation_not_found"


# -- the event feed --------------------------------------------------------------------------------


class UnknownEventType(DomainError):
    code = "unknown_event_type"


class InvalidWebhook(DomainError):
    code = "invalid_webhook"


class WebhookTargetNotAllowed(DomainError):
    code = "webhook_target_not_allowed"


class WebhookNotFound(DomainError):
    code = "webhook_not_found"


class InvalidLastEventId(DomainError):
    """A feed resumed from something that is no position (a ``Last-Event-ID`` or ``after``)."""

    code = "invalid_last_event_id"


# -- undo ----------------------------------------------------------------------------------------


class OperationNotCompleted(DomainError):
    """An undo of an operation that is still pending or running, or was rejected (nothing to undo)."""

    code = "operation_not_completed"


class AlreadyUndone(DomainError):
    """The operation is undone already (or an undo of it is in flight); ``details`` names the undo."""

    code = "already_undone"


class UndoConflict(DomainError):
    """A later operation on the table depends on what the undo would take back; ``details`` names it."""

    code = "undo_conflict"


class UndoUnsupported(DomainError):
    """The operation has no inverse schemasaga can run (yet): one that needs the trash, a reconciliation,
    a tracking."""

    code = "undo_unsupported"


# -- databases -----------------------------------------------------------------------------------


class DatabaseNotFound(DomainError):
    code = "database_not_found"


class InvalidDatabaseName(InvalidName):
    pass


class InvalidDatabaseUrl(DomainError):
    code = "invalid_url"


class UnsupportedDriver(DomainError):
    code = "unsupported_driver"


class DatabaseNotAllowed(DomainError):
    """The database's host or file is outside what the operator lets the API register."""

    code = "database_not_allowed"


class SocketNotAllowed(DatabaseNotAllowed):
    """A Unix-socket URL whose directory the operator did not allow (SCHEMASAGA_BYODB_ALLOWED_SOCKET_DIRS)."""

    code = "socket_not_allowed"


class OwnDatabase(DatabaseNotAllowed):
    """The URL reaches the service's own core database (or the embedded server that holds it)."""

    code = "own_database"


class SqliteCompanionFile(DatabaseNotAllowed):
    """The file is a SQLite database's journal, WAL or shared-memory file, not a database."""

    code = "sqlite_companion_file"


class DatabaseUnreachable(DomainError):
    """A connection to a database being registered failed: nothing was registered."""

    code = "database_unreachable"


class BadCredentials(DomainError):
    code = "bad_credentials"


class DatabaseExists(DomainError):
    code = "database_exists"


class DatabaseInUse(DomainError):
    code = "database_in_use"


class DatabaseConfigured(DomainError):
    """The default database comes from the configuration; it cannot be unregistered through the API."""

    code = "database_configured"


class DatabaseAlreadyRegistered(DomainError):
    """The database a registration would reach is registered already, under another name: two names for
    one database would share its tables, and each would report the other's as its own."""

    code = "database_already_registered"


class DatabaseUnavailable(DomainError):
    """A registered database could not be read (unreachable, refusing): nothing can be said of it now."""

    code = "database_unavailable"


class CredentialsUnavailable(DomainError):
    """The database is registered, but this process's secret key cannot decrypt its URL."""

    code = "secret_key_mismatch"


# -- access --------------------------------------------------------------------------------------


class NotAuthenticated(DomainError):
    """No usable token: none given, malformed, unknown or revoked (which of these is not said)."""

    code = "unauthenticated"


class Forbidden(DomainError):
    """The token is valid, and what it asks is outside its scope or its databases."""

    code = "forbidden"


class InvalidTokenName(InvalidName):
    pass


class InvalidTokenScope(DomainError):
    code = "invalid_token_scope"


class TokenExists(DomainError):
    code = "token_exists"


class TokenNotFound(DomainError):
    code = "token_not_found"


class InvalidIdempotencyKey(DomainError):
    """An ``Idempotency-Key`` that is not 1 to 255 visible ASCII characters."""

    code = "invalid_idempotency_key"


class IdempotencyKeyReused(DomainError):
    """The key answered another request (another method, path, query or body) within its 24 hours."""

    code = "idempotency_key_reused"


class IdempotencyKeyInFlight(DomainError):
    """Another request with the key was accepted and its answer is not recorded (yet)."""

    code = "idempotency_key_in_flight"
