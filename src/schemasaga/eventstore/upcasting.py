"""Upcasters: functions that upgrade a stored event's data by one schema version, applied on read."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class Upcasters:
    """A registry of upcasters by (event type, version they upgrade from)."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, int], Upcaster] = {}
        self._types: set[str] = set()

    def register(self, event_type: str, from_version: int, fn: Upcaster) -> None:
        """Register ``fn``, which turns ``event_type`` data of ``from_version`` into ``from_version + 1``."""
        key = (event_type, from_version)
        if key in self._by_key:
            raise ValueError(f"an upcaster for {event_type} v{from_version} is registered already")
        self._by_key[key] = fn
        self._types.add(event_type)

    def handles(self, event_type: str) -> bool:
        return event_type in self._types

    def upcast(self, event_type: str, version: int, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """The data upgraded through every registered step from ``version``, and the version reached."""
        while (fn := self._by_key.get((event_type, version))) is not None:
            data = fn(data)
            version += 1
        return version, data
