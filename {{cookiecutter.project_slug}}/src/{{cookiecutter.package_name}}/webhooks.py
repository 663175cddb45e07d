"""`POST <webhook path>`: one delivery through the receiver, as a blueprint.

Size limit (however the body is framed), then the signature over the raw bytes, then the
envelope, then `Intake.submit`. Bad input is always a 4xx; a 5xx means "retry later" and
is sent only when the event could not be stored, so the sender's retries never cost an
event. A 429 means the same for a queue already holding `TW_MAX_QUEUE_DEPTH` events nobody
has taken yet: the sender backs off instead of filling Redis.

The path is the settings' (`TW_WEBHOOK_PATH`): the app registers the blueprint with it as
its `url_prefix`, and the one route is the prefix itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis
from flask import Blueprint, Request, Response, g, request
from gunicorn.http.errors import ParseException
from prometheus_client import Counter
from werkzeug.exceptions import RequestEntityTooLarge

from . import capture, events, signature
from .answered import Books
from .config import Settings
from .http_errors import HttpError, json_response
from .intake import Intake, QueueFull
from .replication import NotReplicated

log = logging.getLogger(__name__)

bp = Blueprint("webhooks", __name__)
# The endpoint of a delivery, as `request.endpoint` names it.
ENDPOINT = "webhooks.receive"


@dataclass(frozen=True)
class Receiver:
    """One receiver app's parts, built once by `create_app` and shared by its request
    threads (`app.extensions["tw_receiver"]`, and `g.receiver` during a request)."""

    settings: Settings
    intake: Intake
    books: Books
    secrets: tuple[str, ...]
    # Per secret, by position: its fingerprint and its counter, built once (labels() per
    # request would cost a dictionary lookup under a lock).
    fingerprints: tuple[str, ...]
    verified_counters: tuple[Counter, ...]


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


# `g` and `request` are proxies, each use a lookup of the request's context: the hot path
# reads each once (`_get_current_object`, Werkzeug's documented way to do so), and finds
# the app's parts in `g.receiver` (`app.assign_request_id` put them there).


@bp.post("")
def receive() -> Response:
    state, delivery = g._get_current_object(), request._get_current_object()
    parts: Receiver = state.receiver
    settings = parts.settings
    try:
        body = read_body(delivery, settings.max_body_bytes)
    except TimeoutError:  # the web worker's deadline on a body that was still coming
        raise HttpError(408, "request_timeout", "The body did not arrive in time.") from None
    except BODY_FRAMING_ERRORS:
        raise HttpError(
            400, "malformed_body", "The body ended early or its chunked framing is broken."
        ) from None
    try:
        matched = signature.check(
            delivery.headers.get(signature.HEADER),
            body,
            parts.secrets,
            tolerance=settings.tolerance_seconds,
        ).secret_index
        parts.verified_counters[matched].inc()
        envelope = events.parse(body)
        state.event = envelope
    except signature.SignatureError as exc:
        raise HttpError(401, exc.code, exc.message) from None
    except events.InvalidEvent as exc:
        raise HttpError(400, exc.code, exc.message) from None
    archive = None
    if settings.capture_max_events:
        archive = capture.entry(envelope, body, delivery.headers.items(), state.request_id)
    try:
        added = parts.intake.submit(envelope, body, archive, parts.fingerprints[matched])
    except QueueFull as exc:
        raise HttpError(429, "queue_full", f"Not stored: {exc}; retry later.") from None
    except NotReplicated as exc:
        # Maybe stored on the primary alone: the retry is a duplicate, or a first
        # receipt on a new primary after a failover; either way nothing is lost.
        log.warning("event %s not acknowledged: %s", envelope["id"], exc)
        raise HttpError(503, "not_replicated", f"Not acknowledged: {exc}; retry later.") from None
    except redis.RedisError as exc:
        log.error("event %s not stored, Redis failed: %s", envelope["id"], exc)
        raise HttpError(
            503, "storage_unavailable", "Could not store the event; retry later."
        ) from exc
    status = "accepted" if added else "duplicate"
    state.outcome = status
    return json_response(
        {"status": status, "id": envelope["id"], "requestId": state.request_id},
        202 if added else 200,
    )
