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

from .._validate import check_count, check_number, check_seconds
from ..errors import ArgumentError

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
    factor = check_number(factor, "factor", least=1)
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
        check_count(self.attempts, "attempts")
        if not callable(self.backoff):
            raise ArgumentError(f"backoff must be a function of the attempt, got {self.backoff!r}")
