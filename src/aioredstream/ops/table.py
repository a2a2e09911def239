"""The table of ``aioredstream status``: one row per stream and consumer, shard totals first."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from .status import ConsumerStatus, ShardGroup, Status

__all__ = ["format_age", "render_rows", "render_table"]


def format_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    whole = int(seconds)
    if whole < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"


def render_rows(
    header: Sequence[str], rows: Sequence[Sequence[str]], right: set[int], out: TextIO
) -> None:
    """``header`` and ``rows`` in columns two spaces apart; columns ``right`` (numbers)
    align right, the others left."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        out.write("  ".join(cells).rstrip() + "\n")


def _lag(consumer: ConsumerStatus) -> str:
    return str(consumer.lag) if consumer.lag_exact else f">={consumer.lag}"


def _group_rows(group: ShardGroup) -> list[tuple[str, ...]]:
    """The totals of a sharded stream: one row, then one per consumer name."""
    lag = "" if group.lag_exact else ">="
    first = (
        f"{group.name} ({len(group.shards)} shards)",
        str(group.length),
        str(group.delay_length),
        format_age(group.oldest_delay_age_s),
        str(group.dead_letters),
    )
    consumers = [(name, "(total)", f"{lag}{total}") for name, total in group.lag.items()]
    return _with_consumers(first, consumers)


def _with_consumers(
    first: tuple[str, ...], consumers: list[tuple[str, str, str]]
) -> list[tuple[str, ...]]:
    """A stream's row with its first consumer, then one row per further consumer."""
    rows: list[tuple[str, ...]] = [first + (consumers[0] if consumers else ("-", "", ""))]
    blank = ("",) * len(first)
    rows.extend(blank + rest for rest in consumers[1:])
    return rows


def render_table(report: Status, out: TextIO) -> None:
    """One row per stream, then one per consumer (delay-stream consumers marked); DEAD
    counts the entries of the stream's dead-letter stream ``<name>.dead``.

    A sharded stream's totals come first, its shards follow, indented.
    """
    groups = {name: group for group in report.groups for name in group.shards}
    where = f"namespace {report.namespace!r}" if report.namespace else "no namespace"
    if not report.streams:
        out.write(f"no streams ({where})\n")
        return
    header = ("STREAM", "LENGTH", "DELAYED", "OLDEST DELAY", "DEAD", "CONSUMER", "OFFSET", "LAG")
    rows: list[tuple[str, ...]] = []
    for stream in report.streams:
        group = groups.get(stream.name)
        if group is not None and group.shards[0] == stream.name:
            rows.extend(_group_rows(group))
        first = (
            f"  {stream.name}" if group is not None else stream.name,
            str(stream.length),
            str(stream.delay_length),
            format_age(stream.oldest_delay_age_s),
            str(stream.dead_letters),
        )
        consumers = [(c.name, c.offset, _lag(c)) for c in stream.consumers]
        consumers += [(f"{c.name} (delay)", c.offset, _lag(c)) for c in stream.delay_consumers]
        rows.extend(_with_consumers(first, consumers))
    sharded = f", {len(report.groups)} sharded" if report.groups else ""
    count = len(report.streams)
    out.write(f"{count} stream{'' if count == 1 else 's'} ({where}{sharded})\n")
    render_rows(header, rows, {1, 2, 3, 4, 7}, out)  # numbers and ages align right
    for warning in report.warnings:
        out.write(f"warning: {warning}\n")
