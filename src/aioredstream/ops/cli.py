"""The ``aioredstream`` command line.

``aioredstream status [--url URL] [--namespace NS] [--json]`` shows, per stream, its
length, its delay backlog and the age of the oldest delay message, and per consumer
its committed offset and lag; shards (``users-0`` ...) are summed up under their name.

Every command asks the server at ``--url`` for ``INFO cluster``: a cluster node makes
it use a ``RedisCluster`` client (every primary, the hash-tag layout).

``aioredstream delayer STREAM --delay S``, ``aioredstream trimmer STREAM --consumers a,b``
and ``aioredstream consume STREAM --name NAME --handler module:function`` run one worker
(with ``--shards N``: one per shard ``STREAM-0`` ... ``STREAM-<N-1>``, in one process)
until SIGINT or SIGTERM, then release its lock and exit with 0. They check their
arguments and import the handler before connecting (a bad value or a missing handler
exits with 2), then PING the server (a wrong URL or a server that is down exits with 1
at once); once running, server errors are logged and retried (the worker's backoff),
not fatal.

Each subcommand is one ``add_<name>(subparsers)`` function (in ``_cli_inspect``,
``_cli_dead``, ``_cli_backfill`` or ``_cli_workers``, sharing ``_cli_common``), listed
in ``_COMMANDS``, that registers its arguments, an optional ``check(args)`` and an
async ``run(args)``.
``main`` parses and checks (argparse's usage errors, and an ``ArgumentError`` from
``check``, exit with 2: the command line is wrong), then runs, turning every
``RedstreamError`` into one line on stderr and exit status 1 (docs/cli.md, "Exit status").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Sequence

from .._version import __version__
from ..errors import ArgumentError, RedstreamError
from ._cli_backfill import add_backfill
from ._cli_common import Run, connection_options
from ._cli_dead import add_dead
from ._cli_inspect import add_exporter, add_offset, add_status
from ._cli_workers import add_consume, add_delayer, add_trimmer

# -- main --------------------------------------------------------------------------------

_COMMANDS = [
    add_status,
    add_exporter,
    add_offset,
    add_dead,
    add_delayer,
    add_trimmer,
    add_consume,
    add_backfill,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aioredstream",
        description="Inspect and run aioredstream streams on a Redis server.",
    )
    parser.add_argument("--version", action="version", version=f"aioredstream {__version__}")
    commands = parser.add_subparsers(
        title="commands", required=True, metavar="COMMAND", dest="command"
    )
    parents = [connection_options()]
    for add in _COMMANDS:
        add(commands, parents)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    check: Callable[[argparse.Namespace], None] | None = getattr(args, "check", None)
    if check is not None:
        try:
            check(args)
        except ArgumentError as exc:
            args.parser.error(str(exc))  # exits 2, as argparse does for a bad argument
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
