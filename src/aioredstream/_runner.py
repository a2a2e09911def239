"""What the CLI's worker commands share: handler import, logging, connectivity, signals."""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
from redis.asyncio import Redis

from . import _wire
from .consumer import Handler
from .errors import ArgumentError

__all__ = ["LOG_LEVELS", "check_server", "load_handler", "log_to_stderr", "run_until_signalled"]

logger = logging.getLogger("aioredstream.cli")

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def load_handler(spec: str) -> Handler:
    """Import ``module:function`` (``function`` may be dotted) and check it is an async callable.

    The working directory is put on ``sys.path`` first, as uvicorn and gunicorn do:
    a console script's own ``sys.path`` does not contain it.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ArgumentError(f"--handler {spec!r} must look like 'module:function'")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # The module itself (or a parent package) is missing, not something it imports.
        if exc.name is not None and f"{module_name}.".startswith(f"{exc.name}."):
            raise ArgumentError(f"--handler {spec!r}: no module named {exc.name!r}") from None
        raise ArgumentError(f"--handler {spec!r}: importing {module_name} failed: {exc}") from None
    except Exception as exc:  # the user's module raised while importing
        raise ArgumentError(
            f"--handler {spec!r}: importing {module_name} failed: {type(exc).__name__}: {exc}"
        ) from None
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ArgumentError(f"--handler {spec!r}: {module_name} has no {attr!r}") from None
    if not callable(target):
        raise ArgumentError(f"--handler {spec!r} is a {type(target).__name__}, not a function")
    call = target if inspect.isroutine(target) else getattr(target, "__call__", None)  # noqa: B004
    if not inspect.iscoroutinefunction(call):
        raise ArgumentError(
            f"--handler {spec!r} must be an async function taking list[Message] (async def)"
        )
    handler: Handler = target
    return handler


@contextmanager
def log_to_stderr(level: str) -> Iterator[None]:
    """Log records of ``level`` and above to stderr while the command runs.

    A handler on the root logger, removed afterwards (``main()`` may be called
    in-process, by tests or by an application), so a handler's own logging shows too.
    """
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


async def check_server(client: Redis, command: str) -> None:
    """One PING, so a wrong URL or a server that is down fails at once with exit status 1.

    Once running, the workers log server errors and retry after their backoff instead.
    """
    with _wire.translate_errors(f"{command}: PING"):
        await client.ping()


async def run_until_signalled(work: Callable[[], Coroutine[Any, Any, object]], what: str) -> int:
    """Run ``work`` until SIGINT or SIGTERM, then cancel it (the lock is released) and return 0.

    ``work`` is a worker's ``run``: it only ends by cancellation, since it logs and
    retries its own errors.
    """
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with anyio.create_task_group() as tg:
            tg.start_soon(work)
            logger.info("%s running; Ctrl-C or SIGTERM stops it", what)
            async for signum in signals:
                logger.info("%s: %s received, stopping", what, signal.Signals(signum).name)
                tg.cancel_scope.cancel()
                break
    logger.info("%s stopped", what)
    return 0
