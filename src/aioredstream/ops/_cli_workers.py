"""The CLI's worker commands: ``delayer``, ``trimmer`` and ``consume``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import anyio

from .._sharding import stream_names
from .._validate import check_name
from ..errors import ArgumentError
from ..workers._streams import Client
from ..workers.consumer import Consumer, Handler
from ..workers.delayer import Delayer
from ..workers.retry import Backoff, Retry, exponential
from ..workers.trimmer import Trimmer
from ._cli_common import Work, checked, client_for, connect, name_list, positive_int, seconds
from .runner import LOG_LEVELS, load_handler, log_to_stderr, run_until_signalled


def _worker_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "stream", metavar="STREAM", type=checked(check_name), help="stream name, e.g. users"
    )
    parent.add_argument(
        "--shards",
        type=positive_int,
        default=None,
        metavar="N",
        help="STREAM is sharded over N streams: run one worker on each of STREAM-0 .. STREAM-<N-1>",
    )
    parent.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default="INFO",
        help="log to stderr from this level on (default: %(default)s)",
    )
    return parent


def add_delayer(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    delayer = commands.add_parser(
        "delayer",
        parents=[*parents, _worker_options()],
        help="replay delay messages older than --delay into their stream",
        description="Run the delayer of STREAM until Ctrl-C or SIGTERM.",
    )
    delayer.add_argument(
        "--delay", type=seconds, required=True, help="age in seconds after which to replay"
    )
    delayer.set_defaults(run=_delayer, check=_check_delayer, parser=delayer)


def _check_delayer(args: argparse.Namespace) -> None:
    for stream in stream_names(args.stream, args.shards):
        Delayer.check_stream_name(stream)


async def _delayer(args: argparse.Namespace) -> int:
    def build(client: Client, stream: str) -> Work:
        delayer = Delayer(client, stream_name=stream, delay=args.delay, namespace=args.namespace)
        return delayer.run

    return await _run_worker(args, build, "delayer")


def add_trimmer(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    trimmer = commands.add_parser(
        "trimmer",
        parents=[*parents, _worker_options()],
        help="delete the entries every named consumer has committed",
        description="Run the trimmer of STREAM until Ctrl-C or SIGTERM.",
    )
    trimmer.add_argument(
        "--consumers",
        type=name_list,
        required=True,
        help="every consumer that reads STREAM, comma-separated (e.g. indexer,cache)",
    )
    trimmer.add_argument(
        "--interval",
        type=seconds,
        default=30.0,
        help="seconds to sleep when nothing was trimmed (default: %(default)s)",
    )
    trimmer.set_defaults(run=_trimmer)


async def _trimmer(args: argparse.Namespace) -> int:
    names: list[str] = args.consumers

    def build(client: Client, stream: str) -> Work:
        trimmer = Trimmer(
            client,
            stream_name=stream,
            consumer_names=names,
            interval=args.interval,
            namespace=args.namespace,
        )
        return trimmer.run

    return await _run_worker(args, build, "trimmer")


def add_consume(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    consume = commands.add_parser(
        "consume",
        parents=[*parents, _worker_options()],
        help="hand batches of STREAM to an async handler and commit them",
        description="Run consumer NAME of STREAM until Ctrl-C or SIGTERM. The handler is "
        "an async function taking list[aioredstream.Message], imported from the working "
        "directory or the installed packages.",
    )
    consume.add_argument(
        "--name",
        type=checked(lambda text: check_name(text, "consumer name")),
        required=True,
        help="consumer name (its lock and offset)",
    )
    consume.add_argument(
        "--handler",
        type=checked(load_handler),
        required=True,
        metavar="MODULE:FUNCTION",
        help="e.g. myapp.sync:reindex",
    )
    consume.add_argument(
        "--batch-size",
        type=positive_int,
        default=1000,
        help="most entries per batch (default: %(default)s)",
    )
    _retry_options(consume)
    consume.set_defaults(run=_consume, check=_check_consume, parser=consume)


def _retry_options(consume: argparse.ArgumentParser) -> None:
    """Consumer(retry=Retry(attempts, backoff), dead_letter=...), flag for parameter."""
    group = consume.add_argument_group(
        "retries and dead letters",
        "Without these, a failing batch is retried every 5 s until it succeeds (as the "
        "gem does). With --retry-attempts or --retry-backoff the consumer retries as "
        "Consumer(retry=Retry(attempts=N, backoff=exponential(FIRST, MOST))) does.",
    )
    group.add_argument(
        "--retry-attempts",
        type=positive_int,
        metavar="N",
        help=f"handler calls for one batch before giving up on it (default: {Retry.attempts})",
    )
    group.add_argument(
        "--retry-backoff",
        type=checked(_backoff),
        metavar="FIRST,MOST",
        help="wait FIRST seconds after the first failure, doubling up to MOST, "
        "jittered (default: 0.5,60)",
    )
    group.add_argument(
        "--dead-letter",
        action="store_true",
        help="after the last attempt, copy each message that fails on its own to "
        "STREAM.dead (see 'aioredstream dead') and go on; needs --retry-attempts",
    )


def _backoff(text: str) -> Backoff:
    try:
        first_s, most_s = (float(part) for part in text.split(","))
    except ValueError:
        raise ArgumentError(f"must be FIRST,MOST in seconds (e.g. 0.5,60), got {text!r}") from None
    return exponential(first_s, most_s)


def _check_consume(args: argparse.Namespace) -> None:
    """``args.retry``: the Retry the flags ask for, ``None`` without any of them."""
    given = {"attempts": args.retry_attempts, "backoff": args.retry_backoff}
    chosen = {name: value for name, value in given.items() if value is not None}
    args.retry = Retry(**chosen) if chosen else None
    if args.dead_letter and args.retry is None:
        raise ArgumentError(
            "--dead-letter needs --retry-attempts N: after how many attempts to give up"
        )


async def _consume(args: argparse.Namespace) -> int:
    def build(client: Client, stream: str) -> Work:
        consumer = Consumer(
            client,
            stream_name=stream,
            name=args.name,
            namespace=args.namespace,
            batch_size=args.batch_size,
            retry=args.retry,
            dead_letter=args.dead_letter,
        )
        handler: Handler = args.handler
        return lambda: consumer.run(handler)

    return await _run_worker(args, build, f"consumer {args.name}")


def _together(works: list[Work]) -> Work:
    """One worker per shard in one task group: each keeps its own lock and backoff."""
    if len(works) == 1:
        return works[0]

    async def run() -> None:
        async with anyio.create_task_group() as tg:
            for work in works:
                tg.start_soon(work)

    return run


async def _run_worker(
    args: argparse.Namespace, build: Callable[[Client, str], Work], kind: str
) -> int:
    """Check the arguments, PING, then run until a signal; the client is closed in any case."""
    streams = stream_names(args.stream, args.shards)
    what = f"{kind} on {args.stream}"
    if args.shards is not None:
        what += f" ({args.shards} shards: {streams[0]} .. {streams[-1]})"
    plain = client_for(args)
    client: Client = plain
    try:
        work = _together([build(client, s) for s in streams])  # ArgumentError before connecting
        with log_to_stderr(args.log_level):
            connected = await connect(plain, args.url, f"{args.command}: PING")
            if connected is not client:  # a cluster: built again for it (hash tags)
                client = connected
                work = _together([build(client, s) for s in streams])
            return await run_until_signalled(work, what)
    finally:
        await client.aclose()


# -- main --------------------------------------------------------------------------------
