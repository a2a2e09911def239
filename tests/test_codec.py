from __future__ import annotations

import datetime
import math
from typing import Any

import pytest

from aioredstream._codec import _stdlib_dumps, dumps


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"id": 1}, b'{"id":1}'),
        ({"name": "Jürgen", "tags": ["a", "b"]}, '{"name":"Jürgen","tags":["a","b"]}'.encode()),
        ({"big": 10**30}, b'{"big":1000000000000000000000000000000}'),
        ({"n": None, "t": True, "f": 1.5}, b'{"n":null,"t":true,"f":1.5}'),
    ],
)
def test_payloads_are_compact_utf8_json(value: Any, expected: bytes) -> None:
    assert dumps(value) == expected
    assert _stdlib_dumps(value) == expected


@pytest.mark.parametrize(
    "value", [math.nan, math.inf, -math.inf, {1, 2}, b"x", datetime.date(2020, 1, 1), object()]
)
def test_values_that_are_not_json_are_refused(value: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        dumps({"v": value})
    with pytest.raises((ValueError, TypeError)):
        _stdlib_dumps({"v": value})


def test_the_stdlib_encoder_is_not_left_marked_by_a_refused_value() -> None:
    # its C encoder keeps the ids of the containers it is inside in a dict (markers), and
    # a refusal leaves them there: each call needs a dict of its own
    cycle: list[Any] = [1]
    cycle.append(cycle)
    holder: list[Any] = [object()]
    for encode in (dumps, _stdlib_dumps):
        with pytest.raises(ValueError, match="Circular reference"):
            encode(cycle)
        holder[0] = object()
        with pytest.raises(TypeError):
            encode(holder)
        holder[0] = 1
        assert encode(holder) == b"[1]"
