"""The CLI's ``dead list|replay|drop``: the dead letters of a stream (``<name>.dead``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .._validate import check_id, check_name
from ..errors import ArgumentError
from ..send.wire import translate_errors
from ..workers import _dead
from ..workers._loop import plural
from ._cli_common import checked, connected
from .table import render_rows

_ACTIONS = {
    "list": (
        "print the dead letters of STREAM",
        "Print the dead letters of STREAM, oldest first: the dead letter's id, the id the "
        "message had in STREAM, the handler calls it failed, the consumer and the error.",
    ),
    "replay": (
        "copy dead letters back to STREAM, then delete them",
        "Copy the dead letters ID ... (or --all) back to the end of STREAM, where every "
        "consumer reads them again, then delete them. Fix the handler (or the data) first. "
        "An ID that is not a dead letter of STREAM is an error, and nothing is replayed.",
    ),
    "drop": (
        "delete dead letters",
        "Delete the dead letters ID ... (or --all) of STREAM. An ID that is not a dead "
        "letter of STREAM is an error, and nothing is dropped.",
    ),
}


def add_dead(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    dead = commands.add_parser(
        "dead",
        help="list, replay or drop the dead letters of a stream",
        description="Dead letters are the messages a consumer with dead letters on "
        "(consume --dead-letter, Consumer(dead_letter=True)) gave up on, kept in the "
        "stream STREAM.dead with their error. 'list' prints them, 'replay' copies them "
        "back to STREAM (then deletes them), 'drop' deletes them.",
    )
    actions = dead.add_subparsers(title="actions", required=True, metavar="ACTION")
    for name, (help_text, description) in _ACTIONS.items():
        action = actions.add_parser(name, parents=parents, help=help_text, description=description)
        action.add_argument(
            "stream",
            metavar="STREAM",
            type=checked(check_name),
            help="the stream the messages came from, e.g. users",
        )
        if name != "list":
            action.add_argument(
                "ids",
                metavar="ID",
                nargs="*",
                type=checked(_dead_id),
                help="a dead letter's id, as 'dead list' prints it (first column)",
            )
            action.add_argument("--all", action="store_true", help="every dead letter of STREAM")
        action.set_defaults(
            run=_dead_letters, check=_check, parser=action, action=name, command=f"dead {name}"
        )


def _dead_id(text: str) -> str:
    return check_id(text, "dead letter id")


def _check(args: argparse.Namespace) -> None:
    if args.action == "list":
        return
    if not args.ids and not args.all:
        raise ArgumentError(f"name the IDs to {args.action}, or --all")
    if args.ids and args.all:
        raise ArgumentError(f"name the IDs to {args.action} or give --all, not both")


async def _dead_letters(args: argparse.Namespace) -> int:
    async with connected(args) as (client, keys):
        with translate_errors(args.command):
            letters = await _dead.dead_letters(client, keys, args.stream)
            if args.action == "list":
                _print_letters(args, letters)
                return 0
            ids = [d.id for d in letters] if args.all else list(dict.fromkeys(args.ids))
            present = {d.id for d in letters}
            missing = [i for i in ids if i not in present]
            if missing:
                raise ArgumentError(
                    f"{args.stream}.dead has no dead letter {', '.join(missing)} "
                    f"(aioredstream dead list {args.stream}); nothing {_done(args.action)}"
                )
            if args.action == "replay":
                count = await _dead.replay(client, keys, args.stream, ids)
                print(f"replayed {plural(count, 'dead letter')} to {args.stream}")
            else:
                count = await _dead.drop(client, keys, args.stream, ids)
                print(f"dropped {plural(count, 'dead letter')} of {args.stream}")
            return 0


def _done(action: str) -> str:
    return "replayed" if action == "replay" else "dropped"


def _print_letters(args: argparse.Namespace, letters: list[_dead.DeadLetter]) -> None:
    where = f"namespace {args.namespace!r}" if args.namespace else "no namespace"
    if not letters:
        print(f"no dead letters of {args.stream} ({where})")
        return
    print(f"{plural(len(letters), 'dead letter')} of {args.stream} ({where})")
    header = ("ID", "ORIGINAL ID", "ATTEMPTS", "CONSUMER", "ERROR", "PAYLOAD")
    rows = [
        (
            d.id,
            d.original_id,
            str(d.attempts),
            d.consumer,
            d.error.splitlines()[0] if d.error else "-",
            d.payload,
        )
        for d in letters
    ]
    render_rows(header, rows, {2}, sys.stdout)
