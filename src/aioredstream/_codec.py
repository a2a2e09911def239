"""Payload JSON: compact, UTF-8, strict (no NaN/Infinity), as Ruby's ``JSON.dump`` writes it.

One rule with or without the ``speed`` extra (orjson encodes when installed):

- ``uuid.UUID`` values are written as their string (``"0b6f…-…"``), with both encoders;
- datetimes, dataclasses, sets, bytes, NaN and Infinity are refused (``ValueError`` or
  ``TypeError``; the producer raises `PayloadError`);
- a value nested more than 100 arrays/objects deep is refused (`NestingError`):
  the gem's ``Message#payload`` (``JSON.parse``, ``max_nesting: 100``) raises
  ``JSON::NestingError`` on it, so a Ruby consumer would retry that batch forever.

Where the bytes differ from Ruby's ``JSON.dump`` of the same value: only in how some
floats are spelled. Ruby writes a float with ``Float#to_s``, which always has a
fraction and its own exponent form (``1.0e-07``, ``1.0e+20``, ``100.0``); Python
writes ``repr(float)`` (``1e-07``, ``1e+20``, ``100.0``), and orjson its own
shortest form (``1e-7``, ``1e+20``, and ``0.00006103515625`` where the others write
``6.103515625e-05``). All are valid JSON for the same IEEE double, so any
JSON parser (Ruby's, Python's) gives the consumer the same value; payloads are parsed,
never compared as bytes. Integers, strings (raw UTF-8, not escaped), ``true``/
``false``/``null``, key order and the absence of spaces are byte for byte the gem's.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable
from typing import Any

__all__ = ["ENCODER", "ENCODERS", "MAX_NESTING", "NestingError", "dumps", "encoder"]

#: Ruby's ``JSON.parse`` default ``max_nesting``: one level deeper raises ``JSON::NestingError``
MAX_NESTING = 100
# A payload nested deeper than MAX_NESTING has at least that many opening and closing
# brackets: anything shorter is not looked at (the common case costs one len()).
_SHORTEST_TOO_DEEP = 2 * (MAX_NESTING + 1)


class NestingError(ValueError):
    """A payload nested deeper than the gem's JSON parser reads (``MAX_NESTING``)."""


def _uuid_as_str(obj: Any) -> Any:
    if isinstance(obj, uuid.UUID):
        return str(obj)  # what orjson writes natively: one rule for both encoders
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


_stdlib_encoder = json.JSONEncoder(
    ensure_ascii=False,
    allow_nan=False,
    separators=(",", ":"),
    check_circular=True,
    default=_uuid_as_str,
)


# The encoder ``_stdlib_encoder.encode`` builds on each call, built here without the two
# Python frames and the closure around it (a third of a small payload's encoding time).
# Its arguments are ``_stdlib_encoder``'s settings; a fresh ``markers`` dict per call
# keeps the circular-reference check.
_c_make_encoder: Any = getattr(json.encoder, "c_make_encoder", None)


def _stdlib_encode(obj: Any) -> str:
    if _c_make_encoder is None:  # pragma: no cover - CPython always has _json
        return _stdlib_encoder.encode(obj)
    make = _c_make_encoder(
        {}, _uuid_as_str, json.encoder.encode_basestring, None, ":", ",", False, False, False
    )
    return "".join(make(obj, 0))


def _stdlib_dumps(obj: Any) -> bytes:
    out = _stdlib_encode(obj).encode()
    if len(out) >= _SHORTEST_TOO_DEEP:
        _check_depth(obj, out)
    return out


def _stdlib_many() -> Callable[[Any], bytes]:
    """``_stdlib_dumps`` for the many payloads of one call: one C encoder for all of them.

    The encoder's ``markers`` dict (the circular-reference check) is empty again after
    every value it encoded; a value that fails may leave entries behind, so a failure
    makes a fresh encoder for whatever comes next.
    """
    if _c_make_encoder is None:  # pragma: no cover - CPython always has _json
        return _stdlib_dumps

    def fresh() -> Any:
        return _c_make_encoder(
            {}, _uuid_as_str, json.encoder.encode_basestring, None, ":", ",", False, False, False
        )

    make = fresh()

    def dumps(obj: Any) -> bytes:
        nonlocal make
        try:
            out = "".join(make(obj, 0)).encode()
        except BaseException:
            make = fresh()
            raise
        if len(out) >= _SHORTEST_TOO_DEEP:
            _check_depth(obj, out)
        return out

    return dumps


def _check_depth(obj: Any, out: bytes) -> None:
    """Refuse ``obj`` (encoded as ``out``) if it nests deeper than the gem reads.

    Brackets in the output bound the depth from above (strings may hold some too), so
    the walk over ``obj`` runs only when there are more than ``MAX_NESTING`` of them.
    """
    if out.count(b"[") + out.count(b"{") > MAX_NESTING and _depth(obj) > MAX_NESTING:
        raise NestingError(
            f"it is nested more than {MAX_NESTING} arrays/objects deep, and the gem's "
            f"JSON.parse (max_nesting {MAX_NESTING}) raises JSON::NestingError on it"
        )


def _depth(obj: Any) -> int:
    """How many arrays/objects deep ``obj`` is (0 for a scalar); iterative, any depth."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(obj, 0)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list | tuple):
            children = value
        else:
            continue
        level += 1
        deepest = max(deepest, level)
        stack.extend((child, level) for child in children)
    return deepest


def _make_orjson_dumps() -> Callable[[Any], bytes] | None:
    try:
        import orjson
    except ImportError:  # pragma: no cover - the speed extra is optional
        return None
    # Passthrough sends datetimes, dataclasses and subclasses of str/int/dict/list
    # to `default`, which defers to the standard library: same bytes, same refusals.
    option = (
        orjson.OPT_PASSTHROUGH_DATETIME
        | orjson.OPT_PASSTHROUGH_DATACLASS
        | orjson.OPT_PASSTHROUGH_SUBCLASS
    )
    orjson_dumps = orjson.dumps
    encode_error = orjson.JSONEncodeError

    class _Defer(Exception):
        pass

    def refuse(obj: Any) -> Any:
        raise _Defer

    shortest_too_deep = _SHORTEST_TOO_DEEP  # a closure constant: the common case is one len()

    def dumps(obj: Any) -> bytes:
        try:
            out = orjson_dumps(obj, default=refuse, option=option)
        except (encode_error, _Defer):
            # Big ints, UUID subclasses, deep nesting, anything orjson will not do alone:
            # the standard library decides (and raises if the value is not JSON).
            return _stdlib_dumps(obj)
        # orjson writes NaN and Infinity as null; the standard library refuses them.
        # Only look for them when the output has a null at all (None values are common);
        # find(), not ``in``: bytes' ``in`` first tries the operand as an int (a raised
        # and cleared TypeError, twice the time of the search itself).
        if out.find(b"null") != -1 and _has_non_finite(obj):
            return _stdlib_dumps(obj)  # raises ValueError
        if len(out) >= shortest_too_deep:
            _check_depth(obj, out)
        return out

    return dumps


def _has_non_finite(obj: Any) -> bool:
    stack = [obj]
    while stack:
        value = stack.pop()
        if isinstance(value, float):
            if not math.isfinite(value):
                return True
        elif isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list | tuple):
            stack.extend(value)
    return False


_fast = _make_orjson_dumps()
dumps: Callable[[Any], bytes] = _fast or _stdlib_dumps
ENCODER = "orjson" if _fast else "json"


def encoder() -> Callable[[Any], bytes]:
    """``dumps`` for the payloads of one call (the same bytes and refusals; the standard
    library's encoder is built once per call instead of once per payload)."""
    return _fast or _stdlib_many()


#: every encoder this process can use, by name (the tests hold both to the same rule)
ENCODERS: dict[str, Callable[[Any], bytes]] = {"json": _stdlib_dumps}
if _fast:
    ENCODERS["orjson"] = _fast
