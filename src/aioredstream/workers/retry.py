"""Retrying a failing batch, and what to do when the retries are used up.

By default a consumer retries a batch whose handler raised forever, with a fixed
``backoff`` (the gem's at-least-once behaviour). ``Consumer(retry=Retry(...))``
retries it ``attempts`` times with growing waits; after the last one it keeps
retrying at the longest wait, or, with ``dead_letter=True``, finds the messages that
fail on their own by bisecting the batch, copies each to the stream ``<name>.dead``
(with the error, the attempt count and its original id) and commits past it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import ArgumentError
from ._loop import check_seconds

__all__ = ["Backoff", "Retry", "exponential"]

#: seconds to wait before attempt ``n + 1`` after ``n`` failed attempts (n >= 1)
Backoff = Callable[[int], float]


def exponential(
    first: float = 0.5, most: float = 60.0, *, factor: float = 2.0, jitter: bool = True
) -> Backoff:
    """``first``, ``first * factor``, ... up to ``most`` seconds; with ``jitter``, each
    wait is drawn uniformly from its upper half, so restarted workers spread out."""
    first = check_seconds(first, "first", positive=True)
    most = check_seconds(most, "most", positive=True)
    if isinstance(factor, bool) or not isinstance(factor, int | float) or factor < 1:
        raise ArgumentError(f"factor must be a number >= 1, got {factor!r}")
    if most < first:
        raise ArgumentError(f"most ({most}) must be at least first ({first})")

    def wait(failures: int) -> float:
        seconds = min(most, first * factor ** max(failures - 1, 0))
        return random.uniform(seconds / 2, seconds) if jitter else seconds

    return wait


@dataclass(frozen=True)
class Retry:
    """How a consumer retries a batch whose handler raised.

    ``attempts`` is the number of handler calls for one batch before the consumer
    gives up on it (dead letters) or goes on at the longest wait (the default).
    """

    attempts: int = 5
    backoff: Backoff = field(default_factory=exponential)

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise ArgumentError(f"attempts must be an int >= 1, got {self.attempts!r}")
        if self.attempts < 1:
            raise ArgumentError(f"attempts must be an int >= 1, got {self.attempts!r}")
        if not callable(self.backoff):
            raise ArgumentError(f"backoff must be a function of the attempt, got {self.backoff!r}")
