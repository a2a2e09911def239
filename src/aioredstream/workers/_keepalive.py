"""A lock holder's keep-alive: the deadline of one take, moved on by each refresh.

The body of `aioredstream.Lock.acquire` runs in a cancel scope whose deadline is
when the key may expire on the server, less a margin (see `Lock`).
A background task refreshes the key every ``refresh`` seconds and moves that deadline
on after each success; nothing else does. So the body stops in time whatever the
refresh is doing: failing, retrying, or stuck on a server that does not answer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio

from .._failures import cause

__all__ = ["KeepAlive"]

logger = logging.getLogger("aioredstream.lock")

# Waits before the retries of a failed refresh: the first at once, then growing, and
# never past the deadline (the last wait repeats).
_RETRY_WAITS_S = (0.0, 0.05, 0.1, 0.2, 0.25)


class KeepAlive:
    """Refreshes one take of the lock ``key`` and holds its deadline.

    ``refresh_once`` runs the get-or-refresh script once (``False``: another token
    holds the key); ``validity_s`` is how long after *sending* a successful one the
    body may work, ``refresh_s`` how long after it the next one is sent.
    """

    def __init__(
        self,
        key: str,
        refresh_once: Callable[[], Awaitable[bool]],
        *,
        validity_s: float,
        refresh_s: float,
    ) -> None:
        self.key = key
        self._refresh_once = refresh_once
        self._validity_s = validity_s
        self._refresh_s = refresh_s
        #: why the last attempt failed, and since when one waits for a reply: for the
        #: error that stops the work
        self._failure: str | None = None
        self._waiting_since: float | None = None

    async def keep(self, take: anyio.CancelScope, valid: anyio.CancelScope) -> None:
        """Refresh until cancelled; each success moves ``valid``'s deadline on.

        Finding another token cancels ``take``. Running out of time cancels ``valid``
        (its deadline does that anyway; this is for a clock that jumps).
        """
        while True:
            last_sent = valid.deadline - self._validity_s
            await anyio.sleep_until(last_sent + self._refresh_s)
            outcome = await self._refresh_within(valid.deadline)
            if outcome is None:
                valid.cancel()
                return
            sent, held = outcome
            if not held:
                logger.warning("lost lock %s to another holder; stopping the work", self.key)
                take.cancel()
                return
            valid.deadline = sent + self._validity_s

    async def _refresh_within(self, deadline: float) -> tuple[float, bool] | None:
        """Refresh until an attempt answers before ``deadline``: (when the answered
        attempt was sent, whether we hold the lock); ``None`` when time ran out."""
        failures = 0
        while True:
            sent = anyio.current_time()
            left_s = deadline - sent
            if left_s <= 0:
                return None
            self._waiting_since = sent
            try:
                with anyio.fail_after(left_s):
                    held = await self._refresh_once()
            except Exception as exc:
                self._waiting_since = None
                failures += 1
                self._failure = _reason(exc, left_s, failures)
                log = logger.warning if failures == 1 else logger.debug
                log(
                    "could not refresh lock %s (%.2fs of its validity left), retrying: %s",
                    *(self.key, left_s, self._failure),
                    extra={"lock": self.key, "attempt": failures},
                )
                wait_s = _RETRY_WAITS_S[min(failures, len(_RETRY_WAITS_S)) - 1]
                await anyio.sleep(min(wait_s, max(0.0, deadline - anyio.current_time())))
                continue
            if failures:
                logger.info("refreshed lock %s after %d failed attempts", self.key, failures)
            self._failure = self._waiting_since = None
            return sent, held

    def why_not_refreshed(self) -> str:
        """Why no refresh moved the deadline on in time, in words."""
        since, failure = self._waiting_since, self._failure
        if since is None:
            return failure or "no refresh ran in time (was the event loop blocked?)"
        waiting = f"no reply to the refresh sent {anyio.current_time() - since:.2f}s before"
        return waiting if failure is None else f"{waiting}; before that, {failure}"


def _reason(exc: Exception, left_s: float, failures: int) -> str:
    """Why a refresh attempt failed, in words (a bare ``TimeoutError`` has none)."""
    if isinstance(exc, TimeoutError) and not str(exc):
        text = f"no reply within the {left_s:.2f}s left"
    else:
        text = cause(exc)
    return text if failures == 1 else f"{text} ({failures} attempts)"
