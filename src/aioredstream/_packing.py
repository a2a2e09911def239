"""Records -> RESP bytes: pre-packed command prefixes and compact slices of payloads.

The hot path per record is: payload function -> JSON bytes -> ``$<len>\\r\\n<json>\\r\\n``
appended to its slice. A slice keeps its payloads end to end in one ``bytes``, so a
million-record bulk holds no per-record Python object beyond the records themselves
and the ids it returns. A slice of records of one class goes through C-level loops
(``map``, ``join``, one format call for the default ``{"id": n}`` payloads), and its
commands are made by inserting each command's prefix between its framed payloads:
what the client spends per record stays well under what the server does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from hashlib import sha1
from typing import Any

from redis.crc import key_slot

from ._codec import dumps, encoder
from ._keys import Keys
from ._records import StreamSpec, payload_error

__all__ = ["Slice", "Target", "bulk_string", "flatten", "pack_slices"]


def bulk_string(data: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(data), data)


# XADD the queue message, then XDEL its delay message only if the XADD succeeded:
# pipelined as two commands, a refused XADD (OOM, WRONGTYPE) would still let the XDEL
# run and lose the record. A script stops at the first failing redis.call(). Single
# queue() calls use it by its SHA (EVALSHA); bulk calls need no script (send/queueing).
QUEUE_AND_DELETE = (
    b"local id = redis.call('XADD', KEYS[1], '*', 'payload', ARGV[1]) "
    b"redis.call('XDEL', KEYS[2], ARGV[2]) return id"
)
QUEUE_AND_DELETE_SHA = sha1(QUEUE_AND_DELETE).hexdigest().encode()


class Target:
    """Pre-packed RESP prefixes for one record class: the hot path only appends payloads."""

    __slots__ = (
        "delay_between",
        "id_of",
        "name",
        "payload",
        "queue_between",
        "queue_delete",
        "slot",
        "xadd",
        "xadd_delay",
        "xdel_head",
    )

    def __init__(
        self, spec: StreamSpec, keys: Keys, id_of: Callable[[Any], Any] | None = None
    ) -> None:
        stream = keys.stream(spec.name).encode()
        delay = keys.delay_stream(spec.name).encode()
        self.name = spec.name  # the stream's name (telemetry, errors)
        self.payload = spec.payload
        # set when the payload is {"id": id_of(record)} (the defaults): see _int_ids
        self.id_of = id_of
        self.slot = key_slot(stream)  # the cluster slot (the same for delay with hash tags)
        # XADD <key> * payload <json>: 5 arguments, the last appended per record.
        self.xadd = b"*5\r\n$4\r\nXADD\r\n" + bulk_string(stream) + b"$1\r\n*\r\n$7\r\npayload\r\n"
        self.xadd_delay = (
            b"*5\r\n$4\r\nXADD\r\n" + bulk_string(delay) + b"$1\r\n*\r\n$7\r\npayload\r\n"
        )
        # what goes between two framed payloads of a slice (see Slice)
        self.delay_between = b"\r\n" + self.xadd_delay + b"$"
        self.queue_between = b"\r\n" + self.xadd + b"$"
        # XDEL <delay key> <id> ...: the array header (*<2 + ids>) goes in front per call
        self.xdel_head = b"$4\r\nXDEL\r\n" + bulk_string(delay)
        # EVALSHA <QUEUE_AND_DELETE's sha> 2 <key> <delay key> <json> <delay id>
        self.queue_delete = (
            b"*7\r\n$7\r\nEVALSHA\r\n"
            + bulk_string(QUEUE_AND_DELETE_SHA)
            + b"$1\r\n2\r\n"
            + bulk_string(stream)
            + bulk_string(delay)
        )


class Slice:
    """Up to ``slice_size`` records as one pipeline: their targets and framed payloads.

    ``payloads`` holds every record's payload as a RESP bulk string, end to end
    (``$8\\r\\n{"id":1}\\r\\n$8\\r\\n{"id":2}\\r\\n``). JSON never contains a raw CR or LF
    (both encoders escape control characters) and never starts with ``$``, so
    ``\\r\\n$`` occurs exactly between two records: the commands are made by
    inserting each command's prefix there, with no object per record.
    """

    __slots__ = ("count", "payloads", "targets")

    def __init__(self, targets: Target | list[Target], payloads: bytes, count: int) -> None:
        self.targets = targets  # one Target when every record of the slice shares it
        self.payloads = payloads
        self.count = count

    def __len__(self) -> int:
        return self.count

    def args(self) -> list[bytes]:
        """The framed payload of each record, in order (built per slice, not kept)."""
        return [b"$" + part + b"\r\n" for part in self.payloads[1:-2].split(_BETWEEN)]

    def delay_commands(self) -> bytes:
        targets = self.targets
        if isinstance(targets, Target):
            return targets.xadd_delay + self.payloads.replace(_BETWEEN, targets.delay_between)
        return b"".join([t.xadd_delay + arg for t, arg in zip(targets, self.args(), strict=True)])

    def queue_commands(self) -> bytes:
        """The XADDs to the stream (their delay messages are deleted by send/queueing)."""
        targets = self.targets
        if isinstance(targets, Target):
            return targets.xadd + self.payloads.replace(_BETWEEN, targets.queue_between)
        return b"".join([t.xadd + arg for t, arg in zip(targets, self.args(), strict=True)])


#: what separates two framed payloads (the end of one, the start of the next)
_BETWEEN = b"\r\n$"


def flatten(slices: Sequence[Slice]) -> tuple[list[Target], list[bytes]]:
    """Per-record targets and framed payloads (the cluster path regroups them by node)."""
    targets: list[Target] = []
    args: list[bytes] = []
    for part in slices:
        shared = part.targets
        targets.extend([shared] * len(part) if isinstance(shared, Target) else shared)
        args.extend(part.args())
    return targets, args


def encoded(
    target: Target, record: Any, index: int | None, dumps: Callable[[Any], bytes] = dumps
) -> bytes:
    """The record's payload as a RESP bulk string; a failure raises the
    `PayloadError` that names the record (``index`` in its call)
    and which step failed: the payload function or the JSON encoding."""
    try:  # two steps, so that the error names what failed (zero-cost try)
        value = target.payload(record)
    except Exception as exc:
        raise payload_error(record, index, exc) from exc
    try:
        data = dumps(value)
    except Exception as exc:
        raise payload_error(record, index, exc, encoding=True) from exc
    return b"$%d\r\n%b\r\n" % (len(data), data)


def pack_slices(
    records: Sequence[Any],
    cache: dict[type, Target],
    target_for: Callable[[Any, int], Target],
    slice_size: int,
) -> list[Slice]:
    """Serialise every payload before anything is sent (all or nothing).

    ``cache`` maps classes to their target; ``target_for(record, index)`` is the slow
    path for a class not in it (its first record, or every record of a sharded class).
    A slice of one cached class is packed without a Python step per record beyond its
    payload; anything else (mixed classes, a record that fails) goes record by record,
    which also names the record that failed.
    """
    slices: list[Slice] = []
    dumps = encoder()
    for start in range(0, len(records), slice_size):
        chunk = records[start : start + slice_size]
        kinds = set(map(type, chunk))
        target = cache.get(kinds.pop()) if len(kinds) == 1 else None
        payloads = None if target is None else _same_target(target, chunk, dumps)
        if target is None or payloads is None:
            slices.append(_each(chunk, start, cache, target_for, dumps))
        else:
            slices.append(Slice(target, payloads, len(chunk)))
    return slices


def _same_target(
    target: Target, chunk: Sequence[Any], dumps: Callable[[Any], bytes]
) -> bytes | None:
    """The framed payloads of records that share ``target``; ``None`` if one fails (the
    slice is then packed again record by record, which names it)."""
    try:
        if target.id_of is not None:
            ids = list(map(target.id_of, chunk))
            if set(map(type, ids)) == {int}:
                return _int_ids(ids)
        return b"".join(
            [
                b"$%d\r\n%b\r\n" % (len(data), data)
                for data in map(dumps, map(target.payload, chunk))
            ]
        )
    except Exception:
        return None


def _int_ids(ids: list[int]) -> bytes:
    """Framed ``{"id":<n>}`` payloads, byte for byte what both encoders write for them.

    Ids of one width (every slice but the one where the ids gain a digit) are written
    by one format call; the length prefix is the same for all of them.
    """
    low, high = min(ids), max(ids)
    width = len(str(low))
    if (low >= 0 or high < 0) and width == len(str(high)):
        head = b'$%d\r\n{"id":' % (width + 7)
        return head + (b"%d}\r\n" + head) * (len(ids) - 1) % tuple(ids[:-1]) + b"%d}\r\n" % ids[-1]
    return b"".join([b'$%d\r\n{"id":%d}\r\n' % (len(str(n)) + 7, n) for n in ids])


def _each(
    chunk: Sequence[Any],
    start: int,
    cache: dict[type, Target],
    target_for: Callable[[Any, int], Target],
    dumps: Callable[[Any], bytes],
) -> Slice:
    """Pack ``chunk`` (the records from index ``start`` on) one record at a time."""
    targets: list[Target] = []
    parts: list[bytes] = []
    last_cls: type | None = None
    cached: Target | None = None
    for index, record in enumerate(chunk, start):
        if record.__class__ is not last_cls or cached is None:
            last_cls = record.__class__
            cached = cache.get(last_cls)
        target = cached or target_for(record, index)
        targets.append(target)
        parts.append(encoded(target, record, index, dumps))
    first = targets[0]
    shared = targets.count(first) == len(targets)
    return Slice(first if shared else targets, b"".join(parts), len(parts))
