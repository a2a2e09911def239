"""A message read from a stream.

The public path; the code lives in `aioredstream.workers.message`.
"""

from __future__ import annotations

from .workers.message import Message

__all__ = ["Message"]
