"""Every argument check of the public API, so each rule lives in one place.

Each check returns the value (converted where that is its job: seconds become a
``float``) or raises `ArgumentError` naming the parameter and
showing the bad value's ``repr``. ``bool`` is an ``int`` subclass, but ``True``
is never a count or a duration here: booleans are refused wherever a number is meant.

Names (streams, consumers, namespaces) and stream ids follow the rules below;
the id rule is the server's own for a complete id, ``<ms>-<seq>``, each part an
unsigned 64-bit decimal number.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .errors import ArgumentError

__all__ = [
    "MAX_NAME_LENGTH",
    "check_count",
    "check_flag",
    "check_id",
    "check_id_bytes",
    "check_ids_bytes",
    "check_lock_name",
    "check_name",
    "check_number",
    "check_seconds",
    "check_shards",
    "parse_id",
]

MAX_NAME_LENGTH = 256
_MAX_ID_PART = 2**64 - 1

# Refused in names, and why:
#   ':'            separates the parts of an offset key (stream "a:b" + consumer "c"
#                  would collide with stream "a" + consumer "b:c");
#   '{' '}'        hash-tag braces: they would change which cluster slot a key maps to;
#   '*' '?' '[' ']' '\\'  glob characters: they break SCAN patterns (the status CLI);
#   whitespace and control characters: invisible or ambiguous in logs and tooling.
_BAD_CHARS = re.compile(r"[:{}*?\[\]\\\s\x00-\x1f\x7f]")
_ID = re.compile(rb"([0-9]+)-([0-9]+)")
_SHORT_ID = re.compile(rb"[0-9]{1,19}-[0-9]{1,19}")  # always within 64 bits


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_seconds(value: object, name: str, *, positive: bool = False) -> float:
    """``value`` as seconds; refuses bools, non-numbers, NaN, negatives (and 0 if ``positive``)."""
    if not _is_number(value) or not (value > 0 if positive else value >= 0):  # type: ignore[operator]
        bound = "> 0" if positive else ">= 0"
        raise ArgumentError(f"{name} must be seconds {bound}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def check_count(value: object, name: str, *, least: int = 1, most: int | None = None) -> int:
    """``value`` if it is an int from ``least`` to ``most`` (bools refused)."""
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or value < least
        or (most is not None and value > most)
    ):
        bound = f">= {least}" if most is None else f"from {least} to {most}"
        raise ArgumentError(f"{name} must be an int {bound}, got {value!r}")
    return value


def check_shards(value: object, name: str) -> int:
    """A shard count: 4 hex digits of SHA1 give 65536 values, so more shards would stay empty."""
    return check_count(value, name, most=65536)


def check_number(value: object, name: str, *, least: float) -> float:
    """``value`` as a float if it is a number >= ``least`` (bools and NaN refused)."""
    if not _is_number(value) or not value >= least:  # type: ignore[operator]
        raise ArgumentError(f"{name} must be a number >= {least:g}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def check_flag(value: object, name: str, *, none: bool = False) -> bool | None:
    """``value`` if it is ``True`` or ``False`` (or ``None`` when ``none``)."""
    if isinstance(value, bool) or (none and value is None):
        return value
    allowed = "None, True or False" if none else "True or False"
    raise ArgumentError(f"{name} must be {allowed}, got {value!r}")


def check_name(value: object, name: str = "stream name") -> str:
    """``value`` if it is a usable stream, consumer or namespace name.

    Names are checked once, where they enter, so that two different (stream,
    consumer) pairs can never map to the same key (see `aioredstream._keys`).
    """
    if not isinstance(value, str):
        raise ArgumentError(f"{name} must be a str, got {type(value).__name__}: {value!r}")
    if not value:
        raise ArgumentError(f"{name} must not be empty, got ''")
    if len(value) > MAX_NAME_LENGTH:
        raise ArgumentError(
            f"{name} is {len(value)} characters long, at most {MAX_NAME_LENGTH} allowed: "
            f"{value[:40]!r}..."
        )
    bad = _BAD_CHARS.search(value)
    if bad:
        raise ArgumentError(
            f"{name} {value!r} contains {bad.group()!r}; names may not contain ':', braces, "
            "glob characters, whitespace or control characters"
        )
    return value


def check_lock_name(value: object, name: str = "lock name") -> str:
    """A lock's name: composite (``consumer:<stream>:<name>``), so only non-empty and printable."""
    if not isinstance(value, str) or not value or not value.isprintable():
        raise ArgumentError(f"{name} must be a non-empty printable str, got {value!r}")
    return value


def _id_bytes(value: object, name: str, index: int | None = None) -> bytes:
    raw = value.encode("utf-8", "replace") if isinstance(value, str) else value
    if raw.__class__ is bytes and _SHORT_ID.fullmatch(raw):
        return raw
    # A part of 20 digits may still fit in 64 bits; anything else is refused.
    match = _ID.fullmatch(raw) if isinstance(raw, bytes) else None
    if match is None or not (int(match[1]) <= _MAX_ID_PART and int(match[2]) <= _MAX_ID_PART):
        what = name if index is None else f"{name}[{index}]"
        raise ArgumentError(
            f"{what} must be a stream id like '1700000000000-0' (<ms>-<seq>), got {value!r}"
        )
    return match[0]


def check_id(value: object, name: str = "id") -> str:
    """``value`` (``str`` or ``bytes``) as a ``str`` if it is a stream entry id ``<ms>-<seq>``."""
    return _id_bytes(value, name).decode()


def check_ids_bytes(values: Iterable[object], name: str) -> list[bytes]:
    """`check_id` of every value, as ``bytes`` (the producer sends ids as they came);
    an error names the position: ``name[3]``."""
    return [_id_bytes(value, name, index) for index, value in enumerate(values)]


def check_id_bytes(value: object, name: str = "id") -> bytes:
    """`check_id` for the producer, which sends the id as it came, as ``bytes``."""
    return _id_bytes(value, name)


def parse_id(value: object, name: str = "id") -> tuple[int, int]:
    """A stream entry id ``"<ms>-<seq>"`` as a pair of ints, so ids compare numerically
    (``"1-10" > "1-9"``)."""
    ms, _, seq = _id_bytes(value, name).partition(b"-")
    return int(ms), int(seq)
