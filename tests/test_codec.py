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
