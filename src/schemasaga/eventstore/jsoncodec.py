"""JSON for event data, metadata and snapshots: compact, and tolerant of the usual Python values.

Parsing and the text of ``jsonb`` values go through orjson (several times faster than the standard
library, which the rebuild of the read models spends much of its time in); whatever orjson refuses
(integers beyond 64 bits, keys that are not strings) falls back to the standard library, so both give
the same values."""

from __future__ import annotations

import json
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

import orjson


def _default(value: Any) -> Any:
    if isinstance(value, UUID | Decimal):
        return str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_encoder = json.JSONEncoder(default=_default, separators=(",", ":"), ensure_ascii=False)


def dumps(value: Any) -> str:
    """``value`` as compact JSON; UUIDs and decimals as strings, dates and times in ISO 8601."""
    return _encoder.encode(value)


# Dates, times and dataclasses to ``_default`` as the standard encoder does (a dataclass is refused).
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def dumps_jsonb(value: Any) -> str:
    """The JSON value :func:`dumps` writes, for a ``jsonb`` column, which keeps the value, not the text:
    the text may differ from it in how a float is spelled (``1e16`` for ``1e+16``)."""
    try:
        return orjson.dumps(value, default=_default, option=_ORJSON_OPTIONS).decode()
    except TypeError:  # orjson.JSONEncodeError is one: an integer beyond 64 bits, a key not a string
        return _encoder.encode(value)


def loads(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # an integer beyond 64 bits, say: the standard library takes it
        return json.loads(text)
