"""Running workers until a signal (`run_workers`), and what the CLI's worker commands
share: handler import and logging."""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeAlias

import anyio

from ..errors import ArgumentError
from ..workers.consumer import Consumer, Handler
from ..workers.delayer import Delayer
from ..workers.trimmer import Trimmer

__all__ = [
    "LOG_LEVELS",
    "Runnable",
    "import_object",
    "load_handler",
    "log_to_stderr",
    "run_until_signalled",
    "run_workers",
]

logger = logging.getLogger("aioredstream.runner")
#: the command line's own lines (its start and stop)
cli_logger = logging.getLogger("aioredstream.cli")

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def load_handler(spec: str) -> Handler:
    """Import ``module:function`` (``function`` may be dotted) and check it is an async callable.

    The working directory is put on ``sys.path`` first, as uvicorn and gunicorn do:
    a console script's own ``sys.path`` does not contain it.
    """
    target = import_object(spec, "module:function")
    if not callable(target):
        raise ArgumentError(f"{spec!r} is a {type(target).__name__}, not a function")
    call = target if inspect.isroutine(target) else getattr(target, "__call__", None)  # noqa: B004
    if not inspect.iscoroutinefunction(call):
        raise ArgumentError(f"{spec!r} must be an async function taking list[Message] (async def)")
    handler: Handler = target
    return handler


def import_object(spec: str, shape: str) -> Any:
    """What ``spec`` (``module:name``, ``name`` may be dotted) names, imported from the
    working directory or the installed packages; ``shape`` words the form in errors."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ArgumentError(f"{spec!r} must look like {shape!r}")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # The module itself (or a parent package) is missing, not something it imports.
        if exc.name is not None and f"{module_name}.".startswith(f"{exc.name}."):
            raise ArgumentError(f"{spec!r}: no module named {exc.name!r}") from None
        raise ArgumentError(f"{spec!r}: importing {module_name} failed: {exc}") from None
    except Exception as exc:  # the user's module raised while importing
        raise ArgumentError(
            f"{spec!r}: importing {module_name} failed: {type(exc).__name__}: {exc}"
        ) from None
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ArgumentError(f"{spec!r}: {module_name} has no {attr!r}") from None
    return target


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


#: what `run_workers` runs: a delayer or trimmer, a (consumer, handler) pair, or
#: any coroutine function taking no arguments (``functools.partial(consumer.run, handler)``)
Runnable: TypeAlias = (
    Delayer | Trimmer | tuple[Consumer, Handler] | Callable[[], Coroutine[Any, Any, object]]
)


def _starter(worker: Runnable) -> Callable[[], Coroutine[Any, Any, object]]:
    if isinstance(worker, Delayer | Trimmer):
        return worker.run
    if isinstance(worker, tuple) and len(worker) == 2 and isinstance(worker[0], Consumer):
        consumer, handler = worker
        return functools.partial(consumer.run, handler)
    if isinstance(worker, Consumer):
        raise ArgumentError(
            "a Consumer runs with its handler: pass (consumer, handler) to run_workers"
        )
    if callable(worker):
        return worker
    raise ArgumentError(f"run_workers runs workers, got {worker!r}")


async def run_workers(
    *workers: Runnable,
    signals: Sequence[signal.Signals] = (signal.SIGINT, signal.SIGTERM),
) -> None:
    """Run ``workers`` side by side until one of ``signals`` arrives, then stop them all.

    Each worker is a [`Delayer`][aioredstream.Delayer], a [`Trimmer`][aioredstream.Trimmer],
    a ``(consumer, handler)`` pair, or a coroutine function taking no arguments.
    On a signal every worker is cancelled: it releases its lock (a standby takes over
    at once) and commits nothing its handler did not finish; then this returns. A
    worker that fails outside its own retry loop stops the others and its error
    propagates. The CLI's worker commands run on this.
    """
    starters = [_starter(worker) for worker in workers]
    if not starters:
        raise ArgumentError("run_workers needs at least one worker")
    with anyio.open_signal_receiver(*signals) as received:
        async with anyio.create_task_group() as tg:
            for start in starters:
                tg.start_soon(start)
            async for signum in received:
                logger.info("%s received, stopping", signal.Signals(signum).name)
                tg.cancel_scope.cancel()
                break


async def run_until_signalled(work: Callable[[], Coroutine[Any, Any, object]], what: str) -> int:
    """The CLI's worker commands: `run_workers` with log lines naming ``what``."""
    cli_logger.info("%s running; Ctrl-C or SIGTERM stops it", what)
    await run_workers(work)
    cli_logger.info("%s stopped", what)
    return 0
