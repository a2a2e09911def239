"""What the consumer, delayer and trimmer share: the run loops (argument checks: _validate)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from .lock import Lock

__all__ = ["LOCK_WAIT_S", "plural", "run_forever", "run_step_once"]

#: the longest a standby waits on the notify list before trying the lock again (the gem's 5 s)
LOCK_WAIT_S = 5.0

T = TypeVar("T")


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``"1 entry"``, ``"2 entries"``: a count with its noun in the right number."""
    return f"{count} {noun}" if count == 1 else f"{count} {nouns or noun + 's'}"


async def run_step_once(lock: Lock, step: Callable[[], Awaitable[T]], default: T) -> T:
    """One ``step`` under the lock (the gem's ``run_once``); without the lock, stand by.

    Same-named workers calling this in a loop take turns, as the gem's do: when a
    release woke a standby, the releaser's next call waits for the next release
    instead of racing the standby for the lock (a race the releaser, one round
    trip ahead, nearly always won). ``run()`` holds the lock instead (run_forever).
    """
    if lock.turn_given:
        lock.turn_given = False
        await lock.wait(LOCK_WAIT_S)
        return default
    result = default

    async def work() -> None:
        nonlocal result
        result = await step()

    if await lock.acquire(work):
        lock.turn_given = await lock.woke_a_standby()
    else:
        await lock.standby(LOCK_WAIT_S)
    return result


async def run_forever(
    lock: Lock,
    step: Callable[[], Awaitable[object]],
    *,
    logger: logging.Logger,
    what: str,
    backoff: float,
) -> None:
    """Repeat ``step`` under the lock until cancelled.

    Unlike the gem, which releases and re-takes the lock around every batch (so
    same-named workers take turns), the lock is held across steps: one worker
    works and the others stand by until it stops, fails, or vanishes. An error
    releases the lock, is logged, and is followed by ``backoff`` seconds.
    """

    async def work() -> None:
        while True:
            await step()

    last: tuple[type[BaseException], str] | None = None
    while True:
        try:
            if not await lock.acquire(work):
                await lock.standby(LOCK_WAIT_S)
        except Exception as exc:
            # The traceback once per distinct error; while the same error repeats, a line.
            seen = (type(exc), str(exc))
            extra = {"worker": what, "error": f"{type(exc).__qualname__}: {exc}"}
            if seen != last:
                logger.error(
                    "%s failed; retrying in %.1fs", what, backoff, exc_info=exc, extra=extra
                )
            else:
                logger.warning(
                    "%s failed again (%s); retrying in %.1fs",
                    what,
                    extra["error"],
                    backoff,
                    extra=extra,
                )
            last = seen
            await anyio.sleep(backoff)
