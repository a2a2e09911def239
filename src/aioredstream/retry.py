"""Retry policies for the consumer.

The public path; the code lives in `aioredstream.workers.retry`.
"""

from __future__ import annotations

from .workers.retry import Backoff, Retry, exponential

__all__ = ["Backoff", "Retry", "exponential"]
