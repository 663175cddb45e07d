"""The argparse types of the values people type: each turns a string into the value, or
refuses it with a message that says what it wants (argparse's usage error, exit 2)."""

from __future__ import annotations

import argparse
from urllib.parse import urlsplit

from ..event_filters import parse_moment
from ..events import check_type_pattern

# The largest count: more than any Redis here holds, and within what Redis and Python
# take as a count (a larger one would come back as a confusing Redis error).
MAX_COUNT = 1_000_000_000


def count(value: str) -> int:
    """A whole number from 1 to MAX_COUNT."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if not 1 <= number <= MAX_COUNT:
        raise argparse.ArgumentTypeError(
            f"want a whole number of at least 1 and at most {MAX_COUNT}, got {value!r}"
        )
    return number


def share(value: str) -> float:
    """A share from 0 to 1."""
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0.0 <= number <= 1.0:
        raise argparse.ArgumentTypeError(f"want a number from 0 to 1, got {value!r}")
    return number


def milliseconds(value: str) -> int:
    """A whole number of milliseconds, 0 or more."""
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"want a whole number of milliseconds, got {value!r}")
    return int(value)


def type_pattern(value: str) -> str:
    """An event type pattern, as `@on` takes them."""
    try:
        check_type_pattern(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def moment(value: str) -> float:
    """A point in time, as unix seconds (see `event_filters.parse_moment`)."""
    try:
        return parse_moment(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def time_ago(value: str) -> float:
    """A duration (90s, 15m, 2h, 3d), as the moment that long ago."""
    if not value.strip() or value.strip()[-1:] not in ("s", "m", "h", "d"):
        raise argparse.ArgumentTypeError(
            f"want a duration such as 90s, 15m, 2h or 3d, got {value!r}"
        )
    return moment(value)


def http_url(value: str) -> str:
    """An http:// or https:// URL with a host."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"want an http(s) URL, got {value!r}")
    return value
