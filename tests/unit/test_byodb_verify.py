"""What a registered database's new connections are checked against (byodb/verify.py), decided without a
database: the stored identity travels from the registry to the adapter, the configured default is not
checked, and each comparison's outcome. (The connections themselves: the integration tests of the same
name.) Nothing here connects: the adapters are opened and never used."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from schemasaga.byodb.adapter import DdlLimits
from schemasaga.byodb.connections import Connections, RegisteredUrl
from schemasaga.byodb.identity import DatabaseIdentity, postgresql_identity
from schemasaga.byodb.verify import CoreIdentity, Expected, WrongDatabase

PG_URL = "postgresql+psycopg://u@db.example:5432/app"


def pg(database: str, *, cluster: bool = True, started: str = "1") -> DatabaseIdentity:
    return postgresql_identity(
        started=started,
        port=5432,
        database=database,
        schema="public",
        system_identifier="42" if cluster else None,
    )


class Source:
    def __init__(self, rows: list[RegisteredUrl]) -> None:
        self.rows = rows

    def load(self) -> Sequence[RegisteredUrl]:
        return list(self.rows)

    async def aload(self) -> Sequence[RegisteredUrl]:
        return self.load()


async def core_of(identity: DatabaseIdentity, *, whole_server: bool = False) -> CoreIdentity:
    async def read() -> DatabaseIdentity:
        return identity

    core = CoreIdentity(whole_server=whole_server, read=read)
    await core.refresh()
    return core


async def test_the_stored_identity_travels_from_the_registry_to_the_adapter() -> None:
    core = await core_of(pg("core"))
    source = Source([RegisteredUrl("app", "postgresql", PG_URL, identity="postgresql.cluster:abc")])
    connections = Connections(limits=DdlLimits(), source=source, core=core)
    connections.register("default", "mysql+pymysql://u@h/d", pinned=True)
    await connections.refresh()
    adapter = connections.adapter("app")
    try:
        assert connections._expected("app", connections._entries["app"]) == Expected(
            name="app", engine="postgresql", stored="postgresql.cluster:abc", core=core
        )
        # The configured default is the operator's: not checked.
        assert connections._expected("default", connections._entries["default"]) is None
        # A new identity for the name (registered again) replaces the adapter and what it checks.
        source.rows = [RegisteredUrl("app", "postgresql", PG_URL, identity="postgresql.cluster:def")]
        await connections.refresh()
        assert connections.adapter("app") is not adapter
        assert connections._entries["app"].identity == "postgresql.cluster:def"
    finally:
        connections.close()


async def test_what_each_new_connection_is_compared_with() -> None:
    core = await core_of(pg("core"))
    stored = pg("app").stored
    assert stored is not None and stored.startswith("postgresql.cluster:")
    expected = Expected(name="app", engine="postgresql", stored=stored, core=core)
    expected.check(pg("app"))
    expected.check(pg("app", started="2"))  # the server restarted: its cluster is the same
    for found, words in [
        (pg("other"), "another database than the one registered"),
        (pg("core"), "this service's own core database"),
        # Cannot be told apart any more (pg_control_system() revoked since): refused, not trusted.
        (pg("app", cluster=False), "does not give the kind of identity stored"),
    ]:
        with pytest.raises(WrongDatabase, match=words) as refused:
            expected.check(found)
        assert refused.value.transient
    # No identity stored (an older registration, a role without pg_control_system()): the core only.
    unknown = Expected(name="old", engine="postgresql", stored=None, core=core)
    unknown.check(pg("anything", cluster=False))
    with pytest.raises(WrongDatabase, match="own core database"):
        unknown.check(pg("core", cluster=False))
    # The embedded server is the service's own: none of its databases.
    embedded = Expected(
        name="old", engine="postgresql", stored=None, core=await core_of(pg("core"), whole_server=True)
    )
    with pytest.raises(WrongDatabase, match="embedded PostgreSQL server"):
        embedded.check(pg("elsewhere"))
    # Nothing to compare: nothing is read on a new connection.
    assert not Expected(name="old", engine="mysql", stored=None).checks
    assert not Expected(name="f", engine="sqlite", stored="sqlite.path:x").checks


async def test_the_core_identity_is_read_again_only_while_a_restart_can_change_it() -> None:
    reads: list[DatabaseIdentity] = []
    answers = [pg("core", cluster=False, started="1"), pg("core", cluster=False, started="2"), pg("core")]

    async def read() -> DatabaseIdentity:
        reads.append(answers[len(reads)])
        return reads[-1]

    core = CoreIdentity(whole_server=False, read=read)
    for _ in range(5):
        await core.refresh()
    assert len(reads) == 3 and core.identity == pg("core")
