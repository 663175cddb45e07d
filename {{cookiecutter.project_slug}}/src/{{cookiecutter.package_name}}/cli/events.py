"""`events list`, `events show` and `events export`: what this Redis holds of each event."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from .. import capture, event_filters, event_status
from ..config import Settings
from ..connection import connect
from .arguments import count
from .errors import open_named
from .filters import add_filter_options, event_filter
from .locate import located
from .tables import event_table, when


def add_commands(commands: argparse._SubParsersAction) -> None:
    evs = commands.add_parser("events", help="list, show and export received events")
    evs_commands = evs.add_subparsers(dest="events_command", required=True, metavar="ACTION")
    lst = evs_commands.add_parser("list", help="recent events with their status")
    lst.add_argument("--status", choices=event_status.STATUSES, help="only this status")
    lst.add_argument("--limit", type=count, default=20, metavar="N", help="at most N (default 20)")
    lst.set_defaults(func=list_events)
    show = evs_commands.add_parser("show", help="one event: status, attempts, last error")
    show.add_argument("id", help="the event id (evt_...)")
    show.add_argument("--body", action="store_true", help="print the event itself too")
    show.set_defaults(func=show_event)
    exp = evs_commands.add_parser(
        "export", help="write captured events as JSON Lines, which replay reads"
    )
    exp.add_argument("-o", "--output", default="-", help="file to write (default: stdout)")
    add_filter_options(exp)
    exp.add_argument("--limit", type=count, metavar="N", help="only the N most recent")
    exp.set_defaults(func=export_events)


def list_events(args: argparse.Namespace, settings: Settings) -> int:
    infos = event_status.list_events(connect(located(settings)), args.status, args.limit)
    if not infos:
        print("no events" + (f" with status {args.status}" if args.status else ""))
        return 0
    print(event_table(infos))
    return 0


def show_event(args: argparse.Namespace, settings: Settings) -> int:
    connection = connect(located(settings))
    info = event_status.show(connection, args.id, settings.dedupe_window_seconds)
    archived = event_status.captured(connection, args.id)
    if info is None and archived is None:
        print(f"error: no trace of event {args.id} in this Redis", file=sys.stderr)
        return 1
    if info is not None:
        print(f"id:            {info.id}")
        print(f"type:          {info.type}")
        print(f"status:        {info.status}" + (f" (queue {info.queue})" if info.queue else ""))
        print(f"seen marker:   {'yes' if info.seen else 'no (outside the dedupe window)'}")
        print(f"enqueued at:   {when(info.enqueued_at)}")
        print(f"ended at:      {when(info.ended_at)}")
        print(f"attempts:      {info.attempts}")
        if info.abandoned:
            print(f"abandoned:     {info.abandoned} run(s) cut short by a lost worker, requeued")
        print(f"retries left:  {info.retries_left if info.retries_left is not None else 0}")
        print(f"handlers done: {', '.join(info.handlers_done) or '-'}")
        if info.handlers_failed:
            print(f"failed last:   {', '.join(info.handlers_failed)}")
        if info.duplicate_of:  # see docs/reconcile.md
            print(f"duplicate of:  {info.duplicate_of} (delivered this order change first)")
        if info.last_error:
            print("last error:\n  " + info.last_error.strip().replace("\n", "\n  "))
    if archived is not None:
        received = datetime.fromtimestamp(archived.received, UTC)
        print(f"captured at:   {when(received)} (request {archived.request_id or '-'})")
        print("headers:       " + json.dumps(archived.headers, sort_keys=True))
    if args.body:
        envelope = info.envelope if info is not None and info.envelope else None
        if envelope is None and archived is not None:
            envelope = json.loads(archived.body)
        print(json.dumps(envelope, indent=2))
    return 0


def export_events(args: argparse.Namespace, settings: Settings) -> int:
    connection = connect(located(settings))
    criteria = event_filter(args)
    if args.output == "-":
        exported = event_filters.export_matching(
            connection, sys.stdout.buffer, criteria, args.limit
        )
        sys.stdout.flush()
    else:
        with open_named(args.output, "wb") as out:
            exported = event_filters.export_matching(connection, out, criteria, args.limit)
    where = "standard output" if args.output == "-" else args.output
    print(f"exported {exported} event(s) to {where}", file=sys.stderr)
    if not exported and not capture.size(connection):
        print(
            "the capture archive in this Redis is empty: the receiver archives the events it "
            "accepts only while TW_CAPTURE_MAX_EVENTS is set",
            file=sys.stderr,
        )
    return 0
