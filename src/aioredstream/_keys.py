"""Every Redis key name aioredstream uses, in the Ruby gem's layout.

=====================  ==============================================
stream                 ``[<ns>:]redstream:stream:<name>``
delay stream           ``[<ns>:]redstream:stream:<name>.delay``
consumer offset        ``[<ns>:]redstream:offset:<stream>:<consumer>``
lock                   ``[<ns>:]redstream:lock:<lock name>``
lock wake-up list      ``[<ns>:]redstream:lock:<lock name>.notify``
=====================  ==============================================

Names are checked once, where they enter (see :func:`check_name`), so that
two different (stream, consumer) pairs can never map to the same key.
"""

from __future__ import annotations

import re

from .errors import ArgumentError

__all__ = ["DELAY_SUFFIX", "MAX_NAME_LENGTH", "Keys", "check_name"]

DELAY_SUFFIX = ".delay"
MAX_NAME_LENGTH = 256

# Refused in names, and why:
#   ':'            separates the parts of an offset key (stream "a:b" + consumer "c"
#                  would collide with stream "a" + consumer "b:c");
#   '{' '}'        hash-tag braces: they would change which cluster slot a key maps to;
#   '*' '?' '[' ']' '\\'  glob characters: they break SCAN patterns (the status CLI);
#   whitespace and control characters: invisible or ambiguous in logs and tooling.
_BAD_CHARS = re.compile(r"[:{}*?\[\]\\\s\x00-\x1f\x7f]")


def check_name(value: object, what: str = "stream name") -> str:
    """Return ``value`` if it is a usable name, else raise :class:`ArgumentError` naming it."""
    if not isinstance(value, str):
        raise ArgumentError(f"{what} must be a str, got {type(value).__name__}: {value!r}")
    if not value:
        raise ArgumentError(f"{what} must not be empty")
    if len(value) > MAX_NAME_LENGTH:
        raise ArgumentError(
            f"{what} is {len(value)} characters long, at most {MAX_NAME_LENGTH} allowed: "
            f"{value[:40]!r}..."
        )
    bad = _BAD_CHARS.search(value)
    if bad:
        raise ArgumentError(
            f"{what} {value!r} contains {bad.group()!r}; names may not contain ':', braces, "
            "glob characters, whitespace or control characters"
        )
    return value


class Keys:
    """Key names for one namespace (``None``: no prefix, as the gem without a namespace)."""

    __slots__ = ("namespace", "prefix")

    def __init__(self, namespace: str | None = None) -> None:
        if namespace is not None:
            check_name(namespace, "namespace")
        self.namespace = namespace
        self.prefix = f"{namespace}:redstream:" if namespace else "redstream:"

    def stream(self, name: str) -> str:
        return f"{self.prefix}stream:{name}"

    def delay_stream(self, name: str) -> str:
        return f"{self.prefix}stream:{name}{DELAY_SUFFIX}"

    def offset(self, stream_name: str, consumer_name: str) -> str:
        return f"{self.prefix}offset:{stream_name}:{consumer_name}"

    def lock(self, name: str) -> str:
        return f"{self.prefix}lock:{name}"

    def lock_notify(self, name: str) -> str:
        return f"{self.prefix}lock:{name}.notify"

    def stream_pattern(self) -> str:
        """A SCAN pattern matching every stream key of this namespace."""
        return f"{self.prefix}stream:*"

    def offset_pattern(self, stream_name: str) -> str:
        return f"{self.prefix}offset:{stream_name}:*"
