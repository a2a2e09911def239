"""``consume --retry-attempts/--retry-backoff/--dead-letter`` are ``Consumer(retry=Retry(
attempts, exponential(FIRST, MOST)), dead_letter=...)``, flag for parameter."""

from __future__ import annotations

import argparse

import pytest

from aioredstream import Retry
from aioredstream.ops.cli import build_parser

CONSUME = ["consume", "users", "--name", "x", "--handler", "tests.cli_handlers:record"]


def parsed(*flags: str) -> argparse.Namespace:
    args = build_parser().parse_args([*CONSUME, *flags])
    args.check(args)
    return args


def waits(retry: Retry, failures: int) -> list[float]:
    return [retry.backoff(failures) for _ in range(200)]


def test_without_retry_flags_the_consumer_retries_as_the_gem_does() -> None:
    args = parsed()
    assert (args.retry, args.dead_letter) == (None, False)


def test_retry_attempts_alone_keeps_the_default_backoff() -> None:
    args = parsed("--retry-attempts", "3", "--dead-letter")
    assert (args.retry.attempts, args.dead_letter) == (3, True)
    assert all(0.25 <= w <= 0.5 for w in waits(args.retry, 1))  # exponential(0.5, 60)
    assert all(30 <= w <= 60 for w in waits(args.retry, 20))


@pytest.mark.parametrize(
    ("flags", "attempts"), [([], Retry.attempts), (["--retry-attempts", "2"], 2)]
)
def test_retry_backoff_is_exponential_from_first_to_most(flags: list[str], attempts: int) -> None:
    args = parsed("--retry-backoff", "1,4", *flags)
    assert args.retry.attempts == attempts
    assert all(0.5 <= w <= 1 for w in waits(args.retry, 1))
    assert all(1 <= w <= 2 for w in waits(args.retry, 2))
    assert all(2 <= w <= 4 for w in waits(args.retry, 9))  # capped at MOST
