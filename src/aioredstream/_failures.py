"""Errors with their context: the one place that words where an error happened and sets
the matching attributes (see the tree in `aioredstream.errors`).

``record at index 2 of type app.User: ...`` for a record the producer cannot
stream; ``XADD (record at index 2) on 127.0.0.1:6379: WRONGTYPE ...`` for a
command the server refused.
"""

from __future__ import annotations

from typing import Any, TypeVar, cast

from .errors import (
    MissingExtraError,
    RecordError,
    ReplicationError,
    ServerError,
    ServerUnavailableError,
    TopologyError,
)

__all__ = ["cause", "command_error", "missing_extra", "record_error"]

R = TypeVar("R", bound=RecordError)
C = TypeVar("C", ServerError, TopologyError, ReplicationError)

# Error replies of a server that is up but not serving for now (see ServerUnavailableError).
_UNAVAILABLE = ("LOADING ", "BUSY ", "MASTERDOWN ")


def cause(exc: BaseException) -> str:
    """An exception in words: ``KeyError: 'id'``, or its type's name alone when it has no
    message (never a bare ``KeyError()``)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def missing_extra(exc: ModuleNotFoundError, extra: str, module: str) -> MissingExtraError:
    """The error for ``module`` (an integration) imported without its extra ``extra``:
    ``aioredstream.integrations.otel needs the extra 'otel' (No module named
    'opentelemetry'): pip install 'aioredstream[otel]'``."""
    return MissingExtraError(
        f"{module} needs the extra {extra!r} ({exc}): pip install 'aioredstream[{extra}]'",
        extra=extra,
        name=exc.name,
    )


def _at(index: int | None) -> str:
    return "" if index is None else f" at index {index}"


def record_error(error: type[R], problem: str, *, index: int | None, record_type: type) -> R:
    """``error`` (a `RecordError`) for the record at ``index`` (``None``: a
    single-record call) of ``record_type``: ``record at index 2 of type app.User: problem``."""
    name = f"{record_type.__module__}.{record_type.__qualname__}"
    return error(
        f"record{_at(index)} of type {name}: {problem}", index=index, record_type=record_type
    )


def command_error(
    error: type[C],
    detail: str,
    *,
    command: str | None,
    index: int | None = None,
    node: str | None = None,
    what: str | None = None,
    **extra: Any,
) -> C:
    """``error`` for ``command`` (named by ``what`` in the message when given: a label
    such as ``XLEN <key>``), the record at ``index`` of the call, on ``node``.

    A `ServerError` whose ``detail`` is a ``LOADING``, ``BUSY`` or ``MASTERDOWN``
    reply is a `ServerUnavailableError`: every error reply passes here.
    """
    if error is ServerError and detail.startswith(_UNAVAILABLE):
        error = cast("type[C]", ServerUnavailableError)
    where = what or command or "?"
    if index is not None:
        where += f" (record{_at(index)})"
    if node is not None:
        where += f" on {node}"
    return error(f"{where}: {detail}", command=command, index=index, node=node, **extra)
