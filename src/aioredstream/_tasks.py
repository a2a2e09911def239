"""Clean-up that a cancellation must not cut short."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import anyio

__all__ = ["completed"]

T = TypeVar("T")


async def completed(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` to its end even if this task is cancelled meanwhile; the
    cancellation then goes on once ``work`` is done.

    An anyio shield keeps out anyio's cancellations but not a plain ``Task.cancel()``
    (``asyncio.run``'s Ctrl-C handler, ``asyncio.timeout``, a caller's ``task.cancel()``):
    that one lands at the shielded code's next await. So ``work`` runs in a task of
    its own, which no cancellation of this one reaches.
    """
    task = asyncio.ensure_future(work)
    with anyio.CancelScope(shield=True):  # anyio's cancellations wait for it...
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:  # ...and so does a plain Task.cancel()
            await asyncio.wait({task})
            if not task.cancelled():
                task.exception()  # retrieved: the cancellation is what goes on
            raise
    return task.result()
