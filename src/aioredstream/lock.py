"""The worker lock.

The public path; the code lives in `aioredstream.workers.lock`.
"""

from __future__ import annotations

from .workers.lock import Lock

__all__ = ["Lock"]
