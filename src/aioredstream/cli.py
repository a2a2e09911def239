"""The ``aioredstream`` command line.

``aioredstream status [--url URL] [--namespace NS] [--json]`` shows, per stream, its
length, its delay backlog and the age of the oldest delay message, and per consumer
its committed offset and lag.

``aioredstream delayer STREAM --delay S``, ``aioredstream trimmer STREAM --consumers a,b``
and ``aioredstream consume STREAM --name NAME --handler module:function`` run one worker
until SIGINT or SIGTERM, then release its lock and exit with 0. They check their
arguments, import the handler and PING the server before starting, so a bad value, a
missing handler, a wrong URL or a server that is down exit with 1 at once; once running,
server errors are logged and retried (the worker's backoff), not fatal.

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
from ._runner import LOG_LEVELS, check_server, load_handler, log_to_stderr, run_until_signalled
from ._status import ConsumerStatus, StatusReport, collect_status
from .consumer import Consumer
from .delayer import Delayer
from .errors import ArgumentError, RedstreamError
from .trimmer import Trimmer

__all__ = ["main"]

DEFAULT_URL = "redis://127.0.0.1:6379/0"

Run = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]
Work = Callable[[], Coroutine[Any, Any, object]]


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


# -- workers -----------------------------------------------------------------------------


def _worker_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("stream", metavar="STREAM", help="stream name, e.g. users")
    parent.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default="INFO",
        help="log to stderr from this level on (default: %(default)s)",
    )
    return parent


def _add_delayer(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    delayer = commands.add_parser(
        "delayer",
        parents=[*parents, _worker_options()],
        help="replay delay messages older than --delay into their stream",
        description="Run the delayer of STREAM until Ctrl-C or SIGTERM.",
    )
    delayer.add_argument(
        "--delay", type=float, required=True, help="age in seconds after which to replay"
    )
    delayer.set_defaults(run=_delayer)


async def _delayer(args: argparse.Namespace) -> int:
    def build(client: Redis) -> Work:
        delayer = Delayer(
            client, stream_name=args.stream, delay=args.delay, namespace=args.namespace
        )
        return delayer.run

    return await _run_worker(args, build, f"delayer on {args.stream}")


def _add_trimmer(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    trimmer = commands.add_parser(
        "trimmer",
        parents=[*parents, _worker_options()],
        help="delete the entries every named consumer has committed",
        description="Run the trimmer of STREAM until Ctrl-C or SIGTERM.",
    )
    trimmer.add_argument(
        "--consumers",
        required=True,
        help="every consumer that reads STREAM, comma-separated (e.g. indexer,cache)",
    )
    trimmer.add_argument(
        "--interval",
        type=float,
        default=30.0,
        help="seconds to sleep when nothing was trimmed (default: %(default)s)",
    )
    trimmer.set_defaults(run=_trimmer)


async def _trimmer(args: argparse.Namespace) -> int:
    names = [name.strip() for name in args.consumers.split(",") if name.strip()]

    def build(client: Redis) -> Work:
        trimmer = Trimmer(
            client,
            stream_name=args.stream,
            consumer_names=names,
            interval=args.interval,
            namespace=args.namespace,
        )
        return trimmer.run

    return await _run_worker(args, build, f"trimmer on {args.stream}")


def _add_consume(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    consume = commands.add_parser(
        "consume",
        parents=[*parents, _worker_options()],
        help="hand batches of STREAM to an async handler and commit them",
        description="Run consumer NAME of STREAM until Ctrl-C or SIGTERM. The handler is "
        "an async function taking list[aioredstream.Message], imported from the working "
        "directory or the installed packages.",
    )
    consume.add_argument("--name", required=True, help="consumer name (its lock and offset)")
    consume.add_argument(
        "--handler", required=True, metavar="MODULE:FUNCTION", help="e.g. myapp.sync:reindex"
    )
    consume.add_argument(
        "--batch-size", type=int, default=1000, help="most entries per batch (default: %(default)s)"
    )
    consume.set_defaults(run=_consume)


async def _consume(args: argparse.Namespace) -> int:
    def build(client: Redis) -> Work:
        consumer = Consumer(
            client,
            stream_name=args.stream,
            name=args.name,
            namespace=args.namespace,
            batch_size=args.batch_size,
        )
        handler = load_handler(args.handler)
        return lambda: consumer.run(handler)

    return await _run_worker(args, build, f"consumer {args.name} on {args.stream}")


async def _run_worker(args: argparse.Namespace, build: Callable[[Redis], Work], what: str) -> int:
    """Check the arguments, PING, then run until a signal; the client is closed in any case."""
    client = _client(args)
    try:
        work = build(client)  # ArgumentError before any connection
        with log_to_stderr(args.log_level):
            await check_server(client, args.command)
            return await run_until_signalled(work, what)
    finally:
        await client.aclose()


# -- main --------------------------------------------------------------------------------

_COMMANDS = [_add_status, _add_delayer, _add_trimmer, _add_consume]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aioredstream",
        description="Inspect and run aioredstream streams on a Redis server.",
    )
    commands = parser.add_subparsers(
        title="commands", required=True, metavar="COMMAND", dest="command"
    )
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
