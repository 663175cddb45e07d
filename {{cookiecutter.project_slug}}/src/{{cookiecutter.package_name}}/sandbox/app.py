"""The sandbox's web app: the API's routes, and what every request goes through first.

Each request to `/v1/...` passes, in this order: a request id; the client's rate limit
(429 past it, never stored); an injected fault when `fail_rate` says so (500/503, before
anything is done, never stored); the bearer token and the scope of the endpoint; the
`Idempotency-Key` on POST/PUT (a replay is answered here); the added latency, while the key
is held. Every answer carries `X-Request-Id` and `X-RateLimit-*`; errors are in the API's
shape, the receiver's own `error_response`. Routes under `/_sandbox/` are controls for
tests and demos (stats, price changes): no token, no limit, not counted.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from ..app import HTTP_ERROR_CODES, REQUEST_ID_HEADER, ApiError, error_response
from ..rate_limit import RateLimiter
from . import idempotency, paging
from .auth import Tokens
from .idempotency import IdempotencyRecords, StoredResponse
from .options import Options
from .sender import WebhookSender
from .store import MAX_ITEMS_PER_ORDER, Store

TOKEN_ENDPOINT = "token"
# endpoint -> the scope its token must carry (None: any valid token). Endpoints not listed
# (the token endpoint, the /_sandbox/ controls) need no token.
SCOPE_OF = {
    "health": None,
    "search_inventory": "inventory.read",
    "create_order": "orders.write",
    "change_order": "orders.write",
    "get_order": "orders.read",
    "list_orders": "orders.read",
}
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100


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
    options = state.options
    app = Flask(__name__)
    app.extensions["tw_sandbox"] = state

    @app.before_request
    def start() -> Response | None:
        g.request_id = "req_" + os.urandom(8).hex()
        g.control = request.path.startswith("/_sandbox/")
        if g.control:
            return None
        return _limit() or _fault() or _authenticate() or _begin_idempotent() or _delay()

    def _limit() -> Response | None:
        g.rate = state.limiter.hit(_client_key(state))
        if g.rate.allowed:
            return None
        response = error_response(429, "rate_limited", "Too many requests")
        response.headers["Retry-After"] = str(g.rate.retry_after())
        return response

    def _fault() -> Response | None:
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

    def _authenticate() -> None:
        if request.endpoint in SCOPE_OF:
            token = state.tokens.authenticate(
                request.headers.get("Authorization"), SCOPE_OF[request.endpoint]
            )
            g.client_id = token.client_id

    def _begin_idempotent() -> Response | None:
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

    def _delay() -> None:
        delay_ms = options.latency_ms
        if options.latency_jitter_ms:
            delay_ms += options.latency_jitter_ms * state.draw()
        if delay_ms:
            time.sleep(delay_ms / 1000)

    @app.after_request
    def finish(response: Response) -> Response:
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

    @app.teardown_request
    def release_unfinished(exc: BaseException | None) -> None:
        key = g.pop("idempotency_key", None)
        if key is not None:
            state.keys.release(g.client_id, key)

    # --- the API -----------------------------------------------------------------------

    @app.post("/v1/oauth/token", endpoint=TOKEN_ENDPOINT)
    def token() -> Response:
        response = jsonify(state.tokens.issue(request.get_json(force=True, silent=True)))
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/v1/health")
    def health() -> Response:
        return jsonify({"status": "ok", "time": int(time.time())})

    @app.get("/v1/inventory/search")
    def search_inventory() -> Response:
        event_id = request.args.get("eventId", "").strip()
        if not event_id:
            raise ApiError(400, "missing_parameter", "eventId is required.")
        section = request.args.get("section", "").strip() or None
        with _cursor_errors():
            items, next_cursor = state.store.search(
                event_id, section, _page_size(), request.args.get("cursor")
            )
        return jsonify({"items": items, "nextCursor": next_cursor})

    @app.post("/v1/orders")
    def create_order() -> tuple[Response, int]:
        items = _order_items(request.get_json(force=True, silent=True))
        return jsonify(state.store.create_order(g.client_id, items)), 201

    @app.get("/v1/orders/<order_id>")
    def get_order(order_id: str) -> Response:
        return jsonify(state.store.order(g.client_id, order_id))

    @app.get("/v1/orders")
    def list_orders() -> Response:
        status = request.args.get("status") or None
        with _cursor_errors():
            items, next_cursor = state.store.orders(
                g.client_id, _page_size(), request.args.get("cursor"), status, _updated_since()
            )
        return jsonify({"items": items, "nextCursor": next_cursor})

    @app.post("/v1/orders/<order_id>/<any(confirm, fulfill, cancel, refund):action>")
    def change_order(order_id: str, action: str) -> Response:
        return jsonify(state.store.transition(g.client_id, order_id, action))

    # --- controls ----------------------------------------------------------------------

    @app.get("/_sandbox/stats")
    def stats() -> Response:
        return jsonify(state.stats_json())

    @app.put("/_sandbox/listings/<listing_id>/price")
    def set_price(listing_id: str) -> Response:
        body = request.get_json(force=True, silent=True)
        amount = body.get("amount") if isinstance(body, dict) else None
        if not _whole(amount, minimum=1):
            raise ApiError(422, "validation_failed", "amount must be whole cents, at least 1.")
        return jsonify(state.store.set_price(listing_id, amount))

    # --- errors ------------------------------------------------------------------------

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Response:
        response = error_response(exc.status, exc.code, exc.message)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        return error_response(status, HTTP_ERROR_CODES.get(status, "http_error"), exc.description)

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception) -> Response:
        app.logger.exception("unexpected error in request %s", g.get("request_id"))
        return error_response(500, "internal_error", "Internal error; retry later.")

    return app


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


def _whole(value: object, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _page_size() -> int:
    raw = request.args.get("limit", "")
    if not raw:
        return DEFAULT_PAGE_SIZE
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise ApiError(400, "invalid_parameter", f"limit must be 1 to {MAX_PAGE_SIZE}.")
    return int(raw)


def _updated_since() -> int | None:
    """`updatedSince` (unix seconds), or None when absent; 400 when it is not one."""
    raw = request.args.get("updatedSince", "").strip()
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 12:
        raise ApiError(400, "invalid_parameter", "updatedSince must be unix seconds (0 or more).")
    return int(raw)


@contextlib.contextmanager
def _cursor_errors() -> Iterator[None]:
    """Turn a bad `cursor` into 400 `invalid_cursor`."""
    try:
        yield
    except paging.InvalidCursor as exc:
        raise ApiError(400, "invalid_cursor", str(exc)) from None


def _order_items(body: object) -> list[tuple[str, int]]:
    """`[(listingId, quantity), ...]` from an order request, or 400/422 saying what is wrong."""
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "The body must be a JSON object.")
    items = body.get("items")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_ITEMS_PER_ORDER:
        raise ApiError(
            422, "validation_failed", f"items must be a list of 1 to {MAX_ITEMS_PER_ORDER} items."
        )
    wanted: list[tuple[str, int]] = []
    for number, item in enumerate(items):
        listing_id = item.get("listingId") if isinstance(item, dict) else None
        quantity = item.get("quantity") if isinstance(item, dict) else None
        if not isinstance(listing_id, str) or not listing_id:
            raise ApiError(422, "validation_failed", f"items[{number}].listingId is required.")
        if not _whole(quantity, minimum=1):
            raise ApiError(
                422, "validation_failed", f"items[{number}].quantity must be a whole number ≥ 1."
            )
        if any(listing_id == seen for seen, _ in wanted):
            raise ApiError(422, "validation_failed", f"listing {listing_id} is in items twice.")
        wanted.append((listing_id, quantity))
    return wanted
