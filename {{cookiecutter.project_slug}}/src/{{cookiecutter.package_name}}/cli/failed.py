"""`failed list` and `failed retry`: the events whose handlers failed every retry."""

from __future__ import annotations

import argparse
import sys

from .. import event_filters, event_status, recovery, replay
from ..config import Settings
from ..connection import connect
from .arguments import count
from .errors import UsageError
from .filters import add_filter_options, event_filter, matching
from .locate import located
from .tables import event_table

# `failed retry` draws a progress bar (on a terminal) from this many events up.
PROGRESS_FROM = 100


def add_commands(commands: argparse._SubParsersAction) -> None:
    failed = commands.add_parser("failed", help="events whose handlers failed every retry")
    failed_commands = failed.add_subparsers(dest="failed_command", required=True, metavar="ACTION")
    flist = failed_commands.add_parser("list", help="failed events, newest first")
    flist.add_argument(
        "--limit", type=count, default=50, metavar="N", help="at most N (default 50)"
    )
    add_filter_options(flist)
    flist.set_defaults(func=list_failed)
    fretry = failed_commands.add_parser(
        "retry", help="requeue failed events; handlers that succeeded are not run again"
    )
    fretry.add_argument("ids", nargs="*", metavar="ID", help="event ids to requeue")
    fretry.add_argument("--all", action="store_true", help="requeue every failed event")
    add_filter_options(fretry)
    fretry.add_argument(
        "--dry-run", action="store_true", help="print how many and which; requeue nothing"
    )
    fretry.set_defaults(func=retry_failed)


def list_failed(args: argparse.Namespace, settings: Settings) -> int:
    connection = connect(located(settings))
    criteria = event_filter(args)
    if criteria.empty:
        infos = event_status.list_events(connection, "failed", args.limit)
    else:
        found = event_filters.failed_matching(connection, criteria)
        infos = sorted(found, key=lambda info: info.last_activity, reverse=True)[: args.limit]
    if not infos:
        print("no failed events" + matching(criteria))
        return 0
    print(event_table(infos))
    return 0


def retry_failed(args: argparse.Namespace, settings: Settings) -> int:
    criteria = event_filter(args)
    by_filter = args.all or not criteria.empty
    if by_filter == bool(args.ids):
        raise UsageError("give event ids, or --all or filters (not both)")
    settings = located(settings)
    connection = connect(settings)
    if by_filter:
        ids = [info.id for info in event_filters.failed_matching(connection, criteria)]
        if not ids:
            print("no failed events" + matching(criteria))
            return 0
    else:
        ids = args.ids
    if args.dry_run:
        print(f"would requeue {len(ids)} event(s):")
        print("\n".join(ids))
        return 0
    progress = replay.Progress(len(ids), sys.stderr) if len(ids) >= PROGRESS_FROM else None
    status = 0
    for event_id in ids:
        try:
            job = recovery.retry(connection, settings, event_id)
        except recovery.NotFailed as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 1
        else:
            print(f"requeued {event_id} on {job.origin}")
        if progress is not None:
            progress.update()
    return status
