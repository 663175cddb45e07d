"""Cursor pages, as the API serves them: `{"items": [...], "nextCursor": "<opaque>"}`.

A cursor is base64 of `{"id": "<last id of the page>"}` (the shape of the docs' example),
and the next page starts after that id in a fixed order: keyset paging, so items added or
changed between two requests neither repeat nor go missing. Clients must treat a cursor as
opaque; `nextCursor` is null on the last page.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


class InvalidCursor(ValueError):
    """The cursor was not made by this server."""


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"id": last_id}).encode()).decode()


def decode_cursor(cursor: str) -> str:
    try:
        decoded = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error):
        raise InvalidCursor("cursor is not one this server gave out") from None
    if not isinstance(decoded, dict) or not isinstance(decoded.get("id"), str):
        raise InvalidCursor("cursor is not one this server gave out")
    return decoded["id"]


def page(
    ordered: Sequence[T],
    id_of: Callable[[T], str],
    limit: int,
    cursor: str | None,
    keep: Callable[[T], bool] = lambda item: True,
) -> tuple[list[T], str | None]:
    """The next `limit` items of `ordered` that `keep` accepts, after the cursor's id."""
    start = 0
    if cursor:
        after = decode_cursor(cursor)
        ids = [id_of(item) for item in ordered]
        if after not in ids:
            raise InvalidCursor("cursor points at nothing this server knows")
        start = ids.index(after) + 1
    items: list[T] = []
    for item in ordered[start:]:
        if keep(item):
            if len(items) == limit:
                return items, encode_cursor(id_of(items[-1]))
            items.append(item)
    return items, None


# --- keyset pages on a changing sort key (the orders, by `updatedAt` then id) -----------
# Such a cursor holds the last item's key, `{"updatedAt": ..., "id": ...}`: the next page
# starts after that key, wherever the item itself has moved since (an order changed
# between two pages moves to the end of an oldest-first walk, and is met again there).


def encode_key_cursor(key: tuple[int, str]) -> str:
    payload = {"updatedAt": key[0], "id": key[1]}
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


def decode_key_cursor(cursor: str) -> tuple[int, str]:
    try:
        decoded = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error):
        raise InvalidCursor("cursor is not one this server gave out") from None
    stamp = decoded.get("updatedAt") if isinstance(decoded, dict) else None
    if not isinstance(stamp, int) or not isinstance(decoded.get("id"), str):
        raise InvalidCursor("cursor is not one this server gave out")
    return stamp, decoded["id"]


def keyset_page(
    ordered: Sequence[T],
    key_of: Callable[[T], tuple[int, str]],
    limit: int,
    cursor: str | None,
    keep: Callable[[T], bool] = lambda item: True,
    descending: bool = False,
) -> tuple[list[T], str | None]:
    """The next `limit` items of `ordered` (sorted by `key_of`, `descending` or not) that
    `keep` accepts, after the cursor's key."""
    after = decode_key_cursor(cursor) if cursor else None
    items: list[T] = []
    for item in ordered:
        key = key_of(item)
        if after is not None and (key >= after if descending else key <= after):
            continue
        if keep(item):
            if len(items) == limit:
                return items, encode_key_cursor(key_of(items[-1]))
            items.append(item)
    return items, None
