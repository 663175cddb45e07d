"""`lanes list` and `lanes skip`: the per-order lanes (`lanes.py`, docs/lanes.md)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from .. import lanes
from ..config import Settings
from ..connection import connect
from .arguments import count
from .locate import located
from .tables import ago, table


def add_commands(commands: argparse._SubParsersAction) -> None:
    lns = commands.add_parser("lanes", help="per-order lanes: list them, skip a blocked head")
    lns_commands = lns.add_subparsers(dest="lanes_command", required=True, metavar="ACTION")
    llist = lns_commands.add_parser("list", help="lanes with events waiting, blocked first")
    llist.add_argument("--blocked", action="store_true", help="only the blocked lanes")
    llist.add_argument(
        "--limit", type=count, default=50, metavar="N", help="at most N (default 50)"
    )
    llist.set_defaults(func=list_lanes)
    lskip = lns_commands.add_parser(
        "skip", help="drop a lane's first event (its handler is not run) and go on"
    )
    lskip.add_argument("lane", help="the lane, as `lanes list` prints it")
    lskip.add_argument("--force", action="store_true", help="even while the head is running")
    lskip.set_defaults(func=skip_head)


def list_lanes(args: argparse.Namespace, settings: Settings) -> int:
    connection = connect(located(settings))
    infos = lanes.list_lanes(connection, blocked_only=args.blocked, limit=args.limit)
    if not infos:
        print("no blocked lanes" if args.blocked else "no lane has events waiting")
        return 0
    now = datetime.now(UTC)
    rows = [("lane", "waiting", "head", "state")]
    for info in infos:
        if info.blocked_since is not None:
            since = datetime.fromtimestamp(info.blocked_since, UTC)
            state = f"blocked {ago(since, now)}"
        else:
            state = "running" if info.holder else "waiting"
        rows.append((info.lane, str(info.waiting), info.head, state))
    print(table(rows))
    return 0


def skip_head(args: argparse.Namespace, settings: Settings) -> int:
    connection = connect(located(settings))
    skipped = lanes.skip_head(connection, args.lane, force=args.force)
    if skipped is None:
        print(f"error: {args.lane}: its first event is running (--force)", file=sys.stderr)
        return 1
    if not skipped:
        print(f"error: lane {args.lane} has no event waiting", file=sys.stderr)
        return 1
    print(f"skipped {skipped} in {args.lane}; the next event runs")
    return 0
