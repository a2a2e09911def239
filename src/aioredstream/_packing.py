"""Records -> RESP bytes: pre-packed command prefixes and compact slices of payloads.

The hot path per record is: payload function -> JSON bytes -> ``$<len>\\r\\n<json>\\r\\n``
appended to its slice. A slice keeps its payloads end to end in one ``bytes`` with
an offset array, so a million-record bulk holds no per-record Python object
beyond the records themselves and the ids it returns.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ._codec import dumps
from ._keys import Keys
from ._records import StreamSpec
from .errors import PayloadError, RecordError

__all__ = ["Slice", "Target", "bulk_string", "pack_slices"]


def bulk_string(data: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(data), data)


class Target:
    """Pre-packed RESP prefixes for one record class: the hot path only appends payloads."""

    __slots__ = ("payload", "xadd", "xadd_delay", "xdel_delay")

    def __init__(self, spec: StreamSpec, keys: Keys) -> None:
        stream = keys.stream(spec.name).encode()
        delay = keys.delay_stream(spec.name).encode()
        self.payload = spec.payload
        # XADD <key> * payload <json>: 5 arguments, the last appended per record.
        self.xadd = b"*5\r\n$4\r\nXADD\r\n" + bulk_string(stream) + b"$1\r\n*\r\n$7\r\npayload\r\n"
        self.xadd_delay = (
            b"*5\r\n$4\r\nXADD\r\n" + bulk_string(delay) + b"$1\r\n*\r\n$7\r\npayload\r\n"
        )
        # XDEL <delay key> <id>
        self.xdel_delay = b"*3\r\n$4\r\nXDEL\r\n" + bulk_string(delay)


class Slice:
    """Up to ``slice_size`` records as one pipeline: their targets and framed payloads."""

    __slots__ = ("ends", "payloads", "targets")

    def __init__(self, targets: Target | list[Target], payloads: bytes, ends: array[int]) -> None:
        self.targets = targets  # one Target when every record of the slice shares it
        self.payloads = payloads
        self.ends = ends

    def __len__(self) -> int:
        return len(self.ends)

    def __iter__(self) -> Iterator[tuple[Target, bytes]]:
        """(target, framed payload) of each record, in order."""
        targets = self.targets
        payloads = self.payloads
        start = 0
        for i, end in enumerate(self.ends):
            yield (targets if isinstance(targets, Target) else targets[i]), payloads[start:end]
            start = end

    def delay_commands(self) -> bytes:
        return b"".join([target.xadd_delay + arg for target, arg in self])

    def queue_commands(self, ids: Sequence[str | bytes] | None) -> bytes:
        """XADD to the stream (and XDEL of the delay message when ``ids`` are given)."""
        if ids is None:
            return b"".join([target.xadd + arg for target, arg in self])
        return b"".join(
            [
                target.xadd + arg + target.xdel_delay + bulk_string(_raw(message_id))
                for (target, arg), message_id in zip(self, ids, strict=True)
            ]
        )


def _raw(message_id: str | bytes) -> bytes:
    return message_id.encode() if isinstance(message_id, str) else message_id


def pack_slices(
    records: Sequence[Any], target_for: Callable[[type, int], Target], slice_size: int
) -> list[Slice]:
    """Serialise every payload before anything is sent (all or nothing)."""
    slices: list[Slice] = []
    for start in range(0, len(records), slice_size):
        targets: list[Target] = []
        parts: list[bytes] = []
        ends = array("I")
        end = 0
        for index in range(start, min(start + slice_size, len(records))):
            record = records[index]
            target = target_for(type(record), index)
            try:
                data = dumps(target.payload(record))
            except Exception as exc:
                raise payload_error(record, index, exc) from exc
            framed = b"$%d\r\n%b\r\n" % (len(data), data)
            end += len(framed)
            targets.append(target)
            parts.append(framed)
            ends.append(end)
        first = targets[0]
        shared = all(target is first for target in targets)
        slices.append(Slice(first if shared else targets, b"".join(parts), ends))
    return slices


def payload_error(record: Any, index: int | None, exc: Exception) -> RecordError:
    cls = type(record)
    at = "" if index is None else f" at index {index}"
    what = f"record{at} of type {cls.__module__}.{cls.__qualname__}"
    if isinstance(exc, AttributeError | KeyError):
        return PayloadError(
            f"{what}: cannot build its payload: {exc!r}", index=index, record_type=cls
        )
    return PayloadError(
        f"{what}: payload is not JSON-serialisable: {exc}", index=index, record_type=cls
    )
