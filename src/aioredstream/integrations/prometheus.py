"""Stream backlog and consumer lag as Prometheus metrics (extra ``prometheus``).

``aioredstream status --prometheus`` prints them once in the text exposition
format; ``aioredstream exporter --port N`` serves them at ``/metrics``, reading the
server afresh on every scrape (cluster-aware: every primary is scanned). Gauges,
labelled ``namespace`` (empty without one), ``stream`` and ``consumer``:

- ``aioredstream_stream_length``: entries in the stream;
- ``aioredstream_delay_backlog``: entries in its delay stream;
- ``aioredstream_oldest_delay_age_seconds``: age of the oldest delay message (by the
  server's clock), absent when the delay stream is empty;
- ``aioredstream_dead_letters``: entries in its dead-letter stream ``<name>.dead``
  (messages a consumer with ``dead_letter=True`` gave up on; 0 when there are none);
- ``aioredstream_consumer_lag``: entries after the consumer's committed offset;
- ``aioredstream_consumer_offset_age_seconds``: age of the entry the offset names,
  i.e. how far behind the consumer is in time when it has lag.

Delay-stream consumers (the delayer) appear with ``stream="<name>.delay"``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from .._failures import missing_extra

try:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.registry import Collector
except ModuleNotFoundError as exc:  # the extra is not installed
    raise missing_extra(exc, "prometheus", __name__) from exc

from .._validate import parse_id
from ..ops.status import ConsumerStatus, Status

__all__ = ["StatusCollector", "exposition", "families"]

_STREAM = ["namespace", "stream"]
_CONSUMER = ["namespace", "stream", "consumer"]


def families(report: Status) -> list[GaugeMetricFamily]:
    """The gauges of one status report."""
    length = GaugeMetricFamily(
        "aioredstream_stream_length", "Entries in the stream", labels=_STREAM
    )
    backlog = GaugeMetricFamily(
        "aioredstream_delay_backlog", "Entries in the stream's delay stream", labels=_STREAM
    )
    oldest = GaugeMetricFamily(
        "aioredstream_oldest_delay_age_seconds",
        "Age of the oldest delay message, by the server's clock",
        labels=_STREAM,
    )
    dead = GaugeMetricFamily(
        "aioredstream_dead_letters",
        "Entries in the stream's dead-letter stream <name>.dead",
        labels=_STREAM,
    )
    lag = GaugeMetricFamily(
        "aioredstream_consumer_lag", "Entries after the committed offset", labels=_CONSUMER
    )
    offset_age = GaugeMetricFamily(
        "aioredstream_consumer_offset_age_seconds",
        "Age of the entry the committed offset names, by the server's clock",
        labels=_CONSUMER,
    )
    namespace = report.namespace or ""
    for stream in report.streams:
        length.add_metric([namespace, stream.name], stream.length)
        backlog.add_metric([namespace, stream.name], stream.delay_length)
        dead.add_metric([namespace, stream.name], stream.dead_letters)
        if stream.oldest_delay_age_s is not None:
            oldest.add_metric([namespace, stream.name], stream.oldest_delay_age_s)
        for name, consumers in (
            (stream.name, stream.consumers),
            (stream.name + ".delay", stream.delay_consumers),
        ):
            for consumer in consumers:
                labels = [namespace, name, consumer.name]
                lag.add_metric(labels, consumer.lag)
                age = _offset_age_s(consumer, report.server_time_ms)
                if age is not None:
                    offset_age.add_metric(labels, age)
    return [length, backlog, oldest, dead, lag, offset_age]


def _offset_age_s(consumer: ConsumerStatus, now_ms: int) -> float | None:
    try:
        ms, _ = parse_id(consumer.offset)
    except ValueError:  # not an id (a foreign writer's value): no age
        return None
    return max(now_ms - ms, 0) / 1000 if ms else None


class StatusCollector(Collector):
    """A collector that reads a fresh [`Status`][aioredstream.Status] from ``load()`` per scrape.

    Scrapes arrive on the HTTP server's thread; ``load`` runs there, so it must not
    use an event loop of another thread (build the client inside it).
    """

    def __init__(self, load: Callable[[], Status]) -> None:
        self._load = load

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from families(self._load())


def exposition(report: Status) -> str:
    """The text exposition format of one report (what ``status --prometheus`` prints)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(lambda: report))
    return generate_latest(registry).decode()
