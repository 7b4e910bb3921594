"""JSON for event data, metadata and snapshots: compact, and tolerant of the usual Python values.

Parsing and the text of ``jsonb`` values go through orjson (several times faster than the standard
library, which the rebuild of the read models spends much of its time in); whatever orjson would refuse
or read otherwise (integers beyond 64 bits, which it reads as floats; keys that are not strings) goes to
the standard library, so both give the same values."""

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


def dumps_event(value: Any) -> str:
    """The text :func:`dumps` writes, or one of the same JSON value, for event data and metadata: orjson
    (several times faster), except where the standard library's text would differ in value or be refused
    (a float that is not finite, an integer beyond 64 bits, a key not a string)."""
    try:
        text = orjson.dumps(value, default=_default, option=_ORJSON_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError is one
        return _encoder.encode(value)
    # orjson writes NaN and the infinities as null, a value PostgreSQL takes, where the standard library
    # writes NaN and Infinity, which it refuses: a text with a null in it goes to the standard library (a
    # null that was one, or a string holding ":null", costs only the second encoding).
    if b"null" in text and (b":null" in text or b",null" in text or b"[null" in text or text == b"null"):
        return _encoder.encode(value)
    return text.decode()


# 19 digits in a row or more: perhaps an integer beyond 64 bits, which orjson reads as a float (silently:
# 10**20 would come back as 1e+20). Such a text goes to the standard library, which keeps every integer.
# Found as a run of NUL bytes once every digit is made one (a byte table and a substring search: the
# rebuild parses a batch's data as one text, and a regular expression took longer than orjson over it;
# a NUL in the text itself, never valid JSON there, only sends it to the standard library).
_DIGITS_TO_NUL = bytes.maketrans(b"0123456789", bytes(10))
_LONG_RUN = bytes(19)


def _long_digits(text: str) -> bool:
    return _LONG_RUN in text.encode("utf-8", "surrogatepass").translate(_DIGITS_TO_NUL)


def loads(text: str) -> Any:
    if _long_digits(text):
        return json.loads(text)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # a key orjson refuses, say: the standard library decides
        return json.loads(text)
