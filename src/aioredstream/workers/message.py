"""One stream entry as a worker hands it to a handler."""

from __future__ import annotations

import json
import sys
from typing import Any

from ..errors import MessageError

__all__ = ["Message"]


class Message:
    """A stream entry: its id, its fields and its parsed ``payload``.

    The payload is parsed when the message is built, so a ``Message`` always has
    one: an entry without a ``payload`` field, or whose payload is not UTF-8
    JSON (or holds an integer longer than Python's int max str digits limit, which
    a Ruby producer can write), raises [`MessageError`][aioredstream.errors.MessageError] instead
    (workers log such entries, with the reason, and move past them rather than hand
    them to a handler).
    """

    __slots__ = ("_fields", "_raw", "message_id", "payload")

    message_id: str
    payload: Any
    #: the fields as given, or the server's flat ``[field, value, ...]`` list until read
    _fields: dict[str, str] | list[bytes]
    #: the payload's bytes as the server holds them
    _raw: bytes

    def __init__(self, message_id: str, fields: dict[str, str]) -> None:
        raw = fields.get("payload")
        if raw is None:
            raise MessageError(
                f"stream entry {message_id} has no 'payload' field (fields: {sorted(fields)})",
                message_id=message_id,
            )
        # Fields were decoded with surrogateescape: encoding them back gives the
        # server's bytes, and json.loads on bytes refuses invalid UTF-8.
        self._init(message_id, fields, raw.encode("utf-8", "surrogateescape"))

    def _init(self, message_id: str, fields: dict[str, str] | list[bytes], raw: bytes) -> None:
        self.message_id = message_id
        self._fields = fields
        self._raw = raw
        try:
            self.payload = loads(raw)
        except ValueError as exc:
            raise MessageError(
                f"stream entry {message_id} has a payload that {_why_unreadable(exc)}: "
                f"{raw.decode('utf-8', 'surrogateescape')[:80]!r}",
                message_id=message_id,
            ) from exc

    @classmethod
    def from_entry(cls, message_id: str, fields: Any) -> Message:
        """The message of one raw entry (``fields`` as the server sent them: a flat
        ``[field, value, ...]`` list of bytes, or a dict), without decoding its fields
        to ``str`` unless `fields` is read;
        [`MessageError`][aioredstream.errors.MessageError] as the constructor raises it."""
        if fields.__class__ is list and len(fields) == 2 and fields[0] == b"payload":
            value = fields[1]
            if value.__class__ is bytes:
                message = cls.__new__(cls)
                message._init(message_id, fields, value)
                return message
        return cls(message_id, decode_fields(fields))

    @property
    def fields(self) -> dict[str, str]:
        """The entry's fields, ``str`` to ``str`` (bytes that are not UTF-8 surrogate-escaped)."""
        fields = self._fields
        if isinstance(fields, list):
            fields = self._fields = decode_fields(fields)
        return fields

    @fields.setter
    def fields(self, fields: dict[str, str]) -> None:
        self._fields = fields

    @property
    def raw_payload(self) -> bytes:
        """The payload exactly as stored (the delayer copies these bytes)."""
        return self._raw

    def __repr__(self) -> str:
        return f"Message({self.message_id!r}, payload={self.payload!r})"


_decode_text = json.JSONDecoder().decode


def loads(raw: bytes) -> Any:
    """``json.loads(raw)``, exactly, without its per-call encoding detection where it
    cannot matter: a first byte that is ASCII and not NUL, a second that is not NUL, is
    UTF-8 to ``json.detect_encoding``; valid UTF-8 then decodes as ``json.loads``
    decodes it, and ``json.loads`` on that text parses with this same default decoder.
    Anything else (UTF-16/32, a BOM, bytes that are not UTF-8) goes to ``json.loads``.
    """
    if raw and 0 < raw[0] < 0x80 and (len(raw) < 2 or raw[1]):
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            pass
        else:
            return _decode_text(text)
    return json.loads(raw)


def _why_unreadable(exc: ValueError) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "is not UTF-8 JSON (not UTF-8)"
    if isinstance(exc, json.JSONDecodeError):
        return f"is not UTF-8 JSON ({exc})"
    if "integer string conversion" in str(exc):
        # A Ruby producer may write any Integer; Python refuses to parse one longer than
        # sys.get_int_max_str_digits() digits (4300 by default, CVE-2020-10735).
        return (
            f"has an integer longer than Python's int max str digits limit "
            f"({sys.get_int_max_str_digits()}; raise it with sys.set_int_max_str_digits() "
            f"or PYTHONINTMAXSTRDIGITS to read it): {exc}"
        )
    return f"cannot be parsed ({exc})"


def decode_fields(raw: Any) -> dict[str, str]:
    """Entry fields (a flat ``[field, value, ...]`` list as the server sends them, or a
    dict; ``None`` for a deleted entry) as ``str`` to ``str``."""
    if not raw:
        return {}
    if isinstance(raw, list):
        raw = dict(zip(raw[::2], raw[1::2], strict=True))
    return {
        (k.decode("utf-8", "surrogateescape") if isinstance(k, bytes) else k): (
            v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else v
        )
        for k, v in raw.items()
    }
