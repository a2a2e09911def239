"""Every Redis key name aioredstream uses: the Ruby gem's layout, or hash-tagged for a cluster.

=====================  ==============================================
stream                 ``[<ns>:]redstream:stream:<name>``
delay stream           ``[<ns>:]redstream:stream:<name>.delay``
consumer offset        ``[<ns>:]redstream:offset:<stream>:<consumer>``
lock                   ``[<ns>:]redstream:lock:<lock name>``
lock wake-up list      ``[<ns>:]redstream:lock:<lock name>.notify``
backfill checkpoint    ``[<ns>:]redstream:backfill:<stream>``
=====================  ==============================================

The backfill checkpoint is aioredstream's own (the gem has no backfill): a JSON
string that `aioredstream.integrations.sqlalchemy.backfill` writes after each
batch, so that a killed backfill can resume after the last row it queued.

With ``hash_tags=True`` (required on a Redis Cluster) the name part is wrapped in
braces: ``redstream:stream:{<name>}``, ``redstream:stream:{<name>}.delay``,
``redstream:offset:{<stream>}:<consumer>``, ``redstream:lock:{<lock name>}``,
``redstream:lock:{<lock name>}.notify`` and ``redstream:backfill:{<stream>}``; a delay
stream read as a stream of its own (the delayer's consumer) keeps its base name's tag:
``stream("users.delay")`` is ``redstream:stream:{users}.delay`` and its offsets
``redstream:offset:{users}.delay:<c>``.
A cluster hashes only the part between the first ``{`` and ``}``, so a stream, its
delay stream and all their consumers' offsets share one slot (a delayer can copy a
message, delete it and commit its offset on one node), and a lock and its wake-up
list share one. The Ruby layout is what the gem
reads and writes; a gem on a cluster would need the same tags (it has none), so
Ruby interop means the Ruby layout, on a single node or behind Sentinel.

Names are checked once, where they enter (see `check_name`),
so that two different (stream, consumer) pairs can never map to the same key.
"""

from __future__ import annotations

from ._validate import check_flag, check_name

__all__ = ["DELAY_SUFFIX", "Keys", "untag"]

DELAY_SUFFIX = ".delay"


class Keys:
    """Key names for one namespace (``None``: no prefix, as the gem without a namespace)."""

    __slots__ = ("hash_tags", "namespace", "prefix")

    def __init__(self, namespace: str | None = None, *, hash_tags: bool = False) -> None:
        if namespace is not None:
            check_name(namespace, "namespace")
        check_flag(hash_tags, "hash_tags")
        self.namespace = namespace
        self.hash_tags = hash_tags
        self.prefix = f"{namespace}:redstream:" if namespace else "redstream:"

    def __repr__(self) -> str:
        return f"Keys({self.namespace!r}, hash_tags={self.hash_tags})"

    def _tag(self, name: str) -> str:
        # Names never contain braces (check_name), so the tag is exactly the name.
        return f"{{{name}}}" if self.hash_tags else name

    def _stream_tag(self, name: str) -> str:
        # "<x>.delay" is tagged as {<x>}.delay: the delayer reads it as a stream of its
        # own, yet it, its offset and <x> must share <x>'s slot.
        if self.hash_tags and name.endswith(DELAY_SUFFIX) and len(name) > len(DELAY_SUFFIX):
            return f"{{{name.removesuffix(DELAY_SUFFIX)}}}{DELAY_SUFFIX}"
        return self._tag(name)

    def stream(self, name: str) -> str:
        return f"{self.prefix}stream:{self._stream_tag(name)}"

    def delay_stream(self, name: str) -> str:
        return f"{self.prefix}stream:{self._tag(name)}{DELAY_SUFFIX}"

    def offset(self, stream_name: str, consumer_name: str) -> str:
        return f"{self.prefix}offset:{self._stream_tag(stream_name)}:{consumer_name}"

    def lock(self, name: str) -> str:
        return f"{self.prefix}lock:{self._tag(name)}"

    def lock_notify(self, name: str) -> str:
        return f"{self.prefix}lock:{self._tag(name)}.notify"

    def backfill(self, stream_name: str) -> str:
        """The checkpoint of a backfill into ``stream_name`` (aioredstream's own key)."""
        return f"{self.prefix}backfill:{self._tag(stream_name)}"

    def stream_pattern(self) -> str:
        """A SCAN pattern matching every stream key of this namespace."""
        return f"{self.prefix}stream:*"

    def offset_pattern(self, stream_name: str) -> str:
        # Braces are not special in SCAN patterns, so the tagged form matches literally.
        return f"{self.prefix}offset:{self._stream_tag(stream_name)}:*"


def untag(name: str) -> str:
    """A stream name as found in a key of either layout: ``{users}.delay`` -> ``users.delay``."""
    if name.startswith("{"):
        tag, brace, rest = name[1:].partition("}")
        if brace:
            return tag + rest
    return name
