"""--type, --handler, --since and --until: which events `events export`, `failed list` and
`failed retry` are about."""

from __future__ import annotations

import argparse

from ..event_filters import EventFilter
from .arguments import moment, type_pattern


def add_filter_options(parser: argparse.ArgumentParser) -> None:
    """The options `event_filter` reads."""
    parser.add_argument(
        "--type", type=type_pattern, help="only this type: order.created, order.* or *"
    )
    parser.add_argument(
        "--handler", metavar="NAME",
        help="only events this handler failed on in their latest run "
        "(its full name or the end of it: reserve_seats, orders.reserve_seats)",
    )  # fmt: skip
    parser.add_argument(
        "--since", type=moment, metavar="WHEN",
        help="received at or after WHEN: unix seconds, an ISO date/time (UTC unless it "
        "says otherwise) or a time ago (90s, 15m, 2h, 3d)",
    )  # fmt: skip
    parser.add_argument("--until", type=moment, metavar="WHEN", help="received before WHEN")


def event_filter(args: argparse.Namespace) -> EventFilter:
    return EventFilter(
        event_type=args.type, handler=args.handler, since=args.since, until=args.until
    )


def matching(event_filter: EventFilter) -> str:
    """` matching <the criteria>`, to end a message with; '' without criteria."""
    return f" matching {event_filter.describe()}" if not event_filter.empty else ""
