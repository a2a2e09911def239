"""What OpenTelemetry costs a ``bulk()``: not instrumented, instrumented with no SDK, with an SDK.

"not instrumented" is what a process without the ``otel`` extra runs: the library
imports no OpenTelemetry code until ``instrument()`` is called. "no SDK" is
``instrument()`` with only ``opentelemetry-api`` (no tracer or meter provider
configured: the API's no-op ones). "SDK" records every span and metric in memory.
Modes alternate within each round; each rate is the median of the rounds.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from aioredstream import Producer
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
        for _ in range(rounds):
            for mode in MODES:
                provider = _install(mode)
                await client.flushall()
                start = time.perf_counter()
                for _ in range(calls):
                    async with producer.bulk(batch):
                        pass
                rates[mode].append(records * calls / (time.perf_counter() - start))
                if provider is not None:
                    provider.shutdown()
    finally:
        otel.uninstrument()
        await client.flushall()
        await client.aclose()
    medians = {mode: statistics.median(values) for mode, values in rates.items()}
    base = medians[MODES[0]]
    return {
        "records_per_call": records,
        "calls_per_round": calls,
        "rounds": rounds,
        "records_per_s_median": medians,
        "ratio_to_not_instrumented": {mode: rate / base for mode, rate in medians.items()},
        "spread_not_instrumented": [min(rates[MODES[0]]) / base, max(rates[MODES[0]]) / base],
    }


def write(result: dict[str, Any], folder: Path) -> Path:
    path = folder / "otel_overhead.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path
