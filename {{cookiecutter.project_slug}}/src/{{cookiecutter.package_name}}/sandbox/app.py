"""The sandbox's web app: its parts, its factory, and what every request goes through first.

Each request to `/v1/...` passes, in this order: a request id; the client's rate limit
(429 past it, never stored); an injected fault when `fail_rate` says so (500/503, before
anything is done, never stored); the bearer token and the scope of the endpoint; the
`Idempotency-Key` on POST/PUT (a replay is answered here); the added latency, while the key
is held. Every answer carries `X-Request-Id` and `X-RateLimit-*`; errors are in the API's
shape (`http_errors`, as the receiver answers). The routes are blueprints: `api` (under
`/v1`) and `controls` (under `/_sandbox`, for tests and demos: no token, no limit, not
counted); this module holds the sandbox's parts (`State`), the factory and the pipeline.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from ..http_errors import HTTP_ERROR_CODES, REQUEST_ID_HEADER, HttpError, error_response
from ..rate_limit import RateLimiter
from . import api, controls, idempotency
from .api import SCOPE_OF, TOKEN_ENDPOINT, sandbox_state
from .auth import Tokens
from .idempotency import IdempotencyRecords, StoredResponse
from .options import Options
from .sender import WebhookSender
from .store import Store

log = logging.getLogger(__name__)


@dataclass
class Stats:
    """What `GET /_sandbox/stats` reports about the API requests (controls not counted)."""

    requests: int = 0
    by_status: Counter = field(default_factory=Counter)
    faults_injected: int = 0
    idempotent_replays: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, status: int) -> None:
        with self.lock:
            self.requests += 1
            self.by_status[str(status)] += 1


@dataclass
class State:
    """One sandbox's parts, shared by its request threads (`app.extensions["tw_sandbox"]`)."""

    options: Options
    store: Store
    tokens: Tokens
    limiter: RateLimiter
    keys: IdempotencyRecords
    sender: WebhookSender | None
    stats: Stats = field(default_factory=Stats)
    rng: random.Random = field(default_factory=random.Random)  # seeded by `seed`
    rng_lock: threading.Lock = field(default_factory=threading.Lock)

    def draw(self) -> float:
        """A uniform draw in [0, 1) for faults and jitter, repeatable under one seed."""
        with self.rng_lock:
            return self.rng.random()

    def stats_json(self) -> dict:
        with self.stats.lock:
            counted = {
                "requests": self.stats.requests,
                "byStatus": dict(sorted(self.stats.by_status.items())),
                "faultsInjected": self.stats.faults_injected,
                "idempotentReplays": self.stats.idempotent_replays,
            }
        return {
            **counted,
            "orders": self.store.order_count(),
            "tokensIssued": self.tokens.issued,
            "webhooks": self.sender.counts() if self.sender else None,
        }


def build_state(options: Options) -> State:
    sender = None
    if options.webhook_url:
        sender = WebhookSender(
            options.webhook_url,
            options.webhook_secret or "",
            options.webhook_max_attempts,
            options.webhook_backoff,
            options.webhook_retry_window,
            options.webhook_loss,
            options.seed,
        )
    store = Store(emit=sender.emit) if sender else Store()
    if options.sample_orders:
        store.add_sample_orders(options.client_id)
    return State(
        options=options,
        store=store,
        tokens=Tokens(options.clients, options.token_ttl),
        limiter=RateLimiter(options.rate_limit, aligned=True, clock=time.time),
        keys=IdempotencyRecords(options.idempotency_ttl),
        sender=sender,
        rng=random.Random(options.seed),
    )


def create_app(options: Options | None = None, state: State | None = None) -> Flask:
    """The sandbox API. Pass `state` to share or inspect it; it is built from `options`
    (default: `Options()`) otherwise."""
    if state is None:
        state = build_state(options or Options())
    app = Flask(__name__)
    app.extensions["tw_sandbox"] = state
    app.before_request(admit)
    app.after_request(finish)
    app.teardown_request(release_unfinished)
    app.register_blueprint(api.bp)
    app.register_blueprint(controls.bp)
    app.register_error_handler(HttpError, answer_http_error)
    app.register_error_handler(HTTPException, answer_werkzeug_error)
    app.register_error_handler(Exception, answer_unexpected_error)
    return app


# --- what every request goes through ---------------------------------------------------


def admit() -> Response | None:
    """The pipeline, in order; the first step that answers ends it."""
    g.request_id = "req_" + os.urandom(8).hex()
    g.control = request.path.startswith(controls.PREFIX + "/")
    if g.control:
        return None
    state = sandbox_state()
    return (
        _limit(state)
        or _fault(state)
        or _authenticate(state)
        or _begin_idempotent(state)
        or _delay(state)
    )


def _limit(state: State) -> Response | None:
    g.rate = state.limiter.hit(_client_key(state))
    if g.rate.allowed:
        return None
    response = error_response(429, "rate_limited", "Too many requests")
    response.headers["Retry-After"] = str(g.rate.retry_after())
    return response


def _fault(state: State) -> Response | None:
    options = state.options
    if not options.fail_rate or (request.endpoint == TOKEN_ENDPOINT and not options.fail_token):
        return None
    if state.draw() >= options.fail_rate:
        return None
    with state.stats.lock:
        state.stats.faults_injected += 1
    if state.draw() < 0.5:
        return error_response(500, "internal_error", "Injected fault; retry later.")
    response = error_response(503, "service_unavailable", "Injected fault; retry later.")
    response.headers["Retry-After"] = "1"
    return response


def _authenticate(state: State) -> None:
    if request.endpoint in SCOPE_OF:
        token = state.tokens.authenticate(
            request.headers.get("Authorization"), SCOPE_OF[request.endpoint]
        )
        g.client_id = token.client_id


def _begin_idempotent(state: State) -> Response | None:
    header = request.headers.get(idempotency.HEADER)
    if header is None or request.method not in ("POST", "PUT") or "client_id" not in g:
        return None
    key = idempotency.parse_key(header)
    fingerprint = idempotency.fingerprint(request.method, request.path, request.get_data())
    stored = state.keys.begin(g.client_id, key, fingerprint)
    if stored is None:
        g.idempotency_key = key
        return None
    with state.stats.lock:
        state.stats.idempotent_replays += 1
    response = Response(stored.body, stored.status, content_type=stored.content_type)
    response.headers[idempotency.REPLAYED_HEADER] = "true"
    return response


def _delay(state: State) -> None:
    delay_ms = state.options.latency_ms
    if state.options.latency_jitter_ms:
        delay_ms += state.options.latency_jitter_ms * state.draw()
    if delay_ms:
        time.sleep(delay_ms / 1000)


def finish(response: Response) -> Response:
    """Keep the answer for its idempotency key, echo the request id, count the request."""
    state = sandbox_state()
    key = g.pop("idempotency_key", None)
    if key is not None:
        if response.status_code < 400 or response.status_code >= 500:
            stored = StoredResponse(
                response.status_code, response.get_data(), response.content_type or ""
            )
            state.keys.finish(g.client_id, key, stored)
        else:  # refused on validation: not carried out, so not stored
            state.keys.release(g.client_id, key)
    response.headers[REQUEST_ID_HEADER] = g.request_id
    if not g.control:
        if "rate" in g:
            response.headers.update(g.rate.headers())
        state.stats.count(response.status_code)
    return response


def release_unfinished(exc: BaseException | None) -> None:
    """A request that ended without an answer to keep gives its idempotency key back."""
    key = g.pop("idempotency_key", None)
    if key is not None:
        sandbox_state().keys.release(g.client_id, key)


def _client_key(state: State) -> str:
    """Whose budget a request spends: its token's client; for the token endpoint, the
    client_id it names; else its address."""
    token = state.tokens.client_of(request.headers.get("Authorization"))
    if token is not None:
        return token.client_id
    if request.endpoint == TOKEN_ENDPOINT:
        body = request.get_json(force=True, silent=True)
        if isinstance(body, dict) and isinstance(body.get("client_id"), str):
            return body["client_id"]
    return "address:" + (request.remote_addr or "?")


# --- errors ----------------------------------------------------------------------------


def answer_http_error(exc: HttpError) -> Response:
    response = error_response(exc.status, exc.code, exc.message)
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return response


def answer_werkzeug_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    return error_response(status, HTTP_ERROR_CODES.get(status, "http_error"), exc.description)


def answer_unexpected_error(exc: Exception) -> Response:
    log.exception("unexpected error in request %s", g.get("request_id"))
    return error_response(500, "internal_error", "Internal error; retry later.")
