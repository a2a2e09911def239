"""Shared parts of the command line: argument types, connection options and the client."""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException

from .._keys import Keys
from .._validate import check_count, check_name, check_seconds
from ..errors import ArgumentError
from ..send import command as _command
from ..send.wire import translate_errors
from ..workers._streams import Client, decode

DEFAULT_URL = "redis://127.0.0.1:6379/0"

Run = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]
Work = Callable[[], Coroutine[Any, Any, object]]


def checked(check: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse ``type`` from one of the library's checks: a bad value exits 2 with
    argparse's message, which names the flag."""

    def convert(text: str) -> Any:
        try:
            return check(text)
        except (ArgumentError, ValueError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def seconds(text: str) -> float:
    try:
        return check_seconds(float(text), "seconds")
    except (ArgumentError, ValueError):
        raise argparse.ArgumentTypeError(f"must be seconds >= 0, got {text!r}") from None


def positive_int(text: str) -> int:
    try:
        return check_count(int(text), "value")
    except (ArgumentError, ValueError):
        raise argparse.ArgumentTypeError(f"must be an int >= 1, got {text!r}") from None


def name_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"must name at least one consumer, got {text!r}")
    for name in names:
        checked(lambda n: check_name(n, "consumer name"))(name)
    return names


def _url(text: str) -> str:
    try:
        Redis.from_url(text)  # parses only; connects to nothing
    except ValueError as exc:
        raise ArgumentError(f"{text!r} is not a usable Redis URL: {exc}") from None
    return text


def connection_options() -> argparse.ArgumentParser:
    """--url and --namespace, shared by every subcommand that talks to Redis."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--url",
        type=checked(_url),
        default=os.environ.get("REDIS_URL", DEFAULT_URL),
        help="redis://, rediss:// (TLS) or unix:// (a socket) URL of the server "
        "(default: $REDIS_URL or %(default)s)",
    )
    parent.add_argument(
        "--namespace",
        type=checked(lambda text: Keys(text).namespace),
        default=os.environ.get("REDSTREAM_NAMESPACE") or None,
        help="key namespace, as given to Producer(namespace=...) (default: none)",
    )
    return parent


_CLIENT_OPTIONS: dict[str, Any] = {"socket_connect_timeout": 5, "socket_timeout": 30}


def client_for(args: argparse.Namespace) -> Redis:
    try:
        return Redis.from_url(args.url, **_CLIENT_OPTIONS)
    except ValueError as exc:
        raise ArgumentError(f"--url {args.url!r} is not a usable Redis URL: {exc}") from None


async def connect(client: Redis, url: str, what: str) -> Client:
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
async def connected(args: argparse.Namespace) -> AsyncIterator[tuple[Client, Keys]]:
    """A client on ``--url`` (a ``RedisCluster`` on a cluster node) and the key layout
    that goes with it, for the one-shot commands; the client is closed afterwards."""
    plain = client_for(args)
    client: Client = plain
    try:
        client = await connect(plain, args.url, args.command)
        yield client, Keys(args.namespace, hash_tags=isinstance(client, RedisCluster))
    finally:
        await client.aclose()


def keys_of(args: argparse.Namespace) -> Keys:
    return Keys(args.namespace)


# -- status ----------------------------------------------------------------------------
