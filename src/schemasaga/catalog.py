"""Which BYODBs exist, their engines and their adapters."""

from __future__ import annotations

import threading

from schemasaga.byodb.adapter import ByodbAdapter, DdlLimits, open_adapter
from schemasaga.byodb.identifiers import InvalidIdentifier, validate_identifier
from schemasaga.domain.errors import DomainError, InvalidName

DEFAULT_DATABASE = "default"


class DatabaseNotFound(DomainError):
    code = "database_not_found"
    status = 404


def engine_of_url(url: str) -> str:
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    return {"postgresql": "postgresql", "postgres": "postgresql", "mysql": "mysql", "mariadb": "mysql"}.get(
        scheme, scheme
    )


class DatabaseCatalog:
    """Databases by name. Adapters are opened lazily and shared (each holds a connection pool)."""

    def __init__(self, *, limits: DdlLimits) -> None:
        self._limits = limits
        self._urls: dict[str, str] = {}
        self._adapters: dict[str, ByodbAdapter] = {}
        self._lock = threading.Lock()

    def register(self, name: str, url: str) -> None:
        with self._lock:
            old = self._adapters.pop(name, None)
            self._urls[name] = url
        if old is not None:
            old.dispose()

    def forget(self, name: str) -> None:
        with self._lock:
            self._urls.pop(name, None)
            old = self._adapters.pop(name, None)
        if old is not None:
            old.dispose()

    def names(self) -> list[str]:
        return sorted(self._urls)

    def engine(self, name: str) -> str:
        return engine_of_url(self._url(name))

    def adapter(self, name: str) -> ByodbAdapter:
        with self._lock:
            adapter = self._adapters.get(name)
            if adapter is None:
                url = self._urls.get(name)
                if url is None:
                    raise DatabaseNotFound(f"no database named {name!r}")
                adapter = self._adapters[name] = open_adapter(url, limits=self._limits)
            return adapter

    def validate_identifier(self, name: str, *, database: str, kind: str) -> None:
        try:
            validate_identifier(name, engine=self.engine(database), kind=kind)
        except InvalidIdentifier as exc:
            raise InvalidName(str(exc)) from exc

    def close(self) -> None:
        with self._lock:
            adapters, self._adapters = list(self._adapters.values()), {}
        for adapter in adapters:
            adapter.dispose()

    def _url(self, name: str) -> str:
        url = self._urls.get(name)
        if url is None:
            raise DatabaseNotFound(f"no database named {name!r}")
        return url
