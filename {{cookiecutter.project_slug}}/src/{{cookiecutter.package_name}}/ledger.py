"""The order ledger: what the receiver has processed of each order, kept in Redis.

Per order one hash, `tw:ledger:<order id>`: the latest status processed and its update
time, and which event delivered each status (`seen:<status>` -> event id). The job
function writes it when an order event's job starts (`record`), before any handler runs,
so the reconciler (`reconcile.py`) can tell which transitions the receiver never saw
without asking anything else, and so one transition runs its handlers once however many
events carry it: the real webhook and the synthetic event the reconciler made for it have
different ids, which the dedupe by event id cannot match, but they name the same order and
status, which this can. Whichever of the two reaches a worker first claims the
transition; the other is acknowledged as a duplicate of it, and no handler runs for it.
Two real events of one transition (a test replaying samples with fresh ids) both run, as
they always did: between the API's own events, the event id is the dedupe key.

An entry expires `TW_LEDGER_RETENTION_SECONDS` (30 days) after the order's last event:
the reconciler never looks further back than that.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field

import redis

from .config import settings_from_env
from .events import SYNTHETIC_PREFIX, Event

KEY_PREFIX = "tw:ledger:"
# Counts kept beside the runs of the reconciler (see reconcile.py): transitions delivered
# twice (a real event and a synthetic one), whose second delivery ran no handler.
TOTALS_KEY = "tw:reconcile:totals"
# Where each status sits in an order's life; a status the API adds later ranks lowest.
RANK = {"created": 0, "confirmed": 1, "fulfilled": 2, "cancelled": 3, "refunded": 4}

# KEYS: the order's entry, the totals. ARGV: status, its update time, event id, seconds to
# keep the entry, the status's rank, '1' when the event is synthetic, the synthetic prefix.
# Returns '' when this event delivers the status (first, or again: a retry of its job, or
# another real event, which the API's own dedupe by id governs), or the id of the event
# that delivered it before when one of the two is synthetic. The latest status moves only
# forward: a later update time, or the same second and a later status.
RECORD = """
local seen = 'seen:' .. ARGV[1]
local before = redis.call('HGET', KEYS[1], seen)
if not before then
  redis.call('HSET', KEYS[1], seen, ARGV[3])
elseif before ~= ARGV[3] and (ARGV[6] == '1' or string.sub(before, 1, #ARGV[7]) == ARGV[7]) then
  redis.call('HINCRBY', KEYS[2], 'duplicates', 1)
  return before
end
local now = redis.call('HMGET', KEYS[1], 'updatedAt', 'rank')
local at, rank = tonumber(ARGV[2]), tonumber(ARGV[5])
local was_at, was_rank = tonumber(now[1]), tonumber(now[2])
if not was_at or at > was_at or (at == was_at and rank >= was_rank) then
  redis.call('HSET', KEYS[1], 'status', ARGV[1], 'updatedAt', ARGV[2], 'rank', ARGV[5])
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
return ''
"""


@dataclass(frozen=True)
class Entry:
    """One order as the receiver processed it."""

    status: str
    updated_at: int
    seen: dict[str, str] = field(default_factory=dict)  # status -> the event that delivered it


def key(order_id: str) -> str:
    return KEY_PREFIX + order_id


def transition(event: Event) -> tuple[str, str, int] | None:
    """(order id, status, update time) of an order event; None for any other event. The
    status is the type's (`order.confirmed`: confirmed), not the object's: a synthetic
    event for a status the order has since left carries the order as it is now."""
    family, _, status = event.type.partition(".")
    order_id = event.object.get("id")
    if family != "order" or not status or not isinstance(order_id, str) or not order_id:
        return None
    updated = event.object.get("updatedAt")
    if isinstance(updated, bool) or not isinstance(updated, int):
        updated = event.created
    return order_id, status, updated


@functools.cache
def default_retention() -> int:
    return settings_from_env().ledger_retention_seconds


def record(connection: redis.Redis, event: Event, retention: int | None = None) -> str | None:
    """Write down that `event` delivers its order's transition; None when it does (or is
    no order event), else the id of the event that delivered the transition already, when
    that one or this one is synthetic."""
    found = transition(event)
    if found is None:
        return None
    order_id, status, updated = found
    script = connection.register_script(RECORD)  # EVALSHA, no I/O to register
    answer = script(
        keys=[key(order_id), TOTALS_KEY],
        args=[
            status,
            updated,
            event.id,
            retention or default_retention(),
            RANK.get(status, -1),
            "1" if event.synthetic else "0",
            SYNTHETIC_PREFIX,
        ],
    )
    return answer.decode() if answer else None


def read(connection: redis.Redis, order_ids: Iterable[str]) -> dict[str, Entry]:
    """The entries of these orders (one round trip); orders without one are left out."""
    ids = list(order_ids)
    pipe = connection.pipeline(transaction=False)
    for order_id in ids:
        pipe.hgetall(key(order_id))
    entries = {}
    for order_id, raw in zip(ids, pipe.execute(), strict=True):
        if not raw:
            continue
        fields = {k.decode(): v.decode() for k, v in raw.items()}
        seen = {name[5:]: value for name, value in fields.items() if name.startswith("seen:")}
        entries[order_id] = Entry(fields.get("status", ""), int(fields.get("updatedAt", 0)), seen)
    return entries
