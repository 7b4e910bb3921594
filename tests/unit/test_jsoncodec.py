"""jsoncodec through orjson gives the values the standard library gives."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from hypothesis import example, given, settings
from hypothesis import strategies as st

from schemasaga.eventstore.jsoncodec import dumps, dumps_event, dumps_jsonb, loads

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()  # beyond 64 bits too: orjson reads them as floats, the standard library keeps them
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(JSON)
# orjson reads these as floats: 10**20 would come back as 1e+20.
@example(-(2**63) - 1)
@example(2**64)
@example({"default": 10**29, "other": [1, -(10**40)]})
@example([10**18 - 1, "é", 10**19, "ü"])  # 19 digits after text that is not ASCII
@example({"n": 2**64 + 1, "s": "\ud800"})  # a lone surrogate: orjson refuses it, the library reads it
def test_loads_gives_what_the_standard_library_gives(value: Any) -> None:
    text = json.dumps(value, ensure_ascii=False)
    assert loads(text) == json.loads(text)
    assert repr(loads(text)) == repr(json.loads(text))  # 10**20 == 1e20, but one is an int


@settings(max_examples=200, deadline=None)
@given(JSON)
def test_dumps_jsonb_writes_the_value_dumps_writes(value: Any) -> None:
    assert json.loads(dumps_jsonb(value)) == json.loads(dumps(value))


def test_dumps_jsonb_takes_the_values_dumps_takes() -> None:
    value = {
        "id": UUID("12345678-1234-5678-1234-567812345678"),
        "at": datetime(2026, 12, 2, 14, 0, 0, 123, tzinfo=UTC),
        "day": date(2026, 12, 2),
        "amount": Decimal("1.50"),
        "tags": {"b", "a"},
        "big": 2**70,
        "kept": (1, "x"),
        1: "an integer key",
    }
    assert json.loads(dumps_jsonb(value)) == json.loads(dumps(value))
    assert loads(str(2**70)) == 2**70


def test_long_integers_are_found_wherever_they_are() -> None:
    # 18 digits: orjson keeps them; 19 or more, in a batch of documents (as the rebuild parses them), next to
    # strings of digits and text that is not ASCII: the standard library reads the whole text.
    docs = ['{"a":"' + "7" * 40 + '"}', '{"b":"ä€"}', '{"c":' + "9" * 18 + "}"]
    assert loads("[" + ",".join(docs) + "]")[2]["c"] == 10**18 - 1
    for big in (10**18, -(10**19), 2**64, 10**40):
        values = loads("[" + ",".join([*docs, '{"d":' + str(big) + "}"]) + "]")
        assert values[-1]["d"] == big and type(values[-1]["d"]) is int


@settings(max_examples=200, deadline=None)
@given(JSON)
def test_dumps_event_writes_the_value_dumps_writes(value: Any) -> None:
    assert json.loads(dumps_event(value)) == json.loads(dumps(value))


def test_dumps_event_refuses_what_dumps_refuses() -> None:
    # orjson would write null for these, a value PostgreSQL takes: the standard library's text, which
    # PostgreSQL refuses, as before.
    for value in ({"x": float("nan")}, [1, float("inf")], float("-inf"), {"n": None, "x": float("nan")}):
        assert dumps_event(value) == dumps(value)
    assert dumps_event({"id": UUID(int=7), 1: "key", "big": 2**70}) == dumps(
        {"id": UUID(int=7), 1: "key", "big": 2**70}
    )
    assert dumps_event({"nullable": True, "s": "a:null"}) in ('{"nullable":true,"s":"a:null"}',)
