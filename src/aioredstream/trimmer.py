"""The trimmer.

The public path; the code lives in `aioredstream.workers.trimmer`.
"""

from __future__ import annotations

from .workers.trimmer import Trimmer

__all__ = ["Trimmer"]
