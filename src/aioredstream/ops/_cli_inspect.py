"""The CLI's inspecting commands: ``status``, ``exporter`` and ``offset`` (``dead``: _cli_dead)."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import Any

import anyio

from .._validate import check_count, check_id, check_name
from ..errors import ArgumentError
from ..send import command as _command
from ..send.wire import translate_errors
from ..workers._loop import plural
from ..workers._streams import Client, decode
from ._cli_common import checked, connected, keys_of
from .status import Status, collect_status, find_namespaces, lag_after
from .table import render_table


def add_status(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
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
    async with connected(args) as (client, _):
        report = await collect_status(client, keys_of(args))  # either key layout
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
    # MissingExtraError (one line, exit 1) without the extra: it names what to install.
    from ..integrations import prometheus

    return prometheus


# -- offset ------------------------------------------------------------------------------


def add_offset(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    offset = commands.add_parser(
        "offset",
        help="show or move a consumer's committed offset",
        description="Show (get) or move (set) the committed offset of consumer CONSUMER "
        "of STREAM. Moving it skips entries (forward) or hands them to the consumer again "
        "(backward), so 'set' refuses either without --force and says how many entries "
        "that are. Stop the consumer first: its next commit would overwrite the offset.",
    )
    actions = offset.add_subparsers(title="actions", required=True, metavar="ACTION")
    for name, (help_text, description) in _OFFSET_ACTIONS.items():
        action = actions.add_parser(name, parents=parents, help=help_text, description=description)
        action.add_argument(
            "stream", metavar="STREAM", type=checked(check_name), help="stream name, e.g. users"
        )
        action.add_argument(
            "consumer",
            metavar="CONSUMER",
            type=checked(lambda text: check_name(text, "consumer name")),
            help="consumer name, as given to consume --name or Consumer(name=...)",
        )
        if name == "set":
            action.add_argument(
                "id",
                metavar="ID",
                type=checked(_offset_id),
                help="the new offset, an entry id <ms>-<seq>: reading resumes after it "
                "(0-0: from the start)",
            )
            action.add_argument(
                "--force", action="store_true", help="move it even if that skips or repeats entries"
            )
        action.set_defaults(run=_offset, action=name, command=f"offset {name}")


_OFFSET_ACTIONS = {
    "get": (
        "print the offset",
        "Print the committed offset of consumer CONSUMER of STREAM: the id of the last "
        "entry it finished.",
    ),
    "set": (
        "move the offset to ID",
        "Move the committed offset of consumer CONSUMER of STREAM to ID. Without --force "
        "it refuses, saying how many entries that would skip or hand to it again. Stop the "
        "consumer first: its next commit would overwrite the offset.",
    ),
}


def _offset_id(text: str) -> str:
    return check_id(text, "the offset")


async def _offset(args: argparse.Namespace) -> int:
    async with connected(args) as (client, layout):
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


# -- exporter ----------------------------------------------------------------------------


def add_exporter(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
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
        return check_count(int(text), "port", least=0, most=65535)
    except (ArgumentError, ValueError):
        raise argparse.ArgumentTypeError(f"must be a port number 0-65535, got {text!r}") from None


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
