"""What OpenTelemetry costs a ``bulk()``: not instrumented, instrumented with no SDK, with an SDK.

"not instrumented" is what a process without the ``otel`` extra runs: the library
imports no OpenTelemetry code until ``instrument()`` is called. "no SDK" is
``instrument()`` with only ``opentelemetry-api`` (no tracer or meter provider
configured: the API's no-op ones). "SDK" records every span and metric in memory.
Modes alternate within each round, in reverse order every other round (so no mode
always runs first or right after another); each rate is the median of the rounds. On
a shared machine those rates drift by more than the instrumentation costs, so the
hooks are also timed alone (the three context managers of one ``bulk()``, no Redis):
``hooks_us_per_bulk`` and their share of one ``bulk()`` call.
"""

from __future__ import annotations

import gc
import json
import statistics
import time
import timeit
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from aioredstream import Producer, _telemetry
from aioredstream.integrations import otel
from benchmarks._suite import BenchUser

MODES = ("not instrumented", "instrumented, no SDK", "instrumented, SDK in memory")


def _install(mode: str) -> Any:
    if mode == MODES[0]:
        otel.uninstrument()
        return None
    if mode == MODES[1]:
        from opentelemetry.metrics import NoOpMeterProvider
        from opentelemetry.trace import NoOpTracerProvider

        otel.instrument(NoOpTracerProvider(), NoOpMeterProvider())
        return None
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    otel.instrument(tracer_provider, meter_provider)
    return meter_provider


async def run(url: str, records: int, calls: int, rounds: int) -> dict[str, Any]:
    """``calls`` bulks of ``records`` records per mode and round; records/s per mode."""
    client = Redis.from_url(url)
    producer = Producer(client)
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    batch = [BenchUser(i) for i in range(records)]
    try:
        async with producer.bulk(batch[:10]):  # warm up: connect, pack prefixes
            pass
        for round_ in range(rounds):
            for mode in MODES if round_ % 2 == 0 else MODES[::-1]:
                provider = _install(mode)
                await client.flushall()
                gc.collect()
                start = time.perf_counter()
                for _ in range(calls):
                    async with producer.bulk(batch):
                        pass
                rates[mode].append(records * calls / (time.perf_counter() - start))
                if provider is not None:
                    provider.shutdown()
        hooks_us = {mode: _time_hooks(mode, records) for mode in MODES}
    finally:
        otel.uninstrument()
        await client.flushall()
        await client.aclose()
    medians = {mode: statistics.median(values) for mode, values in rates.items()}
    base = medians[MODES[0]]
    bulk_us = records / base * 1e6
    return {
        "records_per_call": records,
        "calls_per_round": calls,
        "rounds": rounds,
        "records_per_s_median": medians,
        "ratio_to_not_instrumented": {mode: rate / base for mode, rate in medians.items()},
        "spread_not_instrumented": [min(rates[MODES[0]]) / base, max(rates[MODES[0]]) / base],
        "hooks_us_per_bulk": hooks_us,
        "hooks_share_of_bulk": {mode: us / bulk_us for mode, us in hooks_us.items()},
    }


def _time_hooks(mode: str, records: int, repeat: int = 2_000) -> float:
    """Microseconds the telemetry hooks of one ``bulk()`` take in ``mode`` (no I/O)."""
    provider = _install(mode)

    def one_bulk() -> None:
        with _telemetry.produce("bulk", lambda: ["users"], records):
            with _telemetry.produce("bulk_delay", lambda: ["users.delay"], records, 0):
                pass
            with _telemetry.produce("bulk_queue", lambda: ["users"], records):
                pass

    seconds = min(timeit.repeat(one_bulk, number=repeat, repeat=3)) / repeat
    if provider is not None:
        provider.shutdown()
    otel.uninstrument()
    return seconds * 1e6


def write(result: dict[str, Any], folder: Path) -> Path:
    path = folder / "otel_overhead.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path
