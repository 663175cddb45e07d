"""The console's Flask app: pages to see, search and recover events.

Its own app on its own port (`cli console`), never mounted on the receiver: the public
webhook port exposes nothing of it. Pages are rendered on the server with Jinja
(autoescaped: event content comes from outside); the forms work without JavaScript.
Every change is a POST carrying the session's CSRF token and, from a browser, this
console's own origin; `read_only` hides the forms and refuses those POSTs with 403.
Without a token only the loopback names are answered (421 otherwise), so another site
cannot rebind its name to the console. See `security` for who may come in.
"""

from __future__ import annotations

import io
import logging
import re
import secrets
import time
from collections import deque
from datetime import UTC, datetime
from urllib.parse import urlencode

import redis
from flask import Flask, Response, abort, g, redirect, render_template, request, url_for
from markupsafe import Markup
from werkzeug.exceptions import HTTPException

from .. import capture, event_filters, event_status, lanes, recovery
from ..config import Settings
from . import charts, queries
from .security import (
    COOKIE,
    SESSION_SECONDS,
    Guard,
    allowed_hosts,
    bearer,
    host_name,
    same_origin,
)

log = logging.getLogger(__name__)

PAGE_SIZE = 50
CAPTURED_SHOWN = 100
# Endpoints that change something: refused when the console is read-only.
ACTIONS = {"retry", "retry_matching"}
OPEN_ENDPOINTS = {"login"}
DELIVERY_FIELDS = {"accepted": "ok", "duplicate": "dup", "rejected": "warn", "error": "bad"}
HANDLER_FIELDS = {"ok": "ok", "failed": "bad"}


# A UTF-16 surrogate on its own: JSON may carry one (`"\ud800"`), UTF-8 cannot.
LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def printable(value: object) -> object:
    r"""What a page shows for `value`: itself, but a lone surrogate in a text (which an
    event may carry, escaped in its JSON) as the escape it came as, `\ud800`: a page is
    UTF-8, which has no such character, and answering 500 would hide the whole event."""
    if not isinstance(value, str) or not LONE_SURROGATE.search(value):
        return value
    shown = LONE_SURROGATE.sub(lambda found: f"\\u{ord(found.group()):04x}", value)
    return Markup(shown) if isinstance(value, Markup) else shown


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


def handler_outcomes(rows: list[tuple[int, dict[str, int]]]) -> list[tuple[int, dict[str, int]]]:
    """The `handlers` series summed over handlers: {"ok": n, "failed": n} per minute."""
    summed = []
    for minute, counts in rows:
        totals = {"ok": 0, "failed": 0}
        for name, number in counts.items():
            totals["failed" if name.startswith("failed:") else "ok"] += number
        summed.append((minute, totals))
    return summed


def create_app(
    settings: Settings,
    connection: redis.Redis,
    token: str = "",
    read_only: bool = False,
    host: str = "127.0.0.1",
) -> Flask:
    """Build the console. `token` (TW_CONSOLE_TOKEN) makes every page ask for it; `host`
    is the address it listens on, which decides the `Host` names it answers to."""
    guard = Guard(token)
    hosts = allowed_hosts(host, token)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
    app.jinja_env.finalize = printable  # every value any page prints

    @app.template_filter("when")
    def when(moment: datetime | float | None) -> str:
        if moment is None:
            return "-"
        if isinstance(moment, int | float):
            moment = datetime.fromtimestamp(moment, UTC)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

    @app.template_filter("age")
    def age(seconds: float | None) -> str:
        if seconds is None:
            return "-"
        if seconds < 120:
            return f"{seconds:.0f} s"
        if seconds < 7200:
            return f"{seconds / 60:.0f} min"
        return f"{seconds / 3600:.1f} h"

    @app.context_processor
    def page_context() -> dict:
        session = g.get("session")
        return {
            "csp_nonce": g.get("csp_nonce", ""),
            "csrf_token": guard.csrf_token(session) if session else "",
            "read_only": read_only,
            "token_required": guard.required,
            "statuses": event_status.STATUSES,
        }

    def refuse_other_sites() -> None:
        """Abort unless the browser took this console for itself: asked by one of its own
        names (DNS rebinding asks by another), and a POST sent by one of its own pages."""
        if hosts is not None and host_name(request.host) not in hosts:
            abort(
                421,
                f"This console answers only to {', '.join(sorted(hosts))} (any port), not "
                f"to {request.host!r}: open it by one of those names. A page of another site "
                "that points its own name at this machine is refused this way.",
            )
        origin = request.headers.get("Origin")
        referer = request.headers.get("Referer")
        if request.method == "POST" and not same_origin(origin, referer, request.host):
            abort(
                403,
                f"This form was sent by a page of {origin if origin is not None else referer!r}, "
                f"not by this console ({request.host}): changes are taken only from the "
                "console's own pages.",
            )

    @app.before_request
    def admit() -> Response | None:
        g.csp_nonce = secrets.token_urlsafe(16)
        refuse_other_sites()
        g.session = guard.read_session(request.cookies.get(COOKIE))
        g.new_cookie = None
        by_header = bearer(request.headers.get("Authorization")) if guard.required else None
        if by_header is not None and not guard.token_matches(by_header):
            abort(401, "The bearer token is not the console's token.")
        if g.session is None:
            g.session, g.new_cookie = guard.new_session(authenticated=False)
        admitted = not guard.required or by_header is not None or g.session.authenticated
        if not admitted and request.endpoint not in OPEN_ENDPOINTS:
            if request.method != "GET":
                abort(401, "Log in first.")
            return redirect(url_for("login", next=request.full_path.rstrip("?")))
        if request.method == "POST":
            # A bearer token is never sent by a browser on its own: no CSRF to fear.
            given = request.form.get("csrf")
            if by_header is None and not given:
                abort(
                    403,
                    "Refused: this POST carries no CSRF token (the hidden `csrf` field of the "
                    "console's forms), so nothing shows it came from a page of this console. "
                    "Use the console's own buttons (with TW_CONSOLE_TOKEN set, a script may "
                    "send `Authorization: Bearer <token>` instead).",
                )
            if by_header is None and not guard.csrf_matches(g.session, given):
                abort(
                    403,
                    "Refused: the form's CSRF token is not this session's (the page is older "
                    "than your session, or came from elsewhere). Reload the page and try again.",
                )
            if read_only and request.endpoint in ACTIONS:
                abort(403, "This console is read-only.")
        return None

    @app.after_request
    def protect(response: Response) -> Response:
        nonce = g.get("csp_nonce", "")
        response.headers["Content-Security-Policy"] = (
            f"default-src 'self'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; "
            "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        )
        response.headers["X-Frame-Options"] = "DENY"
        # No address of the console ever leaves for another site; its own forms keep their
        # origin, which `same_origin` checks (under no-referrer a browser posts `Origin: null`).
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-store"
        if g.get("new_cookie"):
            set_cookie(response, g.new_cookie)
        return response

    def set_cookie(response: Response, value: str) -> None:
        # Behind a TLS proxy the console sees plain HTTP; trusting the proxy's word here
        # can only make the cookie stricter.
        https = request.is_secure or request.headers.get("X-Forwarded-Proto") == "https"
        response.set_cookie(
            COOKIE, value, max_age=SESSION_SECONDS, httponly=True, samesite="Strict",
            secure=https, path="/",
        )  # fmt: skip

    @app.route("/login", methods=["GET", "POST"])
    def login() -> Response | str:
        target = local_path(request.values.get("next", ""), url_for("overview"))
        if not guard.required:
            return redirect(target)
        failed = False
        if request.method == "POST":
            if guard.token_matches(request.form.get("token")):
                _session, cookie = guard.new_session(authenticated=True)
                response = redirect(target)
                g.new_cookie = None
                set_cookie(response, cookie)
                return response
            failed = True
        status = 401 if failed else 200
        return render_template("login.html", next=target, failed=failed), status

    @app.post("/logout")
    def logout() -> Response:
        response = redirect(url_for("login"))
        g.new_cookie = None
        response.delete_cookie(COOKIE, path="/")
        return response

    @app.get("/")
    def overview() -> str:
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
        found = queries.find_events(connection, query, (page - 1) * PAGE_SIZE, PAGE_SIZE)
        args = {k: v for k, v in request.args.items() if k != "page" and v}
        return render_template(
            template, error="", query=query, found=found, page=page,
            prev_url=f"?{urlencode({**args, 'page': page - 1})}" if page > 1 else "",
            next_url=f"?{urlencode({**args, 'page': page + 1})}" if found.more else "",
            scan_limit=queries.SCAN_LIMIT, **extra,
        ), 200  # fmt: skip

    @app.get("/events")
    def events() -> tuple[str, int]:
        return events_page("events.html")

    @app.get("/events/<path:event_id>")
    def event(event_id: str) -> str:
        info = queries.show(connection, event_id, settings.dedupe_window_seconds)
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

    @app.get("/failed")
    def failed() -> tuple[str, int]:
        return events_page(
            "failed.html",
            status="failed",
            requeued=request.args.get("requeued", type=int),
            not_failed=request.args.get("not_failed", 0, type=int),
        )

    def requeue(ids: list[str]) -> Response:
        done = errors = 0
        for event_id in ids:
            try:
                recovery.retry(connection, settings, event_id)
                done += 1
            except recovery.NotFailed as exc:
                log.info("console: %s", exc)
                errors += 1
        back = local_path(request.form.get("back", ""), url_for("failed")).split("?", 1)[0]
        return redirect(f"{back}?{urlencode({'requeued': done, 'not_failed': errors})}", 303)

    @app.post("/failed/retry")
    def retry() -> Response:
        ids = [i for i in request.form.getlist("id") if i]
        if not ids:
            abort(400, "Tick at least one event to retry.")
        return requeue(ids)

    @app.post("/failed/retry-matching")
    def retry_matching() -> Response:
        try:
            query = event_query(request.form, status="failed")
        except BadFilter as exc:
            abort(400, str(exc))
        matching = event_filters.failed_matching(connection, query.filter)
        return requeue([info.id for info in matching if query.matches(info)])

    def captured_filter() -> event_filters.EventFilter:
        try:
            return event_filter(request.args)
        except BadFilter as exc:
            abort(400, str(exc))

    @app.get("/captured")
    def captured() -> str:
        # Oldest first, as the archive is read; the newest are listed.
        newest = deque(
            event_filters.captured_matching(connection, captured_filter()), CAPTURED_SHOWN
        )
        return render_template(
            "captured.html", rows=list(reversed(newest)), size=capture.size(connection),
            capture_on=bool(settings.capture_max_events), shown=CAPTURED_SHOWN,
        )  # fmt: skip

    @app.get("/captured/export.jsonl")
    def export() -> Response:
        out = io.BytesIO()
        event_filters.export_matching(connection, out, captured_filter())
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        return Response(
            out.getvalue(),
            mimetype="application/x-ndjson",
            headers={"Content-Disposition": f'attachment; filename="captured-{stamp}.jsonl"'},
        )

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[str, int]:
        status = exc.code or 500
        response = render_template("error.html", status=status, message=exc.description)
        return response, status

    @app.errorhandler(redis.RedisError)
    def redis_error(exc: redis.RedisError) -> tuple[str, int]:
        log.warning("console: Redis failed: %s", exc)
        message = "Redis did not answer; the page will work again once it does."
        return render_template("error.html", status=503, message=message), 503

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception) -> tuple[str, int]:
        log.exception("console: unexpected error on %s", request.path)
        message = "Something went wrong in the console; its log has the details."
        return render_template("error.html", status=500, message=message), 500

    return app
