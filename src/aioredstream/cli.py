"""The ``aioredstream`` command line.

``aioredstream status [--url URL] [--namespace NS] [--json]`` shows, per stream, its
length, its delay backlog and the age of the oldest delay message, and per consumer
its committed offset and lag.

Each subcommand is one ``_add_<name>(subparsers)`` function in ``_COMMANDS`` that
registers its arguments and an async ``run(args)``; :func:`main` parses, runs, and
turns every :class:`~aioredstream.RedstreamError` into one line on stderr and exit
status 1 (argparse's usage errors exit with 2).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TextIO

from redis.asyncio import Redis

from ._keys import Keys
from ._status import ConsumerStatus, StatusReport, collect_status
from .errors import ArgumentError, RedstreamError

__all__ = ["main"]

DEFAULT_URL = "redis://127.0.0.1:6379/0"

Run = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


def _connection_options() -> argparse.ArgumentParser:
    """--url and --namespace, shared by every subcommand that talks to Redis."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--url",
        default=os.environ.get("REDIS_URL", DEFAULT_URL),
        help="redis:// or rediss:// URL (default: $REDIS_URL or %(default)s)",
    )
    parent.add_argument(
        "--namespace",
        default=os.environ.get("REDSTREAM_NAMESPACE") or None,
        help="key namespace, as given to Producer(namespace=...) (default: none)",
    )
    return parent


def _client(args: argparse.Namespace) -> Redis:
    try:
        return Redis.from_url(args.url, socket_connect_timeout=5, socket_timeout=30)
    except ValueError as exc:
        raise ArgumentError(f"--url {args.url!r} is not a usable Redis URL: {exc}") from None


def _keys(args: argparse.Namespace) -> Keys:
    return Keys(args.namespace)


# -- status ----------------------------------------------------------------------------


def _add_status(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    status = commands.add_parser(
        "status",
        parents=parents,
        help="streams, delay backlog, consumer offsets and lag",
        description="Per stream: length, delay-stream length, age of the oldest delay "
        "message (server clock); per consumer: committed offset and lag in entries.",
    )
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.set_defaults(run=_status)


async def _status(args: argparse.Namespace) -> int:
    keys = _keys(args)
    client = _client(args)
    try:
        report = await collect_status(client, keys)
    finally:
        await client.aclose()
    if args.json:
        json.dump(report.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        render_table(report, sys.stdout)
    return 0


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


def _lag(consumer: ConsumerStatus) -> str:
    return str(consumer.lag) if consumer.lag_exact else f">={consumer.lag}"


def render_table(report: StatusReport, out: TextIO) -> None:
    """One row per stream, then one per consumer (delay-stream consumers marked)."""
    where = f"namespace {report.namespace!r}" if report.namespace else "no namespace"
    if not report.streams:
        out.write(f"no streams ({where})\n")
        return
    header = ("STREAM", "LENGTH", "DELAYED", "OLDEST DELAY", "CONSUMER", "OFFSET", "LAG")
    rows: list[tuple[str, ...]] = []
    for stream in report.streams:
        first = (
            stream.name,
            str(stream.length),
            str(stream.delay_length),
            format_age(stream.oldest_delay_age_s),
        )
        consumers = [(c.name, c.offset, _lag(c)) for c in stream.consumers]
        consumers += [(f"{c.name} (delay)", c.offset, _lag(c)) for c in stream.delay_consumers]
        rows.append(first + (consumers[0] if consumers else ("-", "", "")))
        rows.extend(("", "", "", "", *rest) for rest in consumers[1:])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    right = {1, 2, 3, 6}  # numbers and ages align right
    out.write(f"{len(report.streams)} streams ({where})\n")
    for row in [header, *rows]:
        cells = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        out.write("  ".join(cells).rstrip() + "\n")


# -- main --------------------------------------------------------------------------------

_COMMANDS = [_add_status]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aioredstream",
        description="Inspect and run aioredstream streams on a Redis server.",
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    parents = [_connection_options()]
    for add in _COMMANDS:
        add(commands, parents)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    run: Run = args.run
    try:
        return asyncio.run(run(args))
    except RedstreamError as exc:
        print(f"aioredstream: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `aioredstream status | head`: the reader left; exit quietly, as shell tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
