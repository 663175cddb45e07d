"""Capture: an opt-in, bounded archive of every accepted event, to export and replay elsewhere.

With `TW_CAPTURE_MAX_EVENTS=N` (N > 0) every event accepted on first receipt is appended to
the Redis stream `tw:capture` by the same Lua script that queues it (see `intake`), trimmed
with `XADD MAXLEN ~ N`: no extra round trip, and nothing is archived that was not stored.
A stream rather than rotating files because it is bounded by construction, written
atomically with the enqueue, shared by every web process on every host (one export sees
them all), and gone with `DEL tw:capture`; files would be per host and per process.

An entry holds the raw body as received, the receipt time, the request id, and the request
headers minus anything secret: the signature, credentials and cookies are never archived
(a replay signs afresh anyway). Memory is about N times the average body size.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import redis

from .events import type_matches

STREAM_KEY = "tw:capture"
# A header whose lower-cased name contains any of these is never archived.
SECRET_HEADER_WORDS = (
    "signature",
    "authorization",
    "cookie",
    "secret",
    "token",
    "password",
    "api-key",
    "apikey",
)
READ_BATCH = 200


def is_secret_header(name: str) -> bool:
    """Whether a header of this name could carry a secret."""
    return any(word in name.lower() for word in SECRET_HEADER_WORDS)


def archived_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The headers worth keeping: all but those that could carry a secret."""
    return {name: value for name, value in headers if not is_secret_header(name)}


def entry(
    envelope: dict,
    body: bytes,
    headers: Iterable[tuple[str, str]],
    request_id: str | None = None,
    received: float | None = None,
) -> list[str | bytes]:
    """The stream entry for one accepted event, as the flat field/value list XADD takes."""
    return [
        "id", envelope["id"],
        "type", envelope["type"],
        "received", f"{time.time() if received is None else received:.3f}",
        "request_id", request_id or "",
        "headers", json.dumps(archived_headers(headers), separators=(",", ":")),
        "body", body,
    ]  # fmt: skip


@dataclass(frozen=True)
class Captured:
    """One archived delivery."""

    entry_id: str
    event_id: str
    type: str
    received: float
    request_id: str
    headers: dict[str, str]
    body: bytes

    @classmethod
    def from_entry(cls, entry_id: bytes | str, fields: dict[bytes, bytes]) -> Captured:
        def text(name: str) -> str:
            return fields.get(name.encode(), b"").decode("utf-8", "replace")

        return cls(
            entry_id=entry_id.decode() if isinstance(entry_id, bytes) else entry_id,
            event_id=text("id"),
            type=text("type"),
            received=float(text("received") or 0),
            request_id=text("request_id"),
            headers=json.loads(text("headers") or "{}"),
            body=fields.get(b"body", b""),
        )


def read(
    connection: redis.Redis,
    since: float | None = None,
    event_type: str | None = None,
    newest_first: bool = False,
    until: float | None = None,
) -> Iterator[Captured]:
    """Archived deliveries in receipt order (or newest first), read in batches.

    `since` and `until` (unix seconds) keep those received at or after `since` and before
    `until`, read as a range of the stream (whose entry ids are Redis' receipt times).
    """
    if until is not None and until <= 0:
        return  # nothing was received before 1970 (and "(0-0" is no stream id)
    low = f"{int(since * 1000)}-0" if since else "-"
    # "(" makes the end exclusive: entries strictly before `until`.
    high = f"({math.ceil(until * 1000)}-0" if until is not None else "+"
    cursor = high if newest_first else low
    while True:
        if newest_first:
            batch = connection.xrevrange(STREAM_KEY, cursor, low, count=READ_BATCH)
        else:
            batch = connection.xrange(STREAM_KEY, cursor, high, count=READ_BATCH)
        for entry_id, fields in batch:
            captured = Captured.from_entry(entry_id, fields)
            if event_type is None or type_matches(event_type, captured.type):
                yield captured
        if len(batch) < READ_BATCH:
            return
        # Exclusive ranges ("(" prefix) continue after the last entry read.
        last = batch[-1][0]
        cursor = "(" + (last.decode() if isinstance(last, bytes) else last)


def find(connection: redis.Redis, event_id: str) -> Captured | None:
    """The newest archived delivery of `event_id` (a scan of the bounded stream)."""
    for captured in read(connection, newest_first=True):
        if captured.event_id == event_id:
            return captured
    return None


def jsonl_line(body: bytes) -> bytes:
    """`body` on one line. Raw line breaks in valid JSON sit only between tokens, never
    inside a string, so dropping them with the indentation around them keeps the event
    exactly as it was; a one-line body is kept byte for byte."""
    if b"\n" not in body and b"\r" not in body:
        return body.strip()
    return b"".join(part.strip() for part in body.splitlines())


def export(
    connection: redis.Redis,
    out: BinaryIO,
    since: float | None = None,
    event_type: str | None = None,
    limit: int | None = None,
    until: float | None = None,
    keep: Callable[[Captured], bool] | None = None,
) -> int:
    """Write archived events to `out` as JSON Lines (oldest first), which `replay` reads.

    `limit` keeps the newest `limit` matching events; `keep`, when given, is a further test
    each entry must pass. Returns the number written.
    """
    entries = read(connection, since, event_type, newest_first=limit is not None, until=until)
    if keep is not None:
        entries = filter(keep, entries)
    if limit is not None:
        selected: Iterable[Captured] = reversed(list(itertools.islice(entries, limit)))
    else:
        selected = entries
    written = 0
    for captured in selected:
        out.write(jsonl_line(captured.body) + b"\n")
        written += 1
    return written


def size(connection: redis.Redis) -> int:
    return connection.xlen(STREAM_KEY)
