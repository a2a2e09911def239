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
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException

from .. import __version__
from .._keys import Keys, check_name
from .._sharding import stream_names
from ..errors import ArgumentError, RedstreamError
from ..send import command as _command
from ..send.wire import translate_errors
from ..workers import _dead
from ..workers._loop import check_seconds, plural
from ..workers._streams import Client, decode, parse_id
from ..workers.consumer import Consumer, Handler
from ..workers.delayer import Delayer
from ..workers.trimmer import Trimmer
from .runner import LOG_LEVELS, load_handler, log_to_stderr, run_until_signalled
from .status import Status, collect_status, find_namespaces, lag_after
from .table import format_age, render_table

__all__ = ["format_age", "main", "render_table"]

DEFAULT_URL = "redis://127.0.0.1:6379/0"

Run = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]
Work = Callable[[], Coroutine[Any, Any, object]]


def _checked(check: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse ``type`` from one of the library's checks: a bad value exits 2 with
    argparse's message, which names the flag."""

    def convert(text: str) -> Any:
        try:
            return check(text)
        except (ArgumentError, ValueError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def _seconds(text: str) -> float:
    try:
        return check_seconds(float(text), "seconds")
    except (ArgumentError, ValueError):
        raise argparse.ArgumentTypeError(f"must be seconds >= 0, got {text!r}") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an int >= 1, got {text!r}")
    return value


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"must name at least one consumer, got {text!r}")
    for name in names:
        _checked(lambda n: check_name(n, "consumer name"))(name)
    return names


def _url(text: str) -> str:
    try:
        Redis.from_url(text)  # parses only; connects to nothing
    except ValueError as exc:
        raise ArgumentError(f"{text!r} is not a usable Redis URL: {exc}") from None
    return text


def _connection_options() -> argparse.ArgumentParser:
    """--url and --namespace, shared by every subcommand that talks to Redis."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--url",
        type=_checked(_url),
        default=os.environ.get("REDIS_URL", DEFAULT_URL),
        help="redis:// or rediss:// URL (default: $REDIS_URL or %(default)s)",
    )
    parent.add_argument(
        "--namespace",
        type=_checked(lambda text: Keys(text).namespace),
        default=os.environ.get("REDSTREAM_NAMESPACE") or None,
        help="key namespace, as given to Producer(namespace=...) (default: none)",
    )
    return parent


_CLIENT_OPTIONS: dict[str, Any] = {"socket_connect_timeout": 5, "socket_timeout": 30}


def _client(args: argparse.Namespace) -> Redis:
    try:
        return Redis.from_url(args.url, **_CLIENT_OPTIONS)
    except ValueError as exc:
        raise ArgumentError(f"--url {args.url!r} is not a usable Redis URL: {exc}") from None


async def _connect(client: Redis, url: str, what: str) -> Client:
    """``client``, or a ``RedisCluster`` (``client`` closed) when it points at a cluster node.

    ``INFO cluster`` doubles as the start-up PING: a wrong URL or a server that is
    down fails here, at once, with exit status 1.
    """
    with translate_errors(what):
        info = decode(await _command.run(client, "INFO", "cluster", what=what))
        if "cluster_enabled:1" not in info.split():
            return client
        # From the URL again, so credentials and TLS carry over to every node. A database
        # other than 0 usually failed above already (SELECT refused); redis-py refuses
        # it for a cluster client in any case.
        try:
            cluster = RedisCluster.from_url(url, **_CLIENT_OPTIONS)
        except RedisClusterException as exc:
            raise ArgumentError(f"--url {url!r} points at a cluster node: {exc}") from None
        await client.aclose()
        try:
            await cluster.initialize()
        except BaseException:
            await cluster.aclose()
            raise
        return cluster


@asynccontextmanager
async def _connected(args: argparse.Namespace) -> AsyncIterator[tuple[Client, Keys]]:
    """A client on ``--url`` (a ``RedisCluster`` on a cluster node) and the key layout
    that goes with it, for the one-shot commands; the client is closed afterwards."""
    plain = _client(args)
    client: Client = plain
    try:
        client = await _connect(plain, args.url, args.command)
        yield client, Keys(args.namespace, hash_tags=isinstance(client, RedisCluster))
    finally:
        await client.aclose()


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
    output = status.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON instead of a table")
    output.add_argument(
        "--prometheus",
        action="store_true",
        help="print the Prometheus text exposition format (extra 'prometheus')",
    )
    status.set_defaults(run=_status)


async def _read_status(args: argparse.Namespace) -> tuple[Status, list[str]]:
    """The report, and when it is empty without --namespace, the namespaces that have streams."""
    async with _connected(args) as (client, _):
        report = await collect_status(client, _keys(args))  # either key layout
        elsewhere: list[str] = []
        if not report.streams and args.namespace is None:
            with translate_errors("status"):
                elsewhere = await find_namespaces(client)
    return report, elsewhere


async def _status(args: argparse.Namespace) -> int:
    if args.prometheus:
        exposition = _prometheus().exposition
    report, elsewhere = await _read_status(args)
    if args.prometheus:
        sys.stdout.write(exposition(report))
    elif args.json:
        json.dump({**report.to_dict(), "namespaces_with_streams": elsewhere}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        render_table(report, sys.stdout)
        if elsewhere:
            names = ", ".join(elsewhere)
            sys.stdout.write(
                f"streams exist in {plural(len(elsewhere), 'namespace')}: {names} "
                "(aioredstream status --namespace NAME)\n"
            )
    return 0


def _prometheus() -> Any:
    try:
        from ..integrations import prometheus
    except ImportError as exc:
        raise ArgumentError(
            f"--prometheus and exporter need prometheus-client ({exc}): "
            "pip install 'aioredstream[prometheus]'"
        ) from None
    return prometheus


# -- offset ------------------------------------------------------------------------------


def _add_offset(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    offset = commands.add_parser(
        "offset",
        help="show or move a consumer's committed offset",
        description="Show (get) or move (set) the committed offset of consumer CONSUMER "
        "of STREAM. Moving it skips entries (forward) or hands them to the consumer again "
        "(backward), so 'set' refuses either without --force and says how many entries "
        "that are. Stop the consumer first: its next commit would overwrite the offset.",
    )
    actions = offset.add_subparsers(title="actions", required=True, metavar="ACTION")
    for name, help_text in (("get", "print the offset"), ("set", "move the offset to ID")):
        action = actions.add_parser(name, parents=parents, help=help_text)
        action.add_argument("stream", metavar="STREAM", type=_checked(check_name))
        action.add_argument(
            "consumer",
            metavar="CONSUMER",
            type=_checked(lambda text: check_name(text, "consumer name")),
        )
        if name == "set":
            action.add_argument("id", metavar="ID", type=_checked(_entry_id), help="e.g. 0-0")
            action.add_argument("--force", action="store_true", help="move it anyway")
        action.set_defaults(run=_offset, action=name, command=f"offset {name}")


def _entry_id(text: str) -> str:
    ms, seq = parse_id(text)
    return f"{ms}-{seq}"


async def _offset(args: argparse.Namespace) -> int:
    async with _connected(args) as (client, layout):
        stream_key, offset_key = (
            layout.stream(args.stream),
            layout.offset(args.stream, args.consumer),
        )
        with translate_errors(args.command):
            raw = await _command.run(client, "GET", offset_key, key=offset_key)
            current = None if raw is None else decode(raw)
            if args.action == "get":
                print(current if current is not None else "(none: it never committed)")
                return 0
            return await _move_offset(args, client, stream_key, offset_key, current)


async def _move_offset(
    args: argparse.Namespace, client: Client, stream_key: str, offset_key: str, current: str | None
) -> int:
    before, _ = await lag_after(client, stream_key, current or "0-0")
    after, exact = await lag_after(client, stream_key, args.id)
    moved = before - after
    what = f"consumer {args.consumer} of {args.stream} from {current or '(none)'} to {args.id}"
    bound = "" if exact else "at least "
    effect = (
        f"skips {bound}{plural(moved, 'entry', 'entries')}"
        if moved > 0
        else f"hands {bound}{plural(-moved, 'entry', 'entries')} to it again"
    )
    if current == args.id:
        print(f"offset of {args.consumer} on {args.stream} is {args.id} already")
        return 0
    if not args.force:
        raise ArgumentError(f"moving {what} {effect}; pass --force to do it")
    await _command.run(client, "SET", offset_key, args.id, key=offset_key)
    print(f"moved {what}: {effect}")
    return 0


# -- dead letters ------------------------------------------------------------------------


def _add_dead(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    dead = commands.add_parser(
        "dead",
        help="list, replay or drop the dead letters of a stream",
        description="Dead letters are the messages a consumer with dead_letter=True gave "
        "up on, kept in STREAM.dead with their error. 'replay' copies them back to "
        "STREAM (then deletes them), 'drop' deletes them.",
    )
    actions = dead.add_subparsers(title="actions", required=True, metavar="ACTION")
    for name, help_text in (
        ("list", "print them: id, original id, attempts, error, payload"),
        ("replay", "copy IDs (or --all) back to STREAM, then delete them"),
        ("drop", "delete IDs (or --all)"),
    ):
        action = actions.add_parser(name, parents=parents, help=help_text)
        action.add_argument("stream", metavar="STREAM", type=_checked(check_name))
        if name != "list":
            action.add_argument("ids", metavar="ID", nargs="*", type=_checked(_entry_id))
            action.add_argument("--all", action="store_true", help="every dead letter")
        action.set_defaults(run=_dead_letters, action=name, command=f"dead {name}")


async def _dead_letters(args: argparse.Namespace) -> int:
    if args.action != "list" and not args.ids and not args.all:
        raise ArgumentError(f"dead {args.action}: name the IDs to {args.action}, or --all")
    async with _connected(args) as (client, keys):
        with translate_errors(args.command):
            letters = await _dead.dead_letters(client, keys, args.stream)
            if args.action == "list":
                print("ID  ORIGINAL ID  ATTEMPTS  CONSUMER  ERROR  PAYLOAD")
                for d in letters:
                    error = d.error.splitlines()[0] if d.error else "-"
                    print(
                        f"{d.id}  {d.original_id}  {d.attempts}  {d.consumer}  {error}  {d.payload}"
                    )
                return 0
            ids = [d.id for d in letters] if args.all else args.ids
            if args.action == "replay":
                count = await _dead.replay(client, keys, args.stream, ids)
                print(f"replayed {plural(count, 'dead letter')} to {args.stream}")
            else:
                count = await _dead.drop(client, keys, args.stream, ids)
                print(f"dropped {plural(count, 'dead letter')} of {args.stream}")
            return 0


# -- exporter ----------------------------------------------------------------------------


def _add_exporter(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    exporter = commands.add_parser(
        "exporter",
        parents=parents,
        help="serve stream backlog and consumer lag at /metrics for Prometheus",
        description="Serves what 'status --prometheus' prints at http://HOST:PORT/metrics, "
        "read afresh from the server on every scrape, until SIGINT or SIGTERM.",
    )
    exporter.add_argument("--port", type=_port, required=True, help="port to listen on")
    exporter.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    exporter.set_defaults(run=_exporter)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 0-65535, got {text!r}")
    return value


async def _exporter(args: argparse.Namespace) -> int:
    prometheus = _prometheus()
    from prometheus_client import CollectorRegistry, start_http_server

    await _read_status(args)  # fail at once, with one line, on a bad URL or a down server

    def load() -> Status:
        # On the HTTP server's thread: a loop (and a client) of its own per scrape.
        return asyncio.run(_read_status(args))[0]

    registry = CollectorRegistry(auto_describe=False)
    registry.register(prometheus.StatusCollector(load))
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        server, thread = start_http_server(args.port, addr=args.host, registry=registry)
        try:
            url = f"http://{args.host}:{server.server_port}/metrics"
            print(f"serving {url}", file=sys.stderr, flush=True)
            async for _ in signals:
                break
        finally:
            server.shutdown()
            thread.join()
    return 0


# -- workers -----------------------------------------------------------------------------


def _worker_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "stream", metavar="STREAM", type=_checked(check_name), help="stream name, e.g. users"
    )
    parent.add_argument(
        "--shards",
        type=_positive_int,
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


def _add_delayer(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    delayer = commands.add_parser(
        "delayer",
        parents=[*parents, _worker_options()],
        help="replay delay messages older than --delay into their stream",
        description="Run the delayer of STREAM until Ctrl-C or SIGTERM.",
    )
    delayer.add_argument(
        "--delay", type=_seconds, required=True, help="age in seconds after which to replay"
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


def _add_trimmer(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    trimmer = commands.add_parser(
        "trimmer",
        parents=[*parents, _worker_options()],
        help="delete the entries every named consumer has committed",
        description="Run the trimmer of STREAM until Ctrl-C or SIGTERM.",
    )
    trimmer.add_argument(
        "--consumers",
        type=_names,
        required=True,
        help="every consumer that reads STREAM, comma-separated (e.g. indexer,cache)",
    )
    trimmer.add_argument(
        "--interval",
        type=_seconds,
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


def _add_consume(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
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
        type=_checked(lambda text: check_name(text, "consumer name")),
        required=True,
        help="consumer name (its lock and offset)",
    )
    consume.add_argument(
        "--handler",
        type=_checked(load_handler),
        required=True,
        metavar="MODULE:FUNCTION",
        help="e.g. myapp.sync:reindex",
    )
    consume.add_argument(
        "--batch-size",
        type=_positive_int,
        default=1000,
        help="most entries per batch (default: %(default)s)",
    )
    consume.set_defaults(run=_consume)


async def _consume(args: argparse.Namespace) -> int:
    def build(client: Client, stream: str) -> Work:
        consumer = Consumer(
            client,
            stream_name=stream,
            name=args.name,
            namespace=args.namespace,
            batch_size=args.batch_size,
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
    plain = _client(args)
    client: Client = plain
    try:
        work = _together([build(client, s) for s in streams])  # ArgumentError before connecting
        with log_to_stderr(args.log_level):
            connected = await _connect(plain, args.url, f"{args.command}: PING")
            if connected is not client:  # a cluster: built again for it (hash tags)
                client = connected
                work = _together([build(client, s) for s in streams])
            return await run_until_signalled(work, what)
    finally:
        await client.aclose()


# -- main --------------------------------------------------------------------------------

_COMMANDS = [
    _add_status,
    _add_exporter,
    _add_offset,
    _add_dead,
    _add_delayer,
    _add_trimmer,
    _add_consume,
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
    parents = [_connection_options()]
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
