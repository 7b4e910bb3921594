"""The database registry's commands on in-memory ports: what is recorded, what is refused, and that a
refusal writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemasaga.byodb.errors import PermanentByodbError, TransientByodbError
from schemasaga.byodb.identity import DatabaseIdentity, postgresql_identity
from schemasaga.domain.database import stream_name
from schemasaga.domain.errors import (
    BadCredentials,
    DatabaseAlreadyRegistered,
    DatabaseConfigured,
    DatabaseExists,
    DatabaseInUse,
    DatabaseNotAllowed,
    DatabaseNotFound,
    DatabaseUnreachable,
    InvalidDatabaseName,
    OwnDatabase,
)
from schemasaga.domain.policy import RegistrationPolicy
from schemasaga.secrets import SecretBox, generate_key
from schemasaga.services.databases import DatabaseCommands
from schemasaga.services.tables import TableCommands
from schemasaga.services.unit_of_work import UnitOfWork
from tests.fakes import (
    MemoryConnections,
    MemoryCore,
    MemoryOwnDatabase,
    MemoryProbe,
    MemoryReads,
    identity_of,
)

DEFAULT_URL = "postgresql+psycopg://app:pw@127.0.0.1:5432/app"


class Registry:
    def __init__(self, tmp_path: Path, *, allowed_hosts: str = "") -> None:
        self.dir = tmp_path
        self.core = MemoryCore()
        self.connections = MemoryConnections()
        self.probe = MemoryProbe()
        self.own = MemoryOwnDatabase()
        self.secrets = SecretBox([generate_key()])
        self.uow = UnitOfWork(self.core, snapshot_every=50)
        self.commands = DatabaseCommands(
            uow=self.uow,
            reads=MemoryReads(self.core),
            connections=self.connections,
            probe=self.probe,
            secrets=self.secrets,
            policy=RegistrationPolicy.build(allowed_hosts=allowed_hosts, sqlite_dir=tmp_path),
            own=self.own,
        )

    def url(self, name: str) -> str:
        return f"sqlite:///{self.dir / name}.db"

    def events(self, name: str) -> list[str]:
        return self.core.events(stream_name(name))

    def written(self) -> tuple[list[str], int]:
        return self.core.events(), len(self.core.state.databases)


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path)


async def test_registering_records_the_url_encrypted_and_the_identity(registry: Registry) -> None:
    url = registry.url("analytics")
    view = await registry.commands.register(name="analytics", url=url, metadata={"actor": "t"})
    assert (view.name, view.engine, view.source, view.database) == ("analytics", "sqlite", "api", url[10:])
    [event] = registry.core.state.streams[stream_name("analytics")]
    assert event.event_type == "DatabaseRegistered"
    assert url not in str(event.data) and registry.secrets.decrypt(event.data["url_encrypted"]) == url
    assert event.data["identity"] == identity_of(url).stored
    assert registry.connections.urls["analytics"] == url


async def test_one_database_under_two_names_is_refused_naming_the_first(registry: Registry) -> None:
    first, again = registry.url("a"), registry.url("a_link")
    registry.probe.identities[again] = identity_of(first)
    await registry.commands.register(name="first", url=first, metadata={})
    before = registry.written()
    with pytest.raises(DatabaseAlreadyRegistered, match="registered already as 'first'"):
        await registry.commands.register(name="second", url=again, metadata={})
    assert registry.written() == before


async def test_a_name_is_registered_once(registry: Registry) -> None:
    await registry.commands.register(name="analytics", url=registry.url("one"), metadata={})
    with pytest.raises(DatabaseExists):
        await registry.commands.register(name="analytics", url=registry.url("two"), metadata={})


@pytest.mark.parametrize(
    ("error", "refusal"),
    [
        (TransientByodbError("connection refused"), DatabaseUnreachable),
        (PermanentByodbError("password authentication failed for user", engine="postgresql"), BadCredentials),
        (TimeoutError(), DatabaseUnreachable),
    ],
)
async def test_a_database_that_cannot_be_reached_is_not_registered(
    registry: Registry, error: Exception, refusal: type[Exception]
) -> None:
    url = "postgresql+psycopg://app:S3cret@127.0.0.1:5433/app"
    registry.probe.errors[url] = error
    with pytest.raises(refusal) as refused:
        await registry.commands.register(name="remote", url=url, metadata={})
    assert "S3cret" not in str(refused.value)
    assert registry.written() == ([], 0)


@pytest.mark.parametrize("name", ["default", "Analytics", "1st", "a" * 64, ""])
async def test_invalid_names_are_refused(registry: Registry, name: str) -> None:
    with pytest.raises(InvalidDatabaseName):
        await registry.commands.register(name=name, url=registry.url("x"), metadata={})
    assert registry.written() == ([], 0)


async def test_the_allow_list_is_checked_before_connecting(tmp_path: Path) -> None:
    registry = Registry(tmp_path, allowed_hosts="db.example.com")
    url = "postgresql+psycopg://app@10.0.0.5/app"
    registry.probe.errors[url] = AssertionError("must not connect")
    with pytest.raises(DatabaseNotAllowed):
        await registry.commands.register(name="inside", url=url, metadata={})
    with pytest.raises(DatabaseNotAllowed):
        await registry.commands.register(name="outside", url=f"sqlite:///{tmp_path.parent}/x.db", metadata={})
    assert registry.written() == ([], 0)


async def test_the_configured_default_is_recorded_once_and_changed_when_its_url_changes(
    registry: Registry,
) -> None:
    for _ in range(2):
        await registry.commands.ensure_default(DEFAULT_URL)
    assert registry.events("default") == ["DatabaseRegistered"]
    await registry.commands.ensure_default(DEFAULT_URL.replace("5432", "5433"))
    assert registry.events("default") == ["DatabaseRegistered", "DatabaseUrlChanged"]
    with pytest.raises(DatabaseConfigured):
        await registry.commands.unregister(name="default", metadata={})


async def test_a_database_holding_live_tables_cannot_be_unregistered(registry: Registry) -> None:
    await registry.commands.register(name="analytics", url=registry.url("analytics"), metadata={})
    tables = TableCommands(uow=registry.uow, connections=registry.connections)
    await tables.create_table(name="kept", database="analytics", metadata={})
    before = registry.written()
    with pytest.raises(DatabaseInUse, match="1 live table"):
        await registry.commands.unregister(name="analytics", metadata={})
    assert registry.written() == before
    with pytest.raises(DatabaseNotFound):
        await registry.commands.unregister(name="nothing", metadata={})


async def test_unregistering_forgets_the_database(registry: Registry) -> None:
    await registry.commands.register(name="analytics", url=registry.url("analytics"), metadata={})
    await registry.commands.unregister(name="analytics", metadata={})
    assert registry.events("analytics") == ["DatabaseRegistered", "DatabaseUnregistered"]
    assert "analytics" not in registry.connections.names()
    assert "analytics" not in registry.core.state.databases


async def test_rotation_reencrypts_every_url_with_the_new_key_once(registry: Registry) -> None:
    await registry.commands.ensure_default(DEFAULT_URL)
    await registry.commands.register(name="analytics", url=registry.url("analytics"), metadata={})
    new_key = generate_key()
    new = registry.secrets.with_primary(new_key)
    assert await registry.commands.rotate(new, metadata={}) == ["analytics", "default"]
    only_new = SecretBox([new_key])
    for name, url in (("default", DEFAULT_URL), ("analytics", registry.url("analytics"))):
        state = registry.core.state.databases[name]
        assert state.key_id == only_new.key_id and only_new.decrypt(state.url_encrypted) == url
    assert await registry.commands.rotate(new, metadata={}) == []  # nothing left under the old key


def pg_identity(database: str, *, schema: str = "public") -> DatabaseIdentity:
    return postgresql_identity(
        started="1700000000.5", port="5432", database=database, schema=schema, system_identifier="42"
    )


async def test_the_core_database_is_refused_in_any_schema_and_its_server_when_embedded(
    registry: Registry,
) -> None:
    registry.own.own = pg_identity("core")
    core = "postgresql+psycopg://app@127.0.0.1:5432/core"
    registry.probe.identities[core] = pg_identity("core", schema="app")  # another role's search_path
    with pytest.raises(OwnDatabase, match="own core database"):
        await registry.commands.register(name="core", url=core, metadata={})
    assert registry.written() == ([], 0)

    # Another database of the core's server: a server shared with others may hold users' databases...
    other = "postgresql+psycopg://app@127.0.0.1:5432/other"
    registry.probe.identities[other] = pg_identity("other")
    await registry.commands.register(name="other", url=other, metadata={})
    # ...but the embedded server is the service's alone.
    registry.own.whole_server = True
    third = "postgresql+psycopg://app@127.0.0.1:5432/third"
    registry.probe.identities[third] = pg_identity("third")
    before = registry.written()
    with pytest.raises(OwnDatabase, match="embedded PostgreSQL server"):
        await registry.commands.register(name="third", url=third, metadata={})
    assert registry.written() == before
