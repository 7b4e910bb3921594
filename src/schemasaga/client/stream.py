"""The live event feed for the clients: server-sent events parsed into events, the query of a stream."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import httpx

from schemasaga.api.models import FeedEventOut

STREAM_PATH = "/v1/events/stream"
# The service sends a keep-alive comment every 15 s: a read waiting longer means a dead connection.
STREAM_TIMEOUT = httpx.Timeout(10.0, read=45.0)
# Waits before reconnecting after the stream broke, growing to the last one.
RECONNECT_DELAYS = (0.1, 0.5, 1.0, 2.0, 5.0)


def stream_params(
    *,
    stream: str | None,
    types: Sequence[str],
    table_id: UUID | str | None,
    correlation_id: str | None,
    timeout: float | None,
) -> list[tuple[str, str | int | float | bool | None]]:
    params: list[tuple[str, str | int | float | bool | None]] = [("type", t) for t in types]
    for key, value in (
        ("stream", stream),
        ("table_id", table_id),
        ("correlation_id", correlation_id),
        ("timeout", timeout),
    ):
        if value is not None:
            params.append((key, str(value)))
    return params


@dataclass
class SseParser:
    """Lines of a ``text/event-stream`` in, events out (the fields the feed sends: ``id``, ``event``,
    ``data``; comments and ``retry`` are skipped)."""

    last_id: int | None = None
    _data: list[str] = field(default_factory=list)
    _id: str | None = None

    def reset(self) -> None:
        """Forget an event cut off by a broken connection (it comes again after ``last_id``)."""
        self._data, self._id = [], None

    def feed(self, lines: Iterable[str]) -> Iterator[FeedEventOut]:
        for line in lines:
            event = self.line(line)
            if event is not None:
                yield event

    def line(self, line: str) -> FeedEventOut | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "id":
            self._id = value
        return None

    def _dispatch(self) -> FeedEventOut | None:
        data, event_id = self._data, self._id
        self._data, self._id = [], None
        if not data:
            return None
        payload: dict[str, Any] = json.loads("\n".join(data))
        event = FeedEventOut.model_validate(payload)
        if event_id is not None:
            self.last_id = int(event_id)
        return event


def stream_headers(parser: SseParser) -> dict[str, str]:
    headers = {"Accept": "text/event-stream"}
    if parser.last_id is not None:
        headers["Last-Event-ID"] = str(parser.last_id)
    return headers


def reconnect_delay(failures: int, deadline: float | None, now: float) -> float:
    """How long to wait before connecting again (never past the caller's deadline)."""
    wait = RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)]
    return wait if deadline is None else max(0.0, min(wait, deadline - now))
