"""`secrets`: each signing secret's fingerprint and when it last verified a delivery, to
know when an old secret can go after a rotation."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from .. import secret_usage
from ..config import Settings
from ..connection import connect
from .locate import located
from .tables import ago, table, when


def add_commands(commands: argparse._SubParsersAction) -> None:
    secrets = commands.add_parser(
        "secrets", help="each signing secret's fingerprint and when it last verified a delivery"
    )
    secrets.set_defaults(func=show_secrets)


def show_secrets(args: argparse.Namespace, settings: Settings) -> int:
    uses = secret_usage.secret_usage(connect(located(settings)), settings.require_secrets())
    now = datetime.now(UTC)
    rows = [("secret", "fingerprint", "last verified a delivery")]
    for use in uses:
        position = str(use.position) if use.position else "not here"
        last = "never" if use.last_verified is None else (
            f"{when(use.last_verified)} ({ago(use.last_verified, now)})"
        )  # fmt: skip
        rows.append((position, use.fingerprint, last))
    print(table(rows))
    if any(use.position is None for use in uses):
        print(
            "\n'not here': a secret this receiver does not have verified deliveries on "
            "another receiver sharing this Redis."
        )
    return 0
