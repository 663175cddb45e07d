"""The event envelope: parse and validate what the sender posts, and route it.

An envelope is `{"id", "type", "created", "apiVersion", "data": {"object": {...}}}`. The
receiver checks only what it relies on (an id to dedupe by, a type to route by, a creation
time, a data object) and passes everything else through untouched, so a field the API adds
tomorrow reaches the handlers without a release of this project.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

# Event ids become Redis keys and RQ job ids, so they are held to RQ's job id alphabet.
_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,128}")
_TYPE_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,128}")

# Queues by event family; anything else goes to OTHER_QUEUE, where only catch-all
# handlers (`@on("*")`) will see it.
FAMILY_QUEUES = {"order": "orders", "price": "prices"}
OTHER_QUEUE = "other"
QUEUES = (*FAMILY_QUEUES.values(), OTHER_QUEUE)
# The ids of the events the reconciler makes (`reconcile.synthetic_event`).
SYNTHETIC_PREFIX = "rec_"

# How far ahead of this machine's clock `created` may be. An honest `created` is no later
# than the signature's `t` (the event happened before it was sent), and `t` is within the
# signature tolerance of now (300 s by default), so a valid event is at most that far
# ahead. A day leaves room for any tolerance an operator would set and for two clocks of
# the sender disagreeing, and still refuses what is not unix seconds at all: milliseconds
# (a thousand times too large) or 10**300, which would pin `ordering.newest_only`'s mark
# for its whole lifetime and skip every real event of that object meanwhile.
MAX_CREATED_AHEAD_SECONDS = 24 * 3600


class InvalidEvent(Exception):
    """The body is not an event envelope; the message says which part is wrong."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Event:
    """One webhook event, as handlers receive it."""

    id: str
    type: str
    created: int
    data: dict[str, Any]
    api_version: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def family(self) -> str:
        """`order` for `order.created`: the part before the first dot."""
        return self.type.partition(".")[0]

    @property
    def object(self) -> dict[str, Any]:
        """The order or price object the event is about (`data.object`)."""
        obj = self.data.get("object")
        return obj if isinstance(obj, dict) else {}

    @property
    def synthetic(self) -> bool:
        """True for an event the reconciler made for a webhook that never arrived (its id
        starts with `rec_`; docs/reconcile.md), False for one the API sent."""
        return self.raw.get("synthetic") is True and self.id.startswith(SYNTHETIC_PREFIX)

    @classmethod
    def from_dict(cls, envelope: dict[str, Any]) -> Event:
        """Build an `Event` from an already validated envelope."""
        return cls(
            id=envelope["id"],
            type=envelope["type"],
            created=envelope["created"],
            data=envelope["data"],
            api_version=envelope.get("apiVersion"),
            raw=envelope,
        )


def new_envelope(
    event_type: str, obj: dict[str, Any], event_id: str | None = None, created: int | None = None
) -> dict[str, Any]:
    """An envelope as the sender builds it, with a fresh `evt_` id unless one is given."""
    return {
        "id": event_id or "evt_" + os.urandom(12).hex(),
        "type": event_type,
        "created": int(time.time()) if created is None else created,
        "apiVersion": "v1",
        "data": {"object": obj},
    }


def parse(body: bytes, now: float | None = None) -> dict[str, Any]:
    """Decode and validate a raw body; return the envelope as a dict."""
    try:
        # UTF-8 only, as JSON on the wire must be (json.loads would also guess UTF-16 or
        # skip a BOM): the job carries these very bytes, see `intake.job_data`.
        envelope = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidEvent("invalid_json", "The body is not valid UTF-8 JSON.") from None
    validate(envelope, now)
    return envelope


def validate(envelope: Any, now: float | None = None) -> None:
    """Raise `InvalidEvent` unless `envelope` has the fields the receiver relies on."""
    if not isinstance(envelope, dict):
        raise InvalidEvent("invalid_event", "The body must be a JSON object.")
    event_id = envelope.get("id")
    if not isinstance(event_id, str) or not _ID_PATTERN.fullmatch(event_id):
        raise InvalidEvent("invalid_event", "`id` must be 1 to 128 letters, digits, '_' or '-'.")
    event_type = envelope.get("type")
    if not isinstance(event_type, str) or not _TYPE_PATTERN.fullmatch(event_type):
        raise InvalidEvent(
            "invalid_event", "`type` must be 1 to 128 letters, digits, '.', '_' or '-'."
        )
    created = envelope.get("created")
    if isinstance(created, bool) or not isinstance(created, int) or created < 0:
        raise InvalidEvent("invalid_event", "`created` must be unix seconds (an integer).")
    if created - int(time.time() if now is None else now) > MAX_CREATED_AHEAD_SECONDS:
        raise InvalidEvent(
            "invalid_event",
            f"`created` is more than {MAX_CREATED_AHEAD_SECONDS} s ahead of this receiver's "
            "clock: it must be unix seconds (not milliseconds) of when the event happened.",
        )
    if not isinstance(envelope.get("data"), dict):
        raise InvalidEvent("invalid_event", "`data` must be an object.")


def queue_for(event_type: str) -> str:
    """The queue an event type is routed to."""
    return FAMILY_QUEUES.get(event_type.partition(".")[0], OTHER_QUEUE)


def check_type_pattern(pattern: str) -> None:
    """Raise `ValueError` unless `pattern` is an exact type, a family or `*`."""
    body = pattern[:-2] if pattern.endswith(".*") else pattern
    if pattern != "*" and (not body or "*" in body):
        raise ValueError(
            f"bad event type pattern {pattern!r}: use an exact type ('order.created'), "
            "a family ('order.*') or '*'"
        )


def type_matches(pattern: str, event_type: str) -> bool:
    """Whether `event_type` is one `pattern` stands for (see `check_type_pattern`)."""
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    return event_type == pattern
