"""``aioredstream <command> --help`` describes every command and every argument."""

from __future__ import annotations

import argparse

from aioredstream.ops.cli import build_parser


def leaves(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every runnable command's parser, e.g. ``(("dead", "list"), parser)``."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += leaves(sub, (*path, name))
    return found or [(path, parser)]


def test_every_command_and_argument_has_help() -> None:
    undescribed, unhelped = [], []
    for path, parser in leaves(build_parser()):
        if not parser.description:
            undescribed.append(" ".join(path))
        for action in parser._actions:
            if not action.help or action.help == argparse.SUPPRESS:
                unhelped.append(f"{' '.join(path)} {action.dest}")
    assert not undescribed, f"commands without a description: {undescribed}"
    assert not unhelped, f"arguments without help: {unhelped}"


def test_url_help_names_every_scheme() -> None:
    [(_, status)] = [leaf for leaf in leaves(build_parser()) if leaf[0] == ("status",)]
    [url] = [action for action in status._actions if action.dest == "url"]
    assert url.help is not None
    assert all(scheme in url.help for scheme in ("redis://", "rediss://", "unix://"))
