"""The console's Flask app: pages to see, search and recover events.

Its own app on its own port (`cli console`), never mounted on the receiver: the public
webhook port exposes nothing of it. Pages are rendered on the server with Jinja
(autoescaped: event content comes from outside); the forms work without JavaScript.
Every change is a POST carrying the session's CSRF token and, from a browser, this
console's own origin; `read_only` hides the forms and refuses those POSTs with 403.
Without a token only the loopback names are answered (421 otherwise), so another site
cannot rebind its name to the console. See `security` for who may come in, `guard` for
how each request is checked.

`create_app` builds the console's parts (`state.Console`), configures Flask's session
and registers the blueprints: `auth` (login, logout) and `pages`.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta

import redis
from flask import Flask, g, render_template, request
from markupsafe import Markup
from werkzeug.exceptions import HTTPException

from .. import event_status
from ..config import Settings
from . import auth, guard, pages
from .security import COOKIE, SESSION_SECONDS, allowed_hosts, session_key
from .state import Console, current_console

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    connection: redis.Redis,
    token: str = "",
    read_only: bool = False,
    host: str = "127.0.0.1",
) -> Flask:
    """Build the console. `token` (TW_CONSOLE_TOKEN) makes every page ask for it; `host`
    is the address it listens on, which decides the `Host` names it answers to."""
    app = Flask(__name__)
    app.extensions["tw_console"] = Console(
        settings, connection, token, read_only, allowed_hosts(host, token)
    )
    app.config.update(
        MAX_CONTENT_LENGTH=1024 * 1024,
        SECRET_KEY=session_key(token),
        SESSION_COOKIE_NAME=COOKIE,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=SESSION_SECONDS),
        # A session lasts SESSION_SECONDS from its start (or login), however busy.
        SESSION_REFRESH_EACH_REQUEST=False,
    )
    app.session_interface = guard.ConsoleSessions()
    app.jinja_env.finalize = printable  # every value any page prints
    app.add_template_filter(when)
    app.add_template_filter(age)
    app.context_processor(page_context)
    app.before_request(guard.admit)
    app.after_request(guard.protect)
    app.register_blueprint(auth.bp)
    app.register_blueprint(pages.bp)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(redis.RedisError, redis_error)
    app.register_error_handler(Exception, unexpected_error)
    return app


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


def when(moment: datetime | float | None) -> str:
    if moment is None:
        return "-"
    if isinstance(moment, int | float):
        moment = datetime.fromtimestamp(moment, UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def page_context() -> dict:
    console = current_console()
    return {
        "csp_nonce": g.get("csp_nonce", ""),
        # Empty on a page refused before the session was looked at (a 421, a wrong token).
        "csrf_token": g.get("csrf_token", ""),
        "read_only": console.read_only,
        "token_required": console.token_required,
        "statuses": event_status.STATUSES,
    }


def http_error(exc: HTTPException) -> tuple[str, int]:
    status = exc.code or 500
    return render_template("error.html", status=status, message=exc.description), status


def redis_error(exc: redis.RedisError) -> tuple[str, int]:
    log.warning("console: Redis failed: %s", exc)
    message = "Redis did not answer; the page will work again once it does."
    return render_template("error.html", status=503, message=message), 503


def unexpected_error(exc: Exception) -> tuple[str, int]:
    log.exception("console: unexpected error on %s", request.path)
    message = "Something went wrong in the console; its log has the details."
    return render_template("error.html", status=500, message=message), 500
