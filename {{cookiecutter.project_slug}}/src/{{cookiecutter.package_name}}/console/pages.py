"""The console's pages, as a blueprint: the overview, events, one event, failed events
(with their retry buttons) and the capture archive.

Read with the same queries as the `events` and `failed` commands (`queries`,
`event_status`, `event_filters`); the retry buttons are `failed retry`'s one write
(`recovery.retry`). Every view runs after `guard.admit` has let the request in.
"""

from __future__ import annotations

import io
import logging
import time
from collections import deque
from urllib.parse import urlencode

from flask import Blueprint, Response, abort, redirect, render_template, request, url_for

from .. import capture, event_filters, event_status, lanes, recovery
from . import charts, queries
from .forms import BadFilter, event_filter, event_query, local_path, page_number
from .state import current_console

log = logging.getLogger(__name__)

bp = Blueprint("pages", __name__)

PAGE_SIZE = 50
CAPTURED_SHOWN = 100
DELIVERY_FIELDS = {"accepted": "ok", "duplicate": "dup", "rejected": "warn", "error": "bad"}
HANDLER_FIELDS = {"ok": "ok", "failed": "bad"}


def handler_outcomes(rows: list[tuple[int, dict[str, int]]]) -> list[tuple[int, dict[str, int]]]:
    """The `handlers` series summed over handlers: {"ok": n, "failed": n} per minute."""
    summed = []
    for minute, counts in rows:
        totals = {"ok": 0, "failed": 0}
        for name, number in counts.items():
            totals["failed" if name.startswith("failed:") else "ok"] += number
        summed.append((minute, totals))
    return summed


@bp.get("/")
def overview() -> str:
    connection = current_console().connection
    data = queries.overview(connection)
    return render_template(
        "overview.html",
        data=data,
        deliveries=charts.stacked_bars(data.deliveries, DELIVERY_FIELDS),
        handlers=charts.stacked_bars(handler_outcomes(data.handlers), HANDLER_FIELDS),
        delivery_fields=DELIVERY_FIELDS,
        handler_fields=HANDLER_FIELDS,
        now=time.time(),
        blocked_lanes=lanes.list_lanes(connection, blocked_only=True, limit=20),
    )


def events_page(template: str, status: str = "", **extra) -> tuple[str, int]:
    page = page_number(request.args)
    try:
        query = event_query(request.args, status)
    except BadFilter as exc:
        return render_template(
            template, error=str(exc), query=None, found=None, page=page, **extra
        ), 400
    connection = current_console().connection
    found = queries.find_events(connection, query, (page - 1) * PAGE_SIZE, PAGE_SIZE)
    args = {k: v for k, v in request.args.items() if k != "page" and v}
    return render_template(
        template, error="", query=query, found=found, page=page,
        prev_url=f"?{urlencode({**args, 'page': page - 1})}" if page > 1 else "",
        next_url=f"?{urlencode({**args, 'page': page + 1})}" if found.more else "",
        scan_limit=queries.SCAN_LIMIT, **extra,
    ), 200  # fmt: skip


@bp.get("/events")
def events() -> tuple[str, int]:
    return events_page("events.html")


@bp.get("/events/<path:event_id>")
def event(event_id: str) -> str:
    console = current_console()
    connection = console.connection
    info = queries.show(connection, event_id, console.settings.dedupe_window_seconds)
    archived = event_status.captured(connection, event_id)
    if info is None and archived is None:
        abort(404, f"No trace of event {event_id} in this Redis.")
    envelope = info.envelope if info is not None and info.envelope else None
    body = queries.pretty_json(envelope if envelope else archived.body)
    return render_template(
        "event.html",
        event_id=event_id,
        info=info,
        archived=archived,
        headers=queries.shown_headers(archived.headers) if archived else [],
        body=body,
        attempts=queries.attempts(connection, event_id) if info else [],
        requeued=request.args.get("requeued", type=int),
    )


@bp.get("/failed")
def failed() -> tuple[str, int]:
    return events_page(
        "failed.html",
        status="failed",
        requeued=request.args.get("requeued", type=int),
        not_failed=request.args.get("not_failed", 0, type=int),
    )


def requeue(ids: list[str]) -> Response:
    console = current_console()
    done = errors = 0
    for event_id in ids:
        try:
            recovery.retry(console.connection, console.settings, event_id)
            done += 1
        except recovery.NotFailed as exc:
            log.info("console: %s", exc)
            errors += 1
    back = local_path(request.form.get("back", ""), url_for("pages.failed")).split("?", 1)[0]
    return redirect(f"{back}?{urlencode({'requeued': done, 'not_failed': errors})}", 303)


@bp.post("/failed/retry")
def retry() -> Response:
    ids = [i for i in request.form.getlist("id") if i]
    if not ids:
        abort(400, "Tick at least one event to retry.")
    return requeue(ids)


@bp.post("/failed/retry-matching")
def retry_matching() -> Response:
    try:
        query = event_query(request.form, status="failed")
    except BadFilter as exc:
        abort(400, str(exc))
    matching = event_filters.failed_matching(current_console().connection, query.filter)
    return requeue([info.id for info in matching if query.matches(info)])


def captured_filter() -> event_filters.EventFilter:
    try:
        return event_filter(request.args)
    except BadFilter as exc:
        abort(400, str(exc))


@bp.get("/captured")
def captured() -> str:
    console = current_console()
    # Oldest first, as the archive is read; the newest are listed.
    matching = event_filters.captured_matching(console.connection, captured_filter())
    newest = deque(matching, CAPTURED_SHOWN)
    return render_template(
        "captured.html", rows=list(reversed(newest)), size=capture.size(console.connection),
        capture_on=bool(console.settings.capture_max_events), shown=CAPTURED_SHOWN,
    )  # fmt: skip


@bp.get("/captured/export.jsonl")
def export() -> Response:
    out = io.BytesIO()
    event_filters.export_matching(current_console().connection, out, captured_filter())
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return Response(
        out.getvalue(),
        mimetype="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="captured-{stamp}.jsonl"'},
    )
