"""Payload JSON: compact, UTF-8, strict (no NaN/Infinity), as Ruby's ``JSON.dump`` writes it.

With the ``speed`` extra, orjson encodes. Datetimes, dataclasses, sets, bytes,
NaN and Infinity are refused either way. Two differences remain, both valid
JSON of the same value: orjson writes ``uuid.UUID`` as a string (the standard
library refuses it) and may spell a float's exponent differently (``1e-7``
rather than ``1e-07``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

__all__ = ["ENCODER", "dumps"]

_stdlib_encoder = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":"), check_circular=True
)


def _stdlib_dumps(obj: Any) -> bytes:
    return _stdlib_encoder.encode(obj).encode()


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

    def dumps(obj: Any) -> bytes:
        try:
            out = orjson_dumps(obj, default=refuse, option=option)
        except (encode_error, _Defer):
            # Big ints, UUIDs-as-subclasses, anything orjson will not do alone:
            # the standard library decides (and raises if the value is not JSON).
            return _stdlib_dumps(obj)
        # orjson writes NaN and Infinity as null; the standard library refuses them.
        # Only look for them when the output has a null at all (None values are common).
        if b"null" in out and _has_non_finite(obj):
            return _stdlib_dumps(obj)  # raises ValueError
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
