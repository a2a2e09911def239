"""Every Redis key name aioredstream uses: the Ruby gem's layout, or hash-tagged for a cluster.

=====================  ==============================================
stream                 ``[<ns>:]redstream:stream:<name>``
delay stream           ``[<ns>:]redstream:stream:<name>.delay``
consumer offset        ``[<ns>:]redstream:offset:<stream>:<consumer>``
lock                   ``[<ns>:]redstream:lock:<lock name>``
lock wake-up list      ``[<ns>:]redstream:lock:<lock name>.notify``
=====================  ==============================================

With ``hash_tags=True`` (required on a Redis Cluster) the name part is wrapped in
braces: ``redstream:stream:{<name>}``, ``redstream:stream:{<name>}.delay``,
``redstream:offset:{<stream>}:<consumer>``, ``redstream:lock:{<lock name>}`` and
``redstream:lock:{<lock name>}.notify``. A cluster hashes only the part between
the first ``{`` and ``}``, so a stream, its delay stream and its consumers'
offsets share one slot (a delayer can move a message and commit its offset on one
node), and a lock and its wake-up list share one. The Ruby layout is what the gem
reads and writes; a gem on a cluster would need the same tags (it has none), so
Ruby interop means the Ruby layout, on a single node or behind Sentinel.

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

    __slots__ = ("hash_tags", "namespace", "prefix")

    def __init__(self, namespace: str | None = None, *, hash_tags: bool = False) -> None:
        if namespace is not None:
            check_name(namespace, "namespace")
        if not isinstance(hash_tags, bool):
            raise ArgumentError(f"hash_tags must be True or False, got {hash_tags!r}")
        self.namespace = namespace
        self.hash_tags = hash_tags
        self.prefix = f"{namespace}:redstream:" if namespace else "redstream:"

    def __repr__(self) -> str:
        return f"Keys({self.namespace!r}, hash_tags={self.hash_tags})"

    def _tag(self, name: str) -> str:
        # Names never contain braces (check_name), so the tag is exactly the name.
        return f"{{{name}}}" if self.hash_tags else name

    def stream(self, name: str) -> str:
        return f"{self.prefix}stream:{self._tag(name)}"

    def delay_stream(self, name: str) -> str:
        return f"{self.prefix}stream:{self._tag(name)}{DELAY_SUFFIX}"

    def offset(self, stream_name: str, consumer_name: str) -> str:
        return f"{self.prefix}offset:{self._tag(stream_name)}:{consumer_name}"

    def lock(self, name: str) -> str:
        return f"{self.prefix}lock:{self._tag(name)}"

    def lock_notify(self, name: str) -> str:
        return f"{self.prefix}lock:{self._tag(name)}.notify"

    def stream_pattern(self) -> str:
        """A SCAN pattern matching every stream key of this namespace."""
        return f"{self.prefix}stream:*"

    def offset_pattern(self, stream_name: str) -> str:
        # Braces are not special in SCAN patterns, so the tagged form matches literally.
        return f"{self.prefix}offset:{self._tag(stream_name)}:*"
