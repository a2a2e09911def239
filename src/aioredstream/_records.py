"""How a record names its stream and builds its payload.

A record is anything whose class answers ``redstream_name()`` (the stream) and
whose instances answer ``redstream_payload()`` (a JSON-able value). :class:`Model`
supplies both defaults. Classes that cannot be changed (dicts, third-party
models) are described once with :func:`register` instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import inflection

from ._keys import DELAY_SUFFIX, check_name
from .errors import RecordError

__all__ = ["Model", "Registry", "StreamSpec", "default_registry", "register"]

PayloadFn = Callable[[Any], Any]


class Model:
    """Mixin giving a class the gem's defaults.

    The stream is the Rails table name of the class (``User`` → ``users``,
    ``ProductCategory`` → ``product_categories``); the payload is
    ``{"id": self.id}``. Override either method to change it.
    """

    @classmethod
    def redstream_name(cls) -> str:
        return str(inflection.tableize(cls.__name__))

    def redstream_payload(self) -> Any:
        return {"id": self.id}  # type: ignore[attr-defined]


class StreamSpec:
    """What the producer needs to know about one class: its stream and payload function."""

    __slots__ = ("name", "payload")

    def __init__(self, name: str, payload: PayloadFn) -> None:
        self.name = name
        self.payload = payload


def _default_payload(record: Any) -> Any:
    return record.redstream_payload()


class Registry:
    """Stream names and payload functions for classes that do not define them.

    ``registry.register(dict, name="users", payload=lambda r: {"id": r["id"]})``
    makes plain dicts streamable. Lookups follow the class's MRO, so registering
    a base class covers its subclasses. Registration wins over methods the class
    defines itself.
    """

    def __init__(self) -> None:
        self._specs: dict[type, StreamSpec] = {}

    def register(
        self,
        cls: type,
        *,
        name: str | Callable[[type], str] | None = None,
        payload: PayloadFn | None = None,
    ) -> None:
        """Describe ``cls``: ``name`` is the stream name (or a function of the class,
        default: its Rails table name); ``payload`` maps a record to its payload
        (default: ``{"id": record.id}``)."""
        if not isinstance(cls, type):
            raise TypeError(f"register() takes a class, got {cls!r}")
        if name is None:
            stream = str(inflection.tableize(cls.__name__))
        elif callable(name):
            stream = name(cls)
        else:
            stream = name
        _check_stream_name(stream, cls)
        self._specs[cls] = StreamSpec(stream, payload or _id_payload)

    def unregister(self, cls: type) -> None:
        self._specs.pop(cls, None)

    def resolve(self, cls: type, index: int | None = None) -> StreamSpec:
        """The spec for ``cls``; raises :class:`RecordError` when it has none."""
        for base in cls.__mro__:
            spec = self._specs.get(base)
            if spec is not None:
                return spec
        name_fn = getattr(cls, "redstream_name", None)
        if name_fn is None or not callable(getattr(cls, "redstream_payload", None)):
            missing = "redstream_name" if name_fn is None else "redstream_payload"
            raise RecordError(
                f"{_where(index, cls)} has no {missing}(): subclass aioredstream.Model, "
                "define redstream_name()/redstream_payload(), or aioredstream.register() it",
                index=index,
                record_type=cls,
            )
        name = name_fn()
        _check_stream_name(name, cls, index)
        return StreamSpec(name, _default_payload)


def _id_payload(record: Any) -> Any:
    if isinstance(record, dict):
        return {"id": record["id"]}
    return {"id": record.id}


def _where(index: int | None, cls: type) -> str:
    at = "" if index is None else f" at index {index}"
    return f"record{at} of type {cls.__module__}.{cls.__qualname__}"


def _check_stream_name(name: object, cls: type, index: int | None = None) -> None:
    try:
        check_name(name)
    except Exception as exc:
        raise RecordError(
            f"{_where(index, cls)} has a bad stream name: {exc}", index=index, record_type=cls
        ) from None
    assert isinstance(name, str)
    if name.endswith(DELAY_SUFFIX):
        raise RecordError(
            f"{_where(index, cls)} has stream name {name!r}, which ends in {DELAY_SUFFIX!r} "
            "and would collide with another stream's delay stream",
            index=index,
            record_type=cls,
        )


default_registry = Registry()
register = default_registry.register
