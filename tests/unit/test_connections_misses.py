"""`Connections.known_engine` reloads the registry in the background on a miss, but not again and again for
a name the last reload did not find (a page of tables in an unregistered database asked on every answer)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from schemasaga.byodb import connections as module
from schemasaga.byodb.adapter import DdlLimits
from schemasaga.byodb.connections import Connections, RegisteredUrl


class CountingSource:
    def __init__(self) -> None:
        self.loads = 0
        self.rows: list[RegisteredUrl] = []

    def load(self) -> Sequence[RegisteredUrl]:
        self.loads += 1
        return list(self.rows)

    async def aload(self) -> Sequence[RegisteredUrl]:
        return self.load()


async def settle(connections: Connections) -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_name_no_reload_found_is_not_reloaded_for_on_every_look(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr(module.time, "monotonic", lambda: now[0])
    source = CountingSource()
    connections = Connections(limits=DdlLimits(), source=source)

    assert connections.known_engine("bulk") is None
    await settle(connections)
    assert source.loads == 1
    for _ in range(100):
        assert connections.known_engine("bulk") is None
        await settle(connections)
    assert source.loads == 1  # within the quiet time: no reload

    # Another unknown name still gets its reload; so does the same one once the quiet time is over.
    assert connections.known_engine("other") is None
    await settle(connections)
    assert source.loads == 2
    source.rows = [RegisteredUrl("bulk", "sqlite", "sqlite:////tmp/bulk.db")]
    now[0] += module.MISS_QUIET_S + 0.1
    assert connections.known_engine("bulk") is None
    await settle(connections)
    assert source.loads == 3
    assert connections.known_engine("bulk") == "sqlite"
    assert source.loads == 3


async def test_a_registration_here_is_seen_at_once_after_a_miss() -> None:
    source = CountingSource()
    connections = Connections(limits=DdlLimits(), source=source)
    assert connections.known_engine("late") is None
    await settle(connections)
    connections.register("late", "sqlite:////tmp/late.db")
    assert connections.known_engine("late") == "sqlite"
