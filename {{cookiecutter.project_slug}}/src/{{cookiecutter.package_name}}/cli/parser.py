"""The command line's parser: each command group adds its own commands, in the order
`--help` lists them."""

from __future__ import annotations

import argparse

from . import console, dev, events, failed, lanes, reconcile, secrets, send, worker

GROUPS = (send, secrets, worker, dev, events, failed, reconcile, console, lanes)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="{{ cookiecutter.project_slug }}",
        description="Receive, verify and process Tickets Wholesale webhooks.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.add_commands(commands)
    return parser
