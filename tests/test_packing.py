"""Records -> RESP bytes: what the producer packs equals the commands it stands for.

The reference is the plain way: ``json.dumps`` of each record's payload (compact,
UTF-8) inside ``XADD <key> * payload <json>``, packed by hiredis (``wire.pack``). The producer's
own packing (one format call for the default ``{"id": n}`` payloads, one C encoder
per call for the rest, prefixes inserted between framed payloads) must give the same
bytes, with both encoders.
"""

from __future__ import annotations

import json
import uuid
from enum import IntEnum
from operator import attrgetter, itemgetter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from aioredstream import Model, PayloadError, Producer, Registry, _packing
from aioredstream._codec import ENCODERS, _stdlib_many
from aioredstream._keys import Keys
from aioredstream._records import StreamSpec, id_getter
from aioredstream.send import wire

ENCODER_NAMES = sorted(ENCODERS)
KEYS = Keys()


class User(Model):
    def __init__(self, id: Any) -> None:
        self.id = id


class Post(Model):
    def __init__(self, id: Any) -> None:
        self.id = id


class Tagged(Model):
    def __init__(self, id: Any, tag: str) -> None:
        self.id = id
        self.tag = tag

    def redstream_payload(self) -> Any:
        return {"id": self.id, "tag": self.tag}


class Color(IntEnum):
    RED = 1


def _reference(record: Any) -> bytes:
    return json.dumps(
        record.redstream_payload(), separators=(",", ":"), ensure_ascii=False, default=str
    ).encode()  # default: UUIDs as their str, the library's one rule


def _xadds(records: list[Any], delay: bool) -> bytes:
    out = b""
    for record in records:
        name = type(record).redstream_name()
        key = KEYS.delay_stream(name) if delay else KEYS.stream(name)
        out += wire.pack("XADD", key, "*", "payload", _reference(record))
    return out


def _packed(records: list[Any], slice_size: int = 250) -> list[_packing.Slice]:
    return Producer(Redis(), slice_size=slice_size)._prepare(records)


def _assert_packs_as_reference(records: list[Any], slice_size: int = 250) -> None:
    slices = _packed(records, slice_size)
    assert sum(len(part) for part in slices) == len(records)
    assert b"".join(part.delay_commands() for part in slices) == _xadds(records, True)
    assert b"".join(part.queue_commands() for part in slices) == _xadds(records, False)
    _, args = _packing.flatten(slices)  # the cluster path: per-record framed payloads
    assert args == [_packing.bulk_string(_reference(record)) for record in records]


@pytest.fixture(params=ENCODER_NAMES)
def encoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Pack with each encoder in turn (the process has both in the dev environment)."""
    name: str = request.param
    make = _stdlib_many if name == "json" else lambda: ENCODERS[name]
    monkeypatch.setattr(_packing, "encoder", make)
    return name


@pytest.mark.parametrize(
    "ids",
    [
        list(range(1, 600)),  # 1 to 3 digits, slices crossing 9 -> 10 and 99 -> 100
        list(range(-300, 300)),  # negatives, zero, signs mixed in one slice
        [-12, -5, -99],  # negatives of different widths
        [2**64 + n for n in range(5)] + [10**40, -(10**40)],  # past 64 bits
        [7],
    ],
)
def test_default_int_id_payloads_pack_as_json_would(ids: list[int], encoder: str) -> None:
    _assert_packs_as_reference([User(n) for n in ids])


@pytest.mark.parametrize(
    "ids",
    [
        [True, False, 1],  # bools are JSON true/false, not 1/0
        [Color.RED, 2],  # an IntEnum is written by json as its int
        ["a", 'quo"te', "line\r\nbreak$", "$9\r\n", "ü€😀", "\u2028"],
        [uuid.UUID(int=5), None, 1.5],
    ],
)
def test_other_id_values_pack_as_json_would(ids: list[Any], encoder: str) -> None:
    _assert_packs_as_reference([User(n) for n in ids])


def test_custom_payloads_and_mixed_classes_pack_as_json_would(encoder: str) -> None:
    records: list[Any] = [Tagged(n, f"t\r\n${n}") for n in range(300)]
    records[5:5] = [User(1), Post(2), User("x")]
    _assert_packs_as_reference(records, slice_size=100)


@settings(max_examples=60, deadline=None)
@given(
    ids=st.lists(
        st.one_of(st.integers(), st.text(), st.booleans(), st.none()),
        min_size=1,
        max_size=40,
    ),
    slice_size=st.integers(min_value=1, max_value=50),
)
def test_any_ids_pack_as_json_would(ids: list[Any], slice_size: int) -> None:
    # (no floats: orjson spells some differently from json.dumps; see _codec)
    _assert_packs_as_reference([User(n) for n in ids], slice_size)


def test_a_bad_record_in_a_slice_of_one_class_is_named_by_its_index(encoder: str) -> None:
    records: list[Any] = [User(n) for n in range(300)]
    del records[260].id
    with pytest.raises(PayloadError) as caught:
        _packed(records)
    assert caught.value.index == 260
    records[260] = User(object())  # the payload builds; its JSON encoding fails
    with pytest.raises(PayloadError, match="not JSON-serialisable") as caught:
        _packed(records)
    assert caught.value.index == 260


def test_the_per_call_stdlib_encoder_starts_afresh_after_a_refusal() -> None:
    # the C encoder marks the containers it is inside; a refusal leaves the marks, and the
    # same container encoded again would be called circular
    dumps = _stdlib_many()
    holder: list[Any] = [1, object()]
    with pytest.raises(TypeError):
        dumps(holder)
    holder.pop()
    assert dumps(holder) == b"[1]"
    assert dumps({"id": 1}) == b'{"id":1}'


def test_ids_are_read_directly_only_where_the_payload_is_the_default_one() -> None:
    registry = Registry()
    registry.register(dict, name="docs")
    registry.register(Post, name="posts", payload=lambda post: {"id": post.id, "x": 1})

    def getter(cls: type) -> str:
        return repr(id_getter(registry.resolve(cls), cls))

    assert getter(User) == repr(attrgetter("id"))
    assert getter(dict) == repr(itemgetter("id"))
    assert getter(Tagged) == "None"  # overrides redstream_payload
    assert getter(Post) == "None"  # registered with a payload of its own
    assert id_getter(StreamSpec("s", lambda record: {"id": 1}), User) is None
