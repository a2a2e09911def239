"""The delayer.

The public path; the code lives in `aioredstream.workers.delayer`.
"""

from __future__ import annotations

from .workers.delayer import Delayer

__all__ = ["Delayer"]
