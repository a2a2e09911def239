"""The multi-id XDEL of a slice: the same bytes as the command packed argument by argument."""

from __future__ import annotations

import pytest

from aioredstream._keys import Keys
from aioredstream._packing import Target
from aioredstream._records import StreamSpec
from aioredstream.send import wire
from aioredstream.send.queueing import QueueUnit

TARGET = Target(StreamSpec("users", lambda record: {"id": record}), Keys("ns"))
KEY = "ns:redstream:stream:users.delay"


@pytest.mark.parametrize(
    "ids",
    [
        ["1700000000000-0", "1700000000000-17", "1700000000001-123"],  # as send_delay returns
        [b"1-1", b"1700000000000-99999"],  # as bulk_queue's checked ids are
        ["1-1", b"2-2"],
        ["1-1", "ü-1"],  # never an id, but its length in bytes is not its length in characters
    ],
)
def test_xdel_of_a_slice_is_the_packed_command(ids: list[str | bytes]) -> None:
    unit = QueueUnit(b"", TARGET, ids, 0)
    data, count = unit.deletes([b"id"] * len(ids))
    assert count == 1
    assert data == wire.pack("XDEL", KEY, *ids)


def test_xdel_leaves_out_the_ids_whose_queue_write_failed() -> None:
    unit = QueueUnit(b"", TARGET, ["1-1", "1-2", "1-3"], 0)
    data, count = unit.deletes([b"id", wire.ReplyError("OOM"), b"id"])
    assert (data, count) == (wire.pack("XDEL", KEY, "1-1", "1-3"), 1)
    assert unit.deletes([wire.ReplyError("OOM")] * 3) == (b"", 0)
