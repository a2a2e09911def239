"""Consumer: batches in order, commit after the handler, errors, restarts, malformed entries."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import anyio
import pytest
from redis.asyncio import Redis

from aioredstream import Consumer, Message, MessageError, max_consumer_id
from aioredstream.testing import ServerProcess

from .conftest import ClientFactory
from .helpers import decoded, eventually, in_use

STREAM = "redstream:stream:users"


class Recorder:
    """A handler that records the payload ids of every batch it gets."""

    def __init__(self, fail_times: int = 0) -> None:
        self.batches: list[list[Any]] = []
        self.fail_times = fail_times

    async def __call__(self, messages: list[Message]) -> None:
        self.batches.append([m.payload["id"] for m in messages])
        if self.fail_times:
            self.fail_times -= 1
            raise RuntimeError("handler failed")

    @property
    def ids(self) -> list[Any]:
        return [i for batch in self.batches for i in batch]


async def _add(client: Redis, *ids: int) -> list[str]:
    out = []
    for i in ids:
        raw = await client.xadd(STREAM, {"payload": f'{{"id":{i}}}'})
        out.append(decoded(raw))
    return out


async def test_batches_come_in_order_and_the_last_id_is_committed(client: Redis) -> None:
    ids = await _add(client, 1, 2, 3, 4, 5)
    consumer = Consumer(client, stream_name="users", name="indexer", batch_size=2, block=0.05)
    handler = Recorder()
    assert await consumer.max_committed_id() is None
    assert await consumer.run_once(handler) == 2
    assert await consumer.max_committed_id() == ids[1]
    assert await consumer.run_once(handler) == 2
    assert await consumer.run_once(handler) == 1
    assert await consumer.run_once(handler) == 0
    assert handler.batches == [[1, 2], [3, 4], [5]]
    assert await max_consumer_id(client, stream_name="users", consumer_name="indexer") == ids[4]


async def test_messages_carry_id_fields_and_payload(client: Redis) -> None:
    [message_id] = await _add(client, 7)
    got: list[Message] = []

    async def handler(messages: list[Message]) -> None:
        got.extend(messages)

    await Consumer(client, stream_name="users", name="c", block=0.05).run_once(handler)
    [message] = got
    assert message.message_id == message_id
    assert message.fields == {"payload": '{"id":7}'}
    assert message.payload == {"id": 7}
    assert message.raw_payload == b'{"id":7}'


async def test_a_handler_error_commits_nothing_and_the_same_batch_comes_again(
    client: Redis,
) -> None:
    ids = await _add(client, 1, 2, 3)
    consumer = Consumer(client, stream_name="users", name="c", batch_size=2, block=0.05)
    handler = Recorder(fail_times=1)
    with pytest.raises(RuntimeError, match="handler failed"):
        await consumer.run_once(handler)
    assert await consumer.max_committed_id() is None
    assert await client.get("redstream:lock:consumer:users:c") is None  # released
    assert await consumer.run_once(handler) == 2
    assert handler.batches == [[1, 2], [1, 2]]
    assert await consumer.max_committed_id() == ids[1]


async def test_run_logs_a_handler_error_backs_off_and_goes_on(
    client: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    ids = await _add(client, 1, 2)
    consumer = Consumer(client, stream_name="users", name="c", block=0.05, backoff=0.01)
    handler = Recorder(fail_times=2)

    async def committed() -> bool:
        return await consumer.max_committed_id() == ids[-1]

    with caplog.at_level(logging.WARNING, logger="aioredstream.consumer"):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consumer.run, handler)
            await eventually(committed)
            tg.cancel_scope.cancel()
    assert handler.batches == [[1, 2]] * 3
    errors = [r for r in caplog.records if r.name == "aioredstream.consumer"]
    # the traceback once; the same error again is one line, not another traceback
    assert [r.levelno for r in errors] == [logging.ERROR, logging.WARNING]
    assert errors[0].exc_info is not None
    assert isinstance(errors[0].exc_info[1], RuntimeError)
    assert errors[1].exc_info is None
    assert "failed again" in errors[1].getMessage()


async def test_offsets_survive_a_worker_restart(
    server: ServerProcess, client: Redis, make_client: ClientFactory
) -> None:
    await _add(client, 1, 2, 3)
    first = Consumer(make_client(server.url), stream_name="users", name="c", block=0.05)
    handler = Recorder()
    await first.run_once(handler)
    await _add(client, 4, 5)
    # A new process: new client, new consumer object, same name.
    second = Consumer(make_client(server.url), stream_name="users", name="c", block=0.05)
    await second.run_once(handler)
    assert handler.batches == [[1, 2, 3], [4, 5]]


async def test_consumers_with_different_names_each_get_everything(client: Redis) -> None:
    await _add(client, 1, 2)
    a, b = Recorder(), Recorder()
    await Consumer(client, stream_name="users", name="a", block=0.05).run_once(a)
    await Consumer(client, stream_name="users", name="b", block=0.05).run_once(b)
    assert a.ids == b.ids == [1, 2]


async def test_namespace_prefixes_stream_offset_and_lock_keys(client: Redis) -> None:
    key = "shop:redstream:stream:users"
    message_id = decoded(await client.xadd(key, {"payload": '{"id":1}'}))
    await _add(client, 99)  # the stream without namespace is not read
    handler = Recorder()
    consumer = Consumer(client, stream_name="users", name="c", namespace="shop", block=0.05)
    await consumer.run_once(handler)
    assert handler.ids == [1]
    assert decoded(await client.get("shop:redstream:offset:users:c")) == message_id
    assert consumer.lock.key == "shop:redstream:lock:consumer:users:c"


@pytest.mark.parametrize(
    "options",
    [{"decode_responses": True}, {"protocol": 3}, {"protocol": 3, "decode_responses": True}],
)
async def test_every_client_setting_gives_str_ids_and_fields(
    server: ServerProcess, client: Redis, make_client: ClientFactory, options: dict[str, Any]
) -> None:
    ids = await _add(client, 1)
    other = make_client(server.url, **options)
    got: list[Message] = []

    async def handler(messages: list[Message]) -> None:
        got.extend(messages)

    consumer = Consumer(other, stream_name="users", name="c", block=0.05)
    await consumer.run_once(handler)
    assert [(m.message_id, m.fields) for m in got] == [(ids[0], {"payload": '{"id":1}'})]
    assert await consumer.max_committed_id() == ids[0]


async def test_malformed_entries_are_logged_skipped_and_committed_past(
    client: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    await client.xadd(STREAM, {"other": "x"})
    await client.xadd(STREAM, {"payload": b"\xff\xfe"})
    await client.xadd(STREAM, {"payload": "{not json"})
    [good] = await _add(client, 4)
    handler = Recorder()
    consumer = Consumer(client, stream_name="users", name="c", block=0.05)
    with caplog.at_level(logging.WARNING, logger="aioredstream.consumer"):
        assert await consumer.run_once(handler) == 4
    assert handler.batches == [[4]]
    assert await consumer.max_committed_id() == good
    assert len([r for r in caplog.records if "malformed" in r.getMessage()]) == 3


async def test_a_batch_of_only_malformed_entries_is_committed_without_calling_the_handler(
    client: Redis,
) -> None:
    bad = decoded(await client.xadd(STREAM, {"payload": "[1,"}))
    handler = Recorder()
    consumer = Consumer(client, stream_name="users", name="c", block=0.05)
    assert await consumer.run_once(handler) == 1
    assert handler.batches == []
    assert await consumer.max_committed_id() == bad


def test_message_refuses_entries_without_a_json_payload() -> None:
    with pytest.raises(MessageError, match="no 'payload' field") as info:
        Message("1-0", {"other": "x"})
    assert info.value.message_id == "1-0"
    with pytest.raises(MessageError, match="not UTF-8 JSON"):
        Message("1-1", {"payload": "{"})
    with pytest.raises(MessageError, match="not UTF-8 JSON"):
        Message("1-2", {"payload": b"\xff".decode("utf-8", "surrogateescape")})


PAYLOADS = [
    b'{"id":1}',
    b' {"id":1} ',  # whitespace around: still JSON
    b'{"name":"\xc3\xa9"}',  # UTF-8 beyond ASCII
    b'"\xed\xa0\x80"',  # an encoded lone surrogate: json.loads takes it (surrogatepass)
    b"\xef\xbb\xbf" + b'{"id":1}',  # a UTF-8 BOM: json.loads skips it
    '{"id":1}'.encode("utf-16"),  # json.loads detects UTF-16 and UTF-32, BOM or not
    '{"id":1}'.encode("utf-16-le"),
    '{"id":1}'.encode("utf-16-be"),
    '{"id":1}'.encode("utf-32-le"),
    b'"\x00"',  # a NUL that is not an encoding's mark (JSON refuses it in a string)
    b"7",
    b"[]x",
    b"{",
    b"\xff",
    b"",
]


@pytest.mark.parametrize("raw", PAYLOADS)
def test_a_raw_entry_parses_as_json_loads_parses_its_payload_bytes(raw: bytes) -> None:
    """Message.from_entry (the consumer's path) skips json.loads' encoding detection
    only where the detection cannot change the result."""
    import json

    def outcome(parse: Any) -> str:
        try:
            return repr(parse())
        except (ValueError, MessageError):
            return "refused"

    expected = outcome(lambda: json.loads(raw))
    assert outcome(lambda: Message.from_entry("1-0", [b"payload", raw]).payload) == expected
    escaped = raw.decode("utf-8", "surrogateescape")
    assert outcome(lambda: Message("1-0", {"payload": escaped}).payload) == expected


async def test_entries_with_other_or_repeated_fields_carry_them_as_a_dict_does(
    client: Redis,
) -> None:
    """Only ``[payload, value]`` entries take the shortcut; the rest decode every field."""
    await client.xadd(STREAM, {"source": "ruby", "payload": '{"id":1}'})
    await client.xadd(STREAM, {"payload": b'{"id":2}', "note": b"\xff"})
    # a field given twice: the last one counts, as in a dict of the fields
    execute: Any = client.execute_command
    await execute("XADD", STREAM, "*", "payload", '{"id":3}', "payload", "[4]")
    got: list[Message] = []

    async def handler(messages: list[Message]) -> None:
        got.extend(messages)

    await Consumer(client, stream_name="users", name="c", block=0.05).run_once(handler)
    assert [(m.payload, m.fields, m.raw_payload) for m in got] == [
        ({"id": 1}, {"source": "ruby", "payload": '{"id":1}'}, b'{"id":1}'),
        ({"id": 2}, {"payload": '{"id":2}', "note": "\udcff"}, b'{"id":2}'),
        ([4], {"payload": "[4]"}, b"[4]"),
    ]


async def test_cancelling_run_mid_handler_commits_nothing_releases_the_lock_leaves_no_task(
    client: Redis,
) -> None:
    await _add(client, 1)
    consumer = Consumer(client, stream_name="users", name="c", block=0.05)
    entered = anyio.Event()

    async def handler(messages: list[Message]) -> None:
        entered.set()
        await anyio.sleep_forever()

    before = asyncio.all_tasks()
    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer.run, handler)
        await entered.wait()
        assert await client.get(consumer.lock.key) is not None
        tg.cancel_scope.cancel()
    assert await consumer.max_committed_id() is None
    assert await client.get(consumer.lock.key) is None
    assert asyncio.all_tasks() == before
    assert await in_use(client) == 0


async def test_run_reads_its_offset_once_per_lock_take_and_follows_its_own_commits(
    client: Redis,
) -> None:
    """Under the lock nobody else commits: no GET of the offset before every batch
    (issue 10, item 3); a new take of the lock (after an error) reads it again."""
    await _add(client, *range(1, 51))
    consumer = Consumer(client, stream_name="users", name="indexer", batch_size=10, block=0.05)
    consumer.backoff = 0.0  # the failed first batch: retried at once, under a new take
    handler = Recorder(fail_times=1)
    gets = 0
    get_offset = consumer.max_committed_id

    async def counted() -> str | None:
        nonlocal gets
        gets += 1
        return await get_offset()

    consumer.max_committed_id = counted  # type: ignore[method-assign]
    rows: Any = await client.xrevrange(STREAM, count=1)
    last = decoded(rows[0][0])

    async def committed_all() -> bool:  # the handler's last batch, and its commit after it
        return bool(await get_offset() == last)

    task = asyncio.create_task(consumer.run(handler))
    await eventually(committed_all, "the consumer to commit the last entry")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert handler.ids[10:] == list(range(1, 51))  # the failed batch came again, then all
    assert gets == 2  # one GET per take of the lock: before the error and after it
