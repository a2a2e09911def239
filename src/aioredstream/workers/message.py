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
    a Ruby producer can write), raises :class:`~aioredstream.MessageError` instead
    (workers log such entries, with the reason, and move past them rather than hand
    them to a handler).
    """

    __slots__ = ("fields", "message_id", "payload")

    message_id: str
    fields: dict[str, str]
    payload: Any

    def __init__(self, message_id: str, fields: dict[str, str]) -> None:
        self.message_id = message_id
        self.fields = fields
        raw = fields.get("payload")
        if raw is None:
            raise MessageError(
                f"stream entry {message_id} has no 'payload' field (fields: {sorted(fields)})",
                message_id=message_id,
            )
        try:
            # Fields were decoded with surrogateescape: encoding them back gives the
            # server's bytes, and json.loads on bytes refuses invalid UTF-8.
            self.payload = json.loads(raw.encode("utf-8", "surrogateescape"))
        except ValueError as exc:
            raise MessageError(
                f"stream entry {message_id} has a payload that {_why_unreadable(exc)}: "
                f"{raw[:80]!r}",
                message_id=message_id,
            ) from exc

    @property
    def raw_payload(self) -> bytes:
        """The payload exactly as stored (the delayer copies these bytes)."""
        return self.fields["payload"].encode("utf-8", "surrogateescape")

    def __repr__(self) -> str:
        return f"Message({self.message_id!r}, payload={self.payload!r})"


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
