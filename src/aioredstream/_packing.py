"""Records -> RESP bytes: pre-packed command prefixes and compact slices of payloads.

The hot path per record is: payload function -> JSON bytes -> ``$<len>\\r\\n<json>\\r\\n``
appended to its slice. A slice keeps its payloads end to end in one ``bytes`` with
an offset array, so a million-record bulk holds no per-record Python object
beyond the records themselves and the ids it returns.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Sequence
from hashlib import sha1
from itertools import accumulate, chain
from typing import Any

from redis.crc import key_slot

from ._codec import dumps
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

    __slots__ = ("name", "payload", "queue_delete", "slot", "xadd", "xadd_delay", "xdel_head")

    def __init__(self, spec: StreamSpec, keys: Keys) -> None:
        stream = keys.stream(spec.name).encode()
        delay = keys.delay_stream(spec.name).encode()
        self.name = spec.name  # the stream's name (telemetry, errors)
        self.payload = spec.payload
        self.slot = key_slot(stream)  # the cluster slot (the same for delay with hash tags)
        # XADD <key> * payload <json>: 5 arguments, the last appended per record.
        self.xadd = b"*5\r\n$4\r\nXADD\r\n" + bulk_string(stream) + b"$1\r\n*\r\n$7\r\npayload\r\n"
        self.xadd_delay = (
            b"*5\r\n$4\r\nXADD\r\n" + bulk_string(delay) + b"$1\r\n*\r\n$7\r\npayload\r\n"
        )
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
    """Up to ``slice_size`` records as one pipeline: their targets and framed payloads."""

    __slots__ = ("ends", "payloads", "targets")

    def __init__(self, targets: Target | list[Target], payloads: bytes, ends: array[int]) -> None:
        self.targets = targets  # one Target when every record of the slice shares it
        self.payloads = payloads
        self.ends = ends

    def __len__(self) -> int:
        return len(self.ends)

    def args(self) -> list[bytes]:
        """The framed payload of each record, in order (built per slice, not kept)."""
        payloads = self.payloads
        ends = self.ends
        return [
            payloads[start:end] for start, end in zip(chain((0,), ends), ends, strict=False)
        ]  # starts run one longer

    def delay_commands(self) -> bytes:
        targets = self.targets
        if isinstance(targets, Target):
            prefix = targets.xadd_delay
            return prefix + prefix.join(self.args())
        return b"".join([t.xadd_delay + arg for t, arg in zip(targets, self.args(), strict=True)])

    def queue_commands(self) -> bytes:
        """The XADDs to the stream (their delay messages are deleted by send/queueing)."""
        targets = self.targets
        if isinstance(targets, Target):
            prefix = targets.xadd
            return prefix + prefix.join(self.args())
        return b"".join([t.xadd + arg for t, arg in zip(targets, self.args(), strict=True)])


def flatten(slices: Sequence[Slice]) -> tuple[list[Target], list[bytes]]:
    """Per-record targets and framed payloads (the cluster path regroups them by node)."""
    targets: list[Target] = []
    args: list[bytes] = []
    for part in slices:
        shared = part.targets
        targets.extend([shared] * len(part) if isinstance(shared, Target) else shared)
        args.extend(part.args())
    return targets, args


def encoded(target: Target, record: Any, index: int | None) -> bytes:
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
    """
    slices: list[Slice] = []
    last_cls: type | None = None
    cached: Target | None = None
    for start in range(0, len(records), slice_size):
        targets: list[Target] = []
        parts: list[bytes] = []
        for index in range(start, min(start + slice_size, len(records))):
            record = records[index]
            if record.__class__ is not last_cls or cached is None:
                last_cls = record.__class__
                cached = cache.get(last_cls)
            target = cached or target_for(record, index)
            targets.append(target)
            parts.append(encoded(target, record, index))
        ends = array("I", accumulate(map(len, parts)))
        first = targets[0]
        shared = targets.count(first) == len(targets)
        slices.append(Slice(first if shared else targets, b"".join(parts), ends))
    return slices
