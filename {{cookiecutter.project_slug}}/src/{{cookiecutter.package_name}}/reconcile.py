"""Reconciliation: find the order changes whose webhooks never arrived, and deliver them.

The API's sender retries for a while, then gives up; a receiver that was down longer has
lost those events. A pass walks the API's orders changed since the last pass (through the
API client: cursor pages, the shared rate budget), compares each with the order ledger
(`ledger.py`: what the receiver processed), and feeds a synthetic event for each
transition the receiver never saw through the same intake as a webhook: dedupe, queues,
handlers, retries, console. Handlers tell such an event by `event.synthetic`.

Where a pass starts and stops:

- the watermark (`tw:reconcile:watermark`: the `updatedAt` and id of the last order
  checked) says how far the previous passes got; a pass starts `TW_RECONCILE_OVERLAP_SECONDS`
  before it, so a change written late with an earlier time is still met;
- it leaves out the orders changed in the last `TW_RECONCILE_SETTLE_SECONDS`: their webhooks
  may still be on their way, and the next pass sees them;
- the very first pass (no watermark) only sets the watermark: it never delivers the whole
  history of an account to handlers that may have seen it before the ledger existed.
  `reconcile --since 2h` walks back further on purpose;
- nothing older than the ledger's retention is compared (the ledger forgot it).

The API lists orders changed since a time, oldest change first (`updatedSince`); the
watermark is saved after every page. An API without that (`TW_RECONCILE_UPDATED_SINCE=false`)
is walked newest change first down to the start, and the watermark moves at the end.

Which events a pass delivers, knowing only an order's current status: the statuses on the
way from the last status the receiver processed to the current one that every path
passes through (`created → confirmed → fulfilled`; a cancelled or refunded order went
through `created`, and perhaps through others the API no longer says), in that order, never
one the receiver has already processed, nor one behind it. Each carries the order as the
API returns it now. One pass at a time runs across every worker (a lock in Redis).
See docs/reconcile.md.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import redis

from . import ledger
from .config import ConfigError, Settings
from .connection import connect
from .events import SYNTHETIC_PREFIX, InvalidEvent, new_envelope, validate
from .intake import Intake

log = logging.getLogger(__name__)

WATERMARK_KEY = "tw:reconcile:watermark"  # hash: updatedAt, id
LOCK_KEY = "tw:reconcile:lock"  # who runs a pass now
DUE_KEY = "tw:reconcile:due"  # set by the worker that runs this interval's pass
RUNS_KEY = "tw:reconcile:runs"  # the latest passes, as JSON, newest first
TOTALS_KEY = ledger.TOTALS_KEY  # runs:<outcome>, events:<type>, checked, duplicates
KEPT_RUNS = 50
PAGE_SIZE = 100
LOCK_SECONDS = 120  # renewed after every page; a dead runner's lock lapses after this
FLOW = ("created", "confirmed", "fulfilled")

# KEYS: the lock. ARGV: the holder's token, then milliseconds to hold (renew) or none (release).
RENEW_OR_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return redis.call('DEL', KEYS[1])
"""


class OrderSource(Protocol):
    """What a pass needs of the API client (`api.Client`)."""

    def paginate(self, path: str, params: dict[str, Any] | None = None) -> Iterator[Any]: ...


class Busy(Exception):
    """Another pass holds the lock."""


# --- what to deliver -------------------------------------------------------------------


def path_to(status: str) -> tuple[str, ...]:
    """The statuses every order in `status` went through, in order, ending with it."""
    if status in FLOW:
        return FLOW[: FLOW.index(status) + 1]
    return ("created", status)


def missing(entry: ledger.Entry | None, order: dict, horizon: int) -> list[str]:
    """The statuses to deliver for `order` (as the API returns it), given its ledger entry.

    Never one the receiver processed, nor one behind the latest it processed; an order
    created before the ledger's horizon (whose entry may have expired) gets its current
    status alone, if that is missing.
    """
    status = order.get("status")
    if not isinstance(status, str) or not status:
        return []
    if entry is None:
        created = order.get("createdAt")
        old = isinstance(created, int) and created < horizon
        return [status] if old else list(path_to(status))
    if status in entry.seen:
        return []
    reached = ledger.RANK.get(entry.status, -1)
    return [
        step
        for step in path_to(status)
        if step not in entry.seen and (step == status or ledger.RANK.get(step, -1) > reached)
    ]


def synthetic_event(order: dict, status: str, created: int) -> dict:
    """The event the API would have sent when `order` reached `status`: `order.<status>`,
    the order as it is now, the id `rec_<order>_<status>` (the same in every pass, so the
    dedupe drops a repeat) and `"synthetic": true`."""
    envelope = new_envelope(
        f"order.{status}", order, event_id=f"{SYNTHETIC_PREFIX}{order['id']}_{status}",
        created=created,
    )  # fmt: skip
    envelope["synthetic"] = True
    return envelope


def events_for(order: dict, steps: list[str], now: float | None = None) -> list[dict]:
    """The synthetic events for `steps` of `order`. The last one is dated at the order's
    `updatedAt` (`now`, the time by default, when it has none), each before it a second
    earlier (the first no later than `createdAt`), so that `newest_only` puts them in the
    order of the path."""
    updated = _stamp(order.get("updatedAt"), int(time.time() if now is None else now))
    created = _stamp(order.get("createdAt"), updated)
    events = []
    for back, status in enumerate(reversed(steps)):
        at = updated - back
        events.append(
            synthetic_event(order, status, min(at, created) if status == "created" else at)
        )
    return events[::-1]


def _stamp(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


# --- the state kept in Redis -------------------------------------------------------------


def read_watermark(connection: redis.Redis) -> tuple[int, str] | None:
    raw = connection.hgetall(WATERMARK_KEY)
    if not raw:
        return None
    return int(raw[b"updatedAt"]), raw.get(b"id", b"").decode()


def save_watermark(connection: redis.Redis, mark: tuple[int, str]) -> tuple[int, str]:
    """Move the watermark to `mark`, never back (a `--since` pass walks behind it)."""
    current = read_watermark(connection)
    if current is not None and current >= mark:
        return current
    connection.hset(WATERMARK_KEY, mapping={"updatedAt": mark[0], "id": mark[1]})
    return mark


def last_runs(connection: redis.Redis, count: int = 1) -> list[dict]:
    """The latest passes, newest first (what `Report.to_json` wrote)."""
    return [json.loads(raw) for raw in connection.lrange(RUNS_KEY, 0, count - 1)]


def totals(connection: redis.Redis) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in connection.hgetall(TOTALS_KEY).items()}


class Lock:
    """One pass at a time across every process sharing the Redis: `SET NX` with a token,
    renewed after every page and released only by its holder."""

    def __init__(self, connection: redis.Redis, seconds: int = LOCK_SECONDS):
        self.connection, self.ms = connection, seconds * 1000
        self.token = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"
        self._script = connection.register_script(RENEW_OR_RELEASE)

    def acquire(self) -> bool:
        return bool(self.connection.set(LOCK_KEY, self.token, nx=True, px=self.ms))

    def renew(self) -> bool:
        return bool(self._script(keys=[LOCK_KEY], args=[self.token, self.ms]))

    def release(self) -> None:
        self._script(keys=[LOCK_KEY], args=[self.token])

    def holder(self) -> str:
        return (self.connection.get(LOCK_KEY) or b"").decode()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        if not self.acquire():
            raise Busy(f"another reconciliation pass is running ({self.holder() or 'just ended'})")
        try:
            yield
        finally:
            self.release()


# --- one pass ------------------------------------------------------------------------------


@dataclass
class Report:
    """What one pass did."""

    started: float = field(default_factory=time.time)
    finished: float = 0.0
    outcome: str = "ok"  # ok | baseline | dry-run | error
    mode: str = "updatedSince"  # or newest-first
    since: int | None = None  # the updatedAt the walk started from
    checked: int = 0  # orders compared with the ledger
    api_calls: int = 0  # pages read
    events: list[str] = field(default_factory=list)  # ids of the events fed (or, dry, to feed)
    types: Counter = field(default_factory=Counter)  # event type -> how many
    watermark: tuple[int, str] | None = None
    error: str = ""
    pid: int = field(default_factory=os.getpid)

    def to_json(self) -> str:
        data = asdict(self)
        data["types"], data["events"] = dict(self.types), self.events[:100]
        return json.dumps(data)

    def summary(self) -> str:
        found = ", ".join(f"{kind} x{n}" for kind, n in sorted(self.types.items())) or "nothing"
        fed = "would feed" if self.outcome == "dry-run" else "fed"
        seconds = (self.finished or time.time()) - self.started
        text = (
            f"reconcile ({self.mode}): {self.checked} order(s) checked in {self.api_calls} API "
            f"call(s), {seconds:.1f} s; {fed} {len(self.events)} event(s): {found}"
        )
        if self.watermark:
            moment = datetime.fromtimestamp(self.watermark[0], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            text += f"; watermark {moment} {self.watermark[1]}".rstrip()
        if self.outcome == "baseline" and self.watermark:
            text = "reconcile: first pass, the watermark is set; later passes start from it"
        elif self.outcome == "baseline":  # a dry run leaves the watermark alone
            text = "reconcile: first pass; it would only set the watermark (a dry run leaves it)"
        return text + (f"; stopped: {self.error}" if self.error else "")


class Reconciler:
    """One pass over the API's orders: `run(since, dry_run)`. `clock` gives the time (unix
    seconds) that the settle delay and the ledger's horizon count back from: a test passes
    one it moves itself, and dates the sandbox's orders by it."""

    def __init__(
        self, connection: redis.Redis, settings: Settings, client: OrderSource,
        intake: Intake | None = None, clock: Callable[[], float] = time.time,
    ):  # fmt: skip
        self.connection, self.settings, self.client = connection, settings, client
        self.intake = intake or Intake(connection, settings)
        self.clock = clock
        self.lock: Lock | None = None  # renewed after each page while set

    def run(self, since: float | None = None, dry_run: bool = False) -> Report:
        """Walk, compare and feed; `since` (unix seconds) starts the walk there instead of
        at the watermark. A dry run feeds nothing and leaves the watermark alone."""
        settings = self.settings
        report = Report(
            started=self.clock(),
            mode="updatedSince" if settings.reconcile_updated_since else "newest-first",
        )
        now = int(report.started)
        cutoff = now - settings.reconcile_settle_seconds
        horizon = now - settings.ledger_retention_seconds
        mark = read_watermark(self.connection)
        report.watermark = mark
        if since is None and mark is None:
            report.outcome = "baseline"
            if not dry_run:
                report.watermark = save_watermark(self.connection, (cutoff, ""))
            return self._finish(report, dry_run)
        start = int(since) if since is not None else mark[0] - settings.reconcile_overlap_seconds
        report.since = start = max(start, horizon, 0)
        try:
            if settings.reconcile_updated_since:
                self._walk_oldest_first(report, start, cutoff, horizon, dry_run)
            else:
                self._walk_newest_first(report, start, cutoff, horizon, dry_run)
        except Exception as exc:  # the API, Redis, a full queue: the next pass goes on
            report.outcome, report.error = "error", f"{type(exc).__name__}: {exc}"
            log.warning("reconcile: pass stopped: %s", report.error)
        if dry_run and report.outcome == "ok":
            report.outcome = "dry-run"
        return self._finish(report, dry_run)

    def _walk_oldest_first(self, report, start, cutoff, horizon, dry_run) -> None:
        batch: list[dict] = []
        for order in self._orders(report, {"updatedSince": start}):
            if _stamp(order.get("updatedAt"), 0) > cutoff:
                break  # this one and every later one are still settling
            batch.append(order)
            if len(batch) == PAGE_SIZE:
                self._check(report, batch, horizon, dry_run)
                last = batch[-1]
                if not dry_run:
                    report.watermark = save_watermark(self.connection, _key(last))
                batch = []
        self._check(report, batch, horizon, dry_run)
        if not dry_run:  # everything changed up to the cutoff is checked
            report.watermark = save_watermark(self.connection, (cutoff, ""))

    def _walk_newest_first(self, report, start, cutoff, horizon, dry_run) -> None:
        batch: list[dict] = []
        for order in self._orders(report, {}):
            updated = _stamp(order.get("updatedAt"), 0)
            if updated < start:
                break  # older than the start: the previous passes checked it
            if updated > cutoff:
                continue  # still settling: the next pass
            batch.append(order)
            if len(batch) == PAGE_SIZE:
                self._check(report, batch, horizon, dry_run)
                batch = []
        self._check(report, batch, horizon, dry_run)
        if not dry_run:
            report.watermark = save_watermark(self.connection, (cutoff, ""))

    def _orders(self, report: Report, params: dict) -> Iterator[dict]:
        """The API's orders, page by page; counts the pages read and renews the lock."""
        read = 0
        for order in self.client.paginate("/v1/orders", {**params, "limit": PAGE_SIZE}):
            if read % PAGE_SIZE == 0:
                report.api_calls += 1
                if self.lock is not None and not self.lock.renew():
                    raise Busy("the reconciliation lock was lost (the pass took too long)")
            read += 1
            if isinstance(order, dict) and isinstance(order.get("id"), str):
                yield order
        if read == 0:
            report.api_calls += 1  # the one empty page

    def _check(self, report: Report, orders: list[dict], horizon: int, dry_run: bool) -> None:
        if not orders:
            return
        entries = ledger.read(self.connection, (order["id"] for order in orders))
        report.checked += len(orders)
        for order in orders:
            steps = missing(entries.get(order["id"]), order, horizon)
            for envelope in events_for(order, steps, self.clock()) if steps else ():
                if self._feed(envelope, dry_run):
                    report.events.append(envelope["id"])
                    report.types[envelope["type"]] += 1

    def _feed(self, envelope: dict, dry_run: bool) -> bool:
        """Queue one synthetic event; False when it was fed before (not yet processed)."""
        try:
            validate(envelope)
        except InvalidEvent as exc:
            log.warning(
                "reconcile: order %s left alone: %s", envelope["data"]["object"].get("id"), exc
            )
            return False
        if dry_run:
            return True
        body = json.dumps(envelope, separators=(",", ":")).encode()
        added = self.intake.submit(envelope, body)
        if added:
            log.info(
                "reconcile: %s %s fed (its webhook never arrived)", envelope["type"], envelope["id"]
            )
        return added

    def _finish(self, report: Report, dry_run: bool) -> Report:
        report.finished = self.clock()
        if not dry_run:
            pipe = self.connection.pipeline(transaction=False)
            pipe.hincrby(TOTALS_KEY, f"runs:{report.outcome}", 1)
            pipe.hincrby(TOTALS_KEY, "checked", report.checked)
            for kind, count in report.types.items():
                pipe.hincrby(TOTALS_KEY, f"events:{kind}", count)
            pipe.lpush(RUNS_KEY, report.to_json())
            pipe.ltrim(RUNS_KEY, 0, KEPT_RUNS - 1)
            pipe.execute()
        level = logging.WARNING if report.events or report.error else logging.INFO
        log.log(level, "%s", report.summary())
        return report


def _key(order: dict) -> tuple[int, str]:
    return _stamp(order.get("updatedAt"), 0), order["id"]


# --- running it ----------------------------------------------------------------------------


def run_once(
    settings: Settings, since: float | None = None, dry_run: bool = False,
    client: OrderSource | None = None, clock: Callable[[], float] = time.time,
) -> Report:  # fmt: skip
    """One pass under the lock (the `reconcile` command). Raises `Busy` when another pass
    runs, `ConfigError` without API credentials. `clock` as for `Reconciler`."""
    if client is None:
        from .api import client_from_settings

        client = client_from_settings(settings)
    connection = connect(settings)
    reconciler = Reconciler(connection, settings, client, clock=clock)
    if dry_run:
        return reconciler.run(since, dry_run=True)
    lock = Lock(connection)
    with lock.held():
        reconciler.lock = lock
        return reconciler.run(since)


def start_periodic(settings: Settings) -> threading.Thread | None:
    """In a worker: a thread that runs a pass every `TW_RECONCILE_INTERVAL_SECONDS`, one
    worker at a time; None (and a log line saying why) when it cannot run."""
    interval = settings.reconcile_interval_seconds
    if not interval:
        return None
    try:
        settings.require_api_credentials()
    except ConfigError as exc:
        log.warning("reconciliation off: %s", exc)
        return None
    thread = threading.Thread(target=_periodic, args=(settings,), name="reconcile", daemon=True)
    thread.start()
    log.info("reconciliation with the API every %d s (one worker at a time)", interval)
    return thread


def _periodic(settings: Settings) -> None:
    from .api import client_from_settings

    interval = settings.reconcile_interval_seconds
    connection = connect(settings)
    reconciler = Reconciler(connection, settings, client_from_settings(settings))
    lock = Lock(connection, max(LOCK_SECONDS, 2 * interval))
    reconciler.lock = lock
    # Every worker looks often; the first to claim the interval (`DUE_KEY`) runs its pass.
    look = max(0.2, interval / 5)
    while True:
        time.sleep(look * random.uniform(0.8, 1.2))
        try:
            if not connection.set(DUE_KEY, os.getpid(), nx=True, px=interval * 1000):
                continue
            with lock.held():
                reconciler.run()
        except Busy:
            log.info("reconcile: the previous pass still runs; this interval's is skipped")
        except Exception:  # a bad pass must not end the loop
            log.exception("reconcile: pass failed")
