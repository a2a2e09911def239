"""The consumer.

The public path; the code lives in `aioredstream.workers.consumer`.
"""

from __future__ import annotations

from .workers.consumer import Consumer, Handler

__all__ = ["Consumer", "Handler"]
