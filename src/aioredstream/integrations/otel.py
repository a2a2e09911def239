"""OpenTelemetry spans and metrics for producer calls and worker batches (extra ``otel``).

Call [`instrument`][aioredstream.integrations.otel.instrument] once at start-up,
after configuring your tracer and meter providers (or pass them). From then on:

- every producer call is a ``PRODUCER`` span: ``delay``, ``queue``, ``bulk_delay``,
  ``bulk_queue``, and ``bulk`` with its two halves (``bulk_delay``, ``bulk_queue``) as
  children; the body of ``bulk`` runs inside the ``bulk`` span. Concurrent calls that
  auto-pipelining sends together still get one span each (one per caller);
- every worker batch is a span: ``consume`` (the handler), ``delay`` (the delayer's
  copy of due messages), ``trim`` (one trimming pass);
- attributes follow the messaging semantic conventions: ``messaging.system``
  (``redis``), ``messaging.operation.type`` (``send``, ``process``, ``settle``),
  ``messaging.operation.name``, ``messaging.destination.name`` (the stream, e.g.
  ``users`` or ``users.delay``; a call over several streams lists them in
  ``aioredstream.destinations``), ``messaging.batch.message_count`` (the messages
  that span's operation wrote or handled: a 600-record ``bulk()`` shows 600 on
  ``bulk`` and on each half), and for ``delay`` with ``wait=N`` the WAIT outcome:
  ``aioredstream.wait.required`` (N) and ``aioredstream.wait.outcome``
  (``acknowledged``, or ``short`` with ``aioredstream.wait.acknowledged``);
- an exception is recorded on its span (status ``ERROR``, ``error.type``); a
  cancellation is not an error;
- metrics (meter ``aioredstream``): ``aioredstream.messages.produced`` (counter),
  ``aioredstream.producer.duration``, ``aioredstream.batch.duration`` and
  ``aioredstream.handler.duration`` (histograms, seconds),
  ``aioredstream.delayer.replays`` (messages the delayer copied) and
  ``aioredstream.errors`` (counter, by operation and ``error.type``).

Nothing is measured per message, and without
[`instrument`][aioredstream.integrations.otel.instrument] the library runs no
OpenTelemetry code at all. Only ``opentelemetry-api`` is needed at run time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from time import perf_counter
from typing import Any

from .. import _telemetry
from .._failures import missing_extra
from ..errors import ReplicationError

try:
    from opentelemetry import metrics, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ModuleNotFoundError as exc:  # the extra is not installed
    raise missing_extra(exc, "otel", __name__) from exc

__all__ = ["instrument", "uninstrument"]

_SCOPE = "aioredstream"
_OPERATION_TYPES = {"consume": "process", "delay": "process", "trim": "settle"}


class _Span:
    """The `Batch` handed to the instrumented code."""

    __slots__ = ("count", "span")

    def __init__(self, span: trace.Span, count: int | None) -> None:
        self.span = span
        self.count = count

    def set_count(self, count: int) -> None:
        self.count = count
        self.span.set_attribute("messaging.batch.message_count", count)


class _OtelHooks:
    def __init__(self, tracer: trace.Tracer, meter: metrics.Meter) -> None:
        self._tracer = tracer
        self._produced = meter.create_counter(
            "aioredstream.messages.produced", unit="{message}", description="messages written"
        )
        self._producer_duration = meter.create_histogram(
            "aioredstream.producer.duration", unit="s", description="producer calls"
        )
        self._batch_duration = meter.create_histogram(
            "aioredstream.batch.duration", unit="s", description="worker batches"
        )
        self._handler_duration = meter.create_histogram(
            "aioredstream.handler.duration", unit="s", description="consumer handler calls"
        )
        self._replays = meter.create_counter(
            "aioredstream.delayer.replays",
            unit="{message}",
            description="delay messages the delayer copied to their stream",
        )
        self._errors = meter.create_counter(
            "aioredstream.errors", unit="{error}", description="failed calls and batches"
        )

    @contextmanager
    def produce(
        self,
        operation: str,
        destinations: Callable[[], Sequence[str]],
        count: int,
        wait: int,
    ) -> Iterator[_Span]:
        names = destinations()
        attributes: dict[str, Any] = {
            "messaging.system": "redis",
            "messaging.operation.type": "send",
            "messaging.operation.name": operation,
            "messaging.batch.message_count": count,
        }
        if len(names) == 1:
            attributes["messaging.destination.name"] = names[0]
        elif names:
            attributes["aioredstream.destinations"] = list(names)
        if wait:
            attributes["aioredstream.wait.required"] = wait
        label = names[0] if len(names) == 1 else "(several streams)"
        metric_attributes = {"messaging.operation.name": operation}
        with self._run(f"{operation} {label}", SpanKind.PRODUCER, attributes, count) as span:
            started = perf_counter()
            try:
                yield span
            except ReplicationError as exc:
                span.span.set_attribute("aioredstream.wait.outcome", "short")
                span.span.set_attribute("aioredstream.wait.acknowledged", exc.acknowledged)
                raise
            else:
                if wait:
                    span.span.set_attribute("aioredstream.wait.outcome", "acknowledged")
                if operation != "bulk":  # its halves count the messages
                    self._produced.add(count, metric_attributes)
            finally:
                self._producer_duration.record(perf_counter() - started, metric_attributes)

    @contextmanager
    def batch(self, operation: str, destination: str, count: int | None) -> Iterator[_Span]:
        attributes: dict[str, Any] = {
            "messaging.system": "redis",
            "messaging.operation.type": _OPERATION_TYPES[operation],
            "messaging.operation.name": operation,
            "messaging.destination.name": destination,
        }
        if count is not None:
            attributes["messaging.batch.message_count"] = count
        metric_attributes = {"messaging.operation.name": operation}
        with self._run(f"{operation} {destination}", SpanKind.CONSUMER, attributes, count) as span:
            started = perf_counter()
            try:
                yield span
            finally:
                elapsed = perf_counter() - started
                self._batch_duration.record(elapsed, metric_attributes)
                if operation == "consume":
                    self._handler_duration.record(elapsed, metric_attributes)
            if operation == "delay" and span.count:
                self._replays.add(span.count, {"messaging.destination.name": destination})

    @contextmanager
    def _run(
        self, name: str, kind: SpanKind, attributes: dict[str, Any], count: int | None
    ) -> Iterator[_Span]:
        with self._tracer.start_as_current_span(
            name,
            kind=kind,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                yield _Span(span, count)
            except asyncio.CancelledError:
                raise  # stopping is not failing
            except BaseException as exc:
                error_type = type(exc).__qualname__
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                span.set_attribute("error.type", error_type)
                self._errors.add(
                    1,
                    {
                        "messaging.operation.name": attributes["messaging.operation.name"],
                        "error.type": error_type,
                    },
                )
                raise


def instrument(
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
) -> None:
    """Trace and measure every producer and worker of this process from now on.

    Without arguments the global providers are used (``trace.set_tracer_provider``
    and ``metrics.set_meter_provider``). Calling it again replaces the providers.
    """
    from .._version import __version__

    tracer = trace.get_tracer(_SCOPE, __version__, tracer_provider=tracer_provider)
    meter = metrics.get_meter(_SCOPE, __version__, meter_provider=meter_provider)
    _telemetry.current = _OtelHooks(tracer, meter)


def uninstrument() -> None:
    """Stop tracing and measuring: the library runs no OpenTelemetry code again."""
    _telemetry.current = None
