"""Progress on stderr for long one-shot commands (``aioredstream backfill``).

On a terminal: one line redrawn in place, at most 10 times a second::

     45% |#########           | 45,000/100,000 rows  12,345 rows/s  ETA 0:00:04

Elsewhere (a log file, a CI job, a pipe): a line at every 10% done, so a log shows
that the command is alive without a line per batch.

Our own, not tqdm or rich: the runtime dependencies stay redis, anyio and inflection,
a bar behind an optional extra would show for some installs only, and the log mode
(which neither library prints as such) is needed anyway. It is 60 lines.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["ProgressDisplay"]

_WIDTH = 20  # characters of the bar
_REDRAW_S = 0.1


class ProgressDisplay:
    """``progress(done, total)`` as a bar (``tty``) or a line every 10% (not ``tty``)."""

    def __init__(
        self, out: TextIO, *, tty: bool, label: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._out = out
        self._tty = tty
        self._label = label
        self._clock = clock
        self._started = clock()
        self._drawn_at: float | None = None
        self._tenths = 0  # the 10% steps already printed (log mode)

    def __call__(self, done: int, total: int) -> None:
        now = self._clock()
        if self._tty:
            final = done >= total
            if final or self._drawn_at is None or now - self._drawn_at >= _REDRAW_S:
                self._out.write(f"\r{self.bar(done, total, now)}\x1b[K")
                self._out.flush()
                self._drawn_at = now
            return
        tenths = 10 * done // total if total else 0
        if tenths > self._tenths:
            self._tenths = tenths
            rate = self._rate(done, now)
            self._out.write(
                f"{self._label}: {10 * tenths}% ({done:,} of {total:,} rows, {rate:,.0f} rows/s)\n"
            )
            self._out.flush()

    def bar(self, done: int, total: int, now: float) -> str:
        share = done / total if total else 1.0
        filled = round(_WIDTH * share)
        rate = self._rate(done, now)
        eta = _clock_time((total - done) / rate) if rate > 0 else "?"
        return (
            f"{share:4.0%} |{'#' * filled}{' ' * (_WIDTH - filled)}| {done:,}/{total:,} rows  "
            f"{rate:,.0f} rows/s  ETA {eta}"
        )

    def close(self) -> None:
        """End the bar's line, if one was drawn."""
        if self._tty and self._drawn_at is not None:
            self._out.write("\n")
            self._out.flush()

    def _rate(self, done: int, now: float) -> float:
        elapsed = now - self._started
        return done / elapsed if elapsed > 0 else 0.0


def _clock_time(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
