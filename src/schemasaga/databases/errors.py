"""Errors of the database registry, each with its stable code and HTTP status."""

from __future__ import annotations

from schemasaga.domain.errors import DomainError, InvalidName


class InvalidDatabaseName(InvalidName):
    pass


class InvalidDatabaseUrl(DomainError):
    code = "invalid_url"
    status = 422


class UnsupportedDriver(DomainError):
    code = "unsupported_driver"
    status = 422


class DatabaseNotAllowed(DomainError):
    """The database's host or file is outside what the operator lets the API register."""

    code = "database_not_allowed"
    status = 403


class DatabaseUnreachable(DomainError):
    code = "database_unreachable"
    status = 422


class BadCredentials(DomainError):
    code = "bad_credentials"
    status = 422


class DatabaseExists(DomainError):
    code = "database_exists"
    status = 409


class DatabaseInUse(DomainError):
    code = "database_in_use"
    status = 409


class DatabaseConfigured(DomainError):
    """The default database comes from the configuration; it cannot be unregistered through the API."""

    code = "database_configured"
    status = 409


class DatabaseAlreadyRegistered(DomainError):
    """The database a registration would reach is registered already, under another name: two names for
    one database would share its tables, and each would report the other's as its own."""

    code = "database_already_registered"
    status = 409
