"""The receiver's app factory: its parts, its blueprints, request ids and the error shape.

`create_app` builds the parts once (`webhooks.Receiver`: settings, intake, the secrets
and their counters, the books of answered requests) and registers the blueprints:
`webhooks` (the one route deliveries come to) and `health` (probes). Every answer carries
its request id in `X-Request-Id`, so partner and sender can talk about one delivery, and
every answer other than a success is `{"error": {"code", "message", "requestId"}}` with a
stable code per cause (`http_errors`).
"""

from __future__ import annotations

import logging
import os
import time

import redis
from flask import Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException, NotFound

from . import health, logs, metrics, signature, tallies, webhooks
from .answered import Answered, Books
from .config import Settings, settings_from_env
from .connection import connect
from .http_errors import HTTP_ERROR_CODES, REQUEST_ID_HEADER, HttpError, error_response
from .intake import Intake

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
# A full queue drains at the workers' pace, not in a few seconds: ask for a longer pause.
QUEUE_FULL_RETRY_AFTER_SECONDS = 30
RETRY_AFTER = {429: QUEUE_FULL_RETRY_AFTER_SECONDS, 503: RETRY_AFTER_SECONDS}


def create_app(settings: Settings | None = None, connection: redis.Redis | None = None) -> Flask:
    """Build the receiver. Raises `ConfigError` when no signing secret is configured."""
    # Under gunicorn (no settings given) each request's bookkeeping and log line are done
    # in batches off the request path; given settings (tests, an embedding app), at once.
    batched = settings is None
    if settings is None:
        settings = settings_from_env()
        # Under gunicorn nobody else sets up logging; a host app that did is left alone.
        logs.configure_if_unset(settings.log_format, settings.log_level, batched=True)
    secrets = settings.require_secrets()
    if connection is None:
        connection = connect(settings)
    intake = Intake(connection, settings)
    tallies.TALLY.bind(connection)
    fingerprints = tuple(signature.fingerprint(secret) for secret in secrets)

    app = Flask(__name__)
    app.extensions["tw_receiver"] = webhooks.Receiver(
        settings=settings,
        intake=intake,
        books=Books() if batched else Books(interval=None),
        secrets=tuple(secrets),
        fingerprints=fingerprints,
        verified_counters=tuple(
            metrics.VERIFIED.labels(str(position), fingerprint)
            for position, fingerprint in enumerate(fingerprints, 1)
        ),
    )
    app.extensions["tw_settings"] = settings
    app.extensions["tw_intake"] = intake

    app.before_request(assign_request_id)
    app.after_request(note_answer)
    app.register_blueprint(webhooks.bp, url_prefix=settings.webhook_path)
    app.register_blueprint(health.bp)
    app.register_error_handler(HttpError, answer_http_error)
    app.register_error_handler(HTTPException, answer_werkzeug_error)
    app.register_error_handler(Exception, answer_unexpected_error)
    return app


# `g`, `request` and `current_app` are proxies, each use a lookup of the request's context:
# the hot path reads each once (`_get_current_object`, Werkzeug's documented way to do so).


def assign_request_id() -> None:
    """Give the request its id, start its clock, and put the app's parts in `g.receiver`
    for the view and `note_answer` (one lookup of the app per request)."""
    state = g._get_current_object()
    state.receiver = current_app._get_current_object().extensions["tw_receiver"]
    state.request_id = "req_" + os.urandom(8).hex()
    state.started = time.perf_counter()


def note_answer(response: Response) -> Response:
    """Echo the request id, and note the answer for the counters and the log line
    (`answered`): at once, or in batches off the request path under gunicorn."""
    state, answered = g._get_current_object(), request._get_current_object()
    response.headers[REQUEST_ID_HEADER] = state.request_id
    event = state.get("event")
    state.receiver.books.note(
        Answered(
            time.time(),
            response.status_code,
            answered.endpoint == webhooks.ENDPOINT,
            state.get("outcome", "ok"),
            event["id"] if event else None,
            event["type"] if event else None,
            state.request_id,
            answered.method,
            answered.path,
            time.perf_counter() - state.started,
        )
    )
    return response


def answer_http_error(exc: HttpError) -> Response:
    g.outcome = exc.code
    response = error_response(exc.status, exc.code, exc.message)
    if exc.status in RETRY_AFTER:
        response.headers["Retry-After"] = str(RETRY_AFTER[exc.status])
    return response


def answer_werkzeug_error(exc: HTTPException) -> Response:
    """An error Werkzeug raised before a view ran (no route, wrong method, too large), in
    the error shape."""
    status = exc.code or 500
    code = HTTP_ERROR_CODES.get(status, "http_error")
    g.outcome = code
    settings = current_app.extensions["tw_settings"]
    if status == 413:
        message = f"The body is larger than the limit of {settings.max_body_bytes} bytes."
    elif isinstance(exc, NotFound):
        message = (
            f"Nothing is served at {request.path}: the API posts webhooks to "
            f"{settings.webhook_path}."
        )
    else:
        message = exc.description or exc.name
    response = error_response(status, code, message)
    if status == 405:
        response.headers["Allow"] = ", ".join(exc.valid_methods or ())
    return response


def answer_unexpected_error(exc: Exception) -> Response:
    log.exception("unexpected error in request %s", g.get("request_id"))
    g.outcome = "internal_error"
    return error_response(500, "internal_error", "Internal error; retry later.")
