"""OpenTelemetry: spans per producer call and worker batch, metrics, errors (in-memory SDK)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from redis.asyncio import Redis

from aioredstream import (
    Consumer,
    Delayer,
    Message,
    Producer,
    ReplicationError,
    Trimmer,
    _telemetry,
)
from aioredstream.integrations import otel
from aioredstream.send import wire as _wire
from aioredstream.testing import ServerProcess

from .helpers import Post, User


class Telemetry:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def finished(self, name_prefix: str = "") -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if s.name.startswith(name_prefix)]

    def total(self, name: str) -> int:
        return sum(point.value for point in self.metric_points(name))

    def metric_points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        assert data is not None
        return [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    installed = Telemetry()
    otel.instrument(installed.tracer_provider, installed.meter_provider)
    yield installed
    otel.uninstrument()
    installed.meter_provider.shutdown()


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def test_nothing_is_installed_until_instrument_is_called() -> None:
    assert _telemetry.current is None
    with _telemetry.produce("delay", lambda: pytest.fail("names computed"), 1) as batch:
        batch.set_count(3)


async def test_single_calls_are_producer_spans_with_messaging_attributes(
    client: Redis, telemetry: Telemetry
) -> None:
    producer = Producer(client)
    delay_id = await producer.delay(User(1))
    await producer.queue(User(1), delay_message_id=delay_id)
    delay, queue = telemetry.finished()
    assert (delay.name, queue.name) == ("delay users.delay", "queue users")
    assert delay.kind is SpanKind.PRODUCER
    assert attrs(delay) == {
        "messaging.system": "redis",
        "messaging.operation.type": "send",
        "messaging.operation.name": "delay",
        "messaging.destination.name": "users.delay",
        "messaging.batch.message_count": 1,
    }
    assert attrs(queue)["messaging.destination.name"] == "users"
    assert telemetry.total("aioredstream.messages.produced") == 2


async def test_concurrent_coalesced_calls_get_one_span_per_caller(
    client: Redis, telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    exchanges = 0
    execute = _wire.execute

    async def counted(*args: Any, **kwargs: Any) -> None:
        nonlocal exchanges
        exchanges += 1
        await execute(*args, **kwargs)

    monkeypatch.setattr(_wire, "execute", counted)
    producer = Producer(client)
    async with anyio.create_task_group() as tg:
        for i in range(50):
            tg.start_soon(producer.delay, User(i))
    assert 0 < exchanges < 50  # the calls really shared pipelines
    assert len(telemetry.finished("delay ")) == 50
    assert await client.xlen("redstream:stream:users.delay") == 50


async def test_bulk_has_two_halves_and_counts_every_record(
    client: Redis, telemetry: Telemetry
) -> None:
    producer = Producer(client)  # slices of 250: a 600-record bulk is 3 slices a half
    records = [User(i) for i in range(600)]
    async with producer.bulk(records) as ids:
        assert len(ids) == 600
    [bulk] = telemetry.finished("bulk ")
    halves = telemetry.finished("bulk_")
    assert [span.name for span in halves] == ["bulk_delay users.delay", "bulk_queue users"]
    for span in [bulk, *halves]:
        assert attrs(span)["messaging.batch.message_count"] == 600
        if span is not bulk:
            assert span.parent is not None
            assert span.parent.span_id == bulk.context.span_id
    assert (
        telemetry.total("aioredstream.messages.produced") == 1200
    )  # 600 delay + 600 queue messages, not the bulk parent


async def test_a_call_over_several_streams_lists_them(client: Redis, telemetry: Telemetry) -> None:
    await Producer(client).bulk_delay([User(1), Post(2), User(3)])
    [span] = telemetry.finished()
    assert "messaging.destination.name" not in attrs(span)
    assert attrs(span)["aioredstream.destinations"] == ("users.delay", "posts.delay")


async def test_errors_are_recorded_on_the_span_and_counted(
    client: Redis, telemetry: Telemetry
) -> None:
    await client.set("redstream:stream:users.delay", "not a stream")
    producer = Producer(client)
    with pytest.raises(Exception, match="WRONGTYPE"):
        await producer.delay(User(1))
    [span] = telemetry.finished()
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)["error.type"] == "ServerError"
    assert [event.name for event in span.events] == ["exception"]
    [errors] = telemetry.metric_points("aioredstream.errors")
    assert errors.value == 1
    assert dict(errors.attributes)["error.type"] == "ServerError"


async def test_wait_outcome_short_is_on_the_span(client: Redis, telemetry: Telemetry) -> None:
    producer = Producer(client, wait=1, wait_timeout=0.05)  # no replica: WAIT returns 0
    with pytest.raises(ReplicationError):
        await producer.delay(User(1))
    [span] = telemetry.finished()
    assert attrs(span)["aioredstream.wait.required"] == 1
    assert attrs(span)["aioredstream.wait.outcome"] == "short"
    assert attrs(span)["aioredstream.wait.acknowledged"] == 0


async def test_cancelled_call_is_not_an_error(server: ServerProcess, telemetry: Telemetry) -> None:
    client = Redis.from_url(server.url)
    try:
        producer = Producer(client, wait=1, wait_timeout=0)  # WAIT blocks: no replica
        with anyio.move_on_after(0.2):
            await producer.delay(User(1))
        [span] = telemetry.finished()
        assert span.status.status_code is StatusCode.UNSET
        assert telemetry.metric_points("aioredstream.errors") == []
    finally:
        await client.aclose()


async def test_worker_batches_are_spans_with_counts(client: Redis, telemetry: Telemetry) -> None:
    producer = Producer(client)
    await producer.bulk_delay([User(i) for i in range(3)])
    await producer.bulk_queue([User(i) for i in range(5)])
    seen: list[Message] = []

    async def handler(messages: list[Message]) -> None:
        seen.extend(messages)

    consumer = Consumer(client, stream_name="users", name="indexer", block=0.05)
    assert await consumer.run_once(handler) == 5
    assert await Delayer(client, stream_name="users", delay=0).run_once() == 3
    await consumer.run_once(handler)
    trimmer = Trimmer(client, stream_name="users", consumer_names=["indexer"], interval=0.01)
    assert await trimmer.run_once() == 8

    consume = telemetry.finished("consume ")
    assert [attrs(s)["messaging.batch.message_count"] for s in consume] == [5, 3]
    assert {attrs(s)["messaging.operation.type"] for s in consume} == {"process"}
    [delay] = telemetry.finished("delay users.delay")
    assert attrs(delay)["messaging.batch.message_count"] == 3
    assert attrs(delay)["messaging.destination.name"] == "users.delay"
    [trim] = telemetry.finished("trim ")
    assert attrs(trim)["messaging.batch.message_count"] == 8
    assert attrs(trim)["messaging.operation.type"] == "settle"
    [replays] = telemetry.metric_points("aioredstream.delayer.replays")
    assert replays.value == 3
    handler_points = telemetry.metric_points("aioredstream.handler.duration")
    assert sum(point.count for point in handler_points) == 2


async def test_a_failing_handler_is_an_error_span(client: Redis, telemetry: Telemetry) -> None:
    await Producer(client).queue(User(1))

    async def handler(messages: list[Message]) -> None:
        raise ValueError("index is down")

    with pytest.raises(ValueError, match="index is down"):
        await Consumer(client, stream_name="users", name="indexer").run_once(handler)
    [span] = telemetry.finished("consume ")
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)["error.type"] == "ValueError"


async def test_uninstrument_stops_spans(client: Redis, telemetry: Telemetry) -> None:
    otel.uninstrument()
    await Producer(client).delay(User(1))
    assert telemetry.finished() == []
