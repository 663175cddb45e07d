"""`reconcile`: one pass delivering the order changes whose webhooks never arrived
(docs/reconcile.md)."""

from __future__ import annotations

import argparse
import sys

from ..config import Settings
from .arguments import time_ago
from .locate import located


def add_commands(commands: argparse._SubParsersAction) -> None:
    rec = commands.add_parser(
        "reconcile", help="deliver the order changes whose webhooks never arrived (one pass)"
    )
    rec.add_argument(
        "--since", type=time_ago, metavar="DURATION",
        help="walk the orders changed this long ago and since (90s, 15m, 2h, 3d) instead of "
        "from the watermark",
    )  # fmt: skip
    rec.add_argument("--dry-run", action="store_true", help="print what would be fed; feed nothing")
    rec.set_defaults(func=reconcile_once)


def reconcile_once(args: argparse.Namespace, settings: Settings) -> int:
    from .. import reconcile

    try:
        report = reconcile.run_once(located(settings), since=args.since, dry_run=args.dry_run)
    except reconcile.Busy as exc:
        print(f"error: {exc}; try again when it ends", file=sys.stderr)
        return 1
    for event_id in report.events:
        print(("would feed " if args.dry_run else "fed ") + event_id)
    print(report.summary())
    return 1 if report.outcome == "error" else 0
