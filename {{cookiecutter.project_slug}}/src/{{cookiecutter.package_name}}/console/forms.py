"""What the console's forms and query strings mean: the commands' `EventFilter`, a status,
a page number, a place to go back to. Each refuses what cannot be used, saying why."""

from __future__ import annotations

from .. import event_filters, event_status
from . import queries


class BadFilter(ValueError):
    """A filter typed into a form that cannot be used; the message says why."""


def event_filter(args) -> event_filters.EventFilter:
    """The filters of a page's form, as `failed retry` and `events export` take them: a
    type pattern, a handler that failed, received since/until (`2h`, ISO or unix seconds)."""

    def moment(name: str) -> float | None:
        value = args.get(name, "").strip()
        try:
            return event_filters.parse_moment(value) if value else None
        except ValueError as exc:
            raise BadFilter(f"{name}: {exc}") from None

    try:
        return event_filters.EventFilter(
            event_type=args.get("type", "").strip() or None,
            handler=args.get("handler", "").strip() or None,
            since=moment("since"),
            until=moment("until"),
        )
    except ValueError as exc:
        raise BadFilter(str(exc)) from None


def event_query(args, status: str = "") -> queries.EventQuery:
    status = status or args.get("status", "")
    if status and status not in event_status.STATUSES:
        raise BadFilter(f"status: choose one of {', '.join(event_status.STATUSES)}")
    return queries.EventQuery(status, args.get("id", "").strip(), event_filter(args))


def page_number(args) -> int:
    value = args.get("page", "1")
    return int(value) if value.isdigit() and 0 < len(value) < 6 and int(value) > 0 else 1


def local_path(value: str, default: str) -> str:
    """`value` when it is a path on this console, else `default`: a redirect never leaves
    for another site (`//host` and `/\\host` are other sites to a browser)."""
    if not value.startswith("/") or value[1:2] in ("/", "\\") or not value.isprintable():
        return default
    return value
