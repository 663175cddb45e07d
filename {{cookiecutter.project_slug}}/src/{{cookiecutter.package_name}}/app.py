"""The web tier: routes, limits and the API's error shape.

`POST <webhook path>` runs one event through the receiver: size limit (however the body is
framed), then the signature over the raw bytes, then the envelope, then `Intake.submit`.
Every answer other than a success is `{"error": {"code", "message", "requestId"}}` with a
stable code per cause, and the request id is echoed in the `X-Request-Id` header so
partner and sender can talk about one delivery. Bad input is always a 4xx; a 5xx means
"retry later" and is sent only when the event could not be stored, so the sender's
retries never cost an event. A 429 means the same for a queue already holding
`TW_MAX_QUEUE_DEPTH` events nobody has taken yet: the sender backs off instead of filling
Redis.
"""

from __future__ import annotations

import json
import logging
import os
import time

import redis
from flask import Flask, Request, Response, g, request
from gunicorn.http.errors import ParseException
from werkzeug.exceptions import HTTPException, NotFound, RequestEntityTooLarge

from . import capture, events, logs, metrics, signature, tallies
from .answered import Answered, Books
from .config import Settings, settings_from_env
from .connection import connect
from .intake import Intake, QueueFull
from .replication import NotReplicated

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-Id"
RETRY_AFTER_SECONDS = 5
# A full queue drains at the workers' pace, not in a few seconds: ask for a longer pause.
QUEUE_FULL_RETRY_AFTER_SECONDS = 30
RETRY_AFTER = {429: QUEUE_FULL_RETRY_AFTER_SECONDS, 503: RETRY_AFTER_SECONDS}

# Stable codes for the errors Werkzeug raises before our view runs.
HTTP_ERROR_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
}


# An oversized chunked body is read on to its end, up to this many times the limit, before
# the 413 goes out: a sender still sending when the answer comes may otherwise see its
# connection reset instead of the 413.
DISCARD_LIMIT_FACTOR = 4


def discard_rest_of_body(at_most: int) -> None:
    """Read and drop what is left of a body that announced no length, up to `at_most`."""
    stream = request.environ["wsgi.input"]  # the server's: it ends where the body ends
    while at_most > 0:
        chunk = stream.read(min(at_most, 64 * 1024))
        if not chunk:
            return
        at_most -= len(chunk)


# What the server's input stream raises when the sender breaks the body's framing, which
# is the sender's fault (a 400, no traceback): gunicorn's parse errors (a chunk size that is
# not hex, a chunk without its CRLF) and an `OSError` for a connection that ends before the
# body does (gunicorn's `NoMoreData`; Werkzeug's dev server on a bad chunk header).
BODY_FRAMING_ERRORS = (ParseException, OSError, ValueError)


def read_body(delivery: Request, limit: int) -> bytes:
    """The body, or `RequestEntityTooLarge` when it is over `limit` bytes, however it is
    framed. A Content-Length over the limit is refused before anything is read. A body that
    announces no length (chunked) is read to one byte past the limit, so that one over it
    is seen to be over, and what is left of it is read and dropped before the 413 goes out.

    Not Flask's MAX_CONTENT_LENGTH: under a server that ends the stream itself (gunicorn),
    Werkzeug then reads every body through a `LimitedStream`, in several calls, where a
    body of known length is otherwise read in one.
    """
    length = delivery.content_length
    if length is not None:
        if length > limit:
            raise RequestEntityTooLarge()
        return delivery.get_data(cache=False)
    body = delivery.stream.read(limit + 1)
    if len(body) > limit:
        discard_rest_of_body(DISCARD_LIMIT_FACTOR * limit)
        raise RequestEntityTooLarge()
    return body


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


# One encoder for every answer: `json.dumps` with `separators` builds a new one per call.
_encode = json.JSONEncoder(separators=(",", ":")).encode


def _json(payload: dict, status: int) -> Response:
    return Response(_encode(payload), status, mimetype="application/json")


def error_response(status: int, code: str, message: str) -> Response:
    """An error in the API's shape, carrying the current request id."""
    body = {"error": {"code": code, "message": message, "requestId": g.get("request_id")}}
    return _json(body, status)


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
    books = Books() if batched else Books(interval=None)
    tallies.TALLY.bind(connection)
    # Per secret, by position: its fingerprint and its counter, built once (labels() per
    # request would cost a dictionary lookup under a lock).
    fingerprints = [signature.fingerprint(secret) for secret in secrets]
    verified_counters = [
        metrics.VERIFIED.labels(str(position), fingerprint)
        for position, fingerprint in enumerate(fingerprints, 1)
    ]

    app = Flask(__name__)
    too_large = f"The body is larger than the limit of {settings.max_body_bytes} bytes."
    app.extensions["tw_intake"] = intake
    app.extensions["tw_settings"] = settings

    def not_found(path: str) -> str:
        return f"Nothing is served at {path}: the API posts webhooks to {settings.webhook_path}."

    # `g` and `request` are proxies, each use a lookup of the request's context: the hot
    # path reads each once (`_get_current_object`, Werkzeug's documented way to do so).

    @app.before_request
    def assign_request_id() -> None:
        state = g._get_current_object()
        state.request_id = "req_" + os.urandom(8).hex()
        state.started = time.perf_counter()

    @app.after_request
    def note_answer(response: Response) -> Response:
        state, answered = g._get_current_object(), request._get_current_object()
        response.headers[REQUEST_ID_HEADER] = state.request_id
        event = state.get("event")
        books.note(
            Answered(
                time.time(),
                response.status_code,
                answered.endpoint == "receive_webhook",
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

    def receive_webhook() -> Response:
        state, delivery = g._get_current_object(), request._get_current_object()
        try:
            body = read_body(delivery, settings.max_body_bytes)
        except TimeoutError:  # the web worker's deadline on a body that was still coming
            raise ApiError(408, "request_timeout", "The body did not arrive in time.") from None
        except BODY_FRAMING_ERRORS:
            raise ApiError(
                400, "malformed_body", "The body ended early or its chunked framing is broken."
            ) from None
        try:
            matched = signature.check(
                delivery.headers.get(signature.HEADER),
                body,
                secrets,
                tolerance=settings.tolerance_seconds,
            ).secret_index
            verified_counters[matched].inc()
            envelope = events.parse(body)
            state.event = envelope
        except signature.SignatureError as exc:
            raise ApiError(401, exc.code, exc.message) from None
        except events.InvalidEvent as exc:
            raise ApiError(400, exc.code, exc.message) from None
        archive = None
        if settings.capture_max_events:
            archive = capture.entry(envelope, body, delivery.headers.items(), state.request_id)
        try:
            added = intake.submit(envelope, body, archive, fingerprints[matched])
        except QueueFull as exc:
            raise ApiError(429, "queue_full", f"Not stored: {exc}; retry later.") from None
        except NotReplicated as exc:
            # Maybe stored on the primary alone: the retry is a duplicate, or a first
            # receipt on a new primary after a failover; either way nothing is lost.
            log.warning("event %s not acknowledged: %s", envelope["id"], exc)
            raise ApiError(
                503, "not_replicated", f"Not acknowledged: {exc}; retry later."
            ) from None
        except redis.RedisError as exc:
            log.error("event %s not stored, Redis failed: %s", envelope["id"], exc)
            raise ApiError(
                503, "storage_unavailable", "Could not store the event; retry later."
            ) from exc
        status = "accepted" if added else "duplicate"
        state.outcome = status
        return _json(
            {"status": status, "id": envelope["id"], "requestId": state.request_id},
            202 if added else 200,
        )

    app.add_url_rule(settings.webhook_path, "receive_webhook", receive_webhook, methods=["POST"])

    @app.get("/healthz")
    def healthz() -> Response:
        return _json({"status": "ok"}, 200)

    @app.get("/readyz")
    def readyz() -> Response:
        try:
            connection.ping()
        except redis.RedisError:
            raise ApiError(503, "storage_unavailable", "Redis is not reachable.") from None
        return _json({"status": "ready"}, 200)

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Response:
        g.outcome = exc.code
        response = error_response(exc.status, exc.code, exc.message)
        if exc.status in RETRY_AFTER:
            response.headers["Retry-After"] = str(RETRY_AFTER[exc.status])
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = HTTP_ERROR_CODES.get(status, "http_error")
        g.outcome = code
        if status == 413:
            message = too_large
        elif isinstance(exc, NotFound):
            message = not_found(request.path)
        else:
            message = exc.description or exc.name
        response = error_response(status, code, message)
        if status == 405:
            response.headers["Allow"] = ", ".join(exc.valid_methods or ())
        return response

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception) -> Response:
        log.exception("unexpected error in request %s", g.get("request_id"))
        g.outcome = "internal_error"
        return error_response(500, "internal_error", "Internal error; retry later.")

    return app
