"""The sandbox's API routes under `/v1`, as a blueprint: what the real API serves.

Each view runs after the app's request pipeline (`app.admit`): the client is within its
rate limit, holds a token with the endpoint's scope (`g.client_id`), and an
`Idempotency-Key` replay was already answered. Views read the sandbox's parts with
`sandbox_state()` and refuse with `HttpError`, in the API's error shape.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from flask import Blueprint, Response, current_app, g, jsonify, request

from ..http_errors import HttpError
from . import paging
from .store import MAX_ITEMS_PER_ORDER

if TYPE_CHECKING:
    from .app import State

bp = Blueprint("api", __name__, url_prefix="/v1")

TOKEN_ENDPOINT = "api.token"
# endpoint -> the scope its token must carry (None: any valid token). Endpoints not listed
# (the token endpoint, the /_sandbox/ controls) need no token.
SCOPE_OF = {
    "api.health": None,
    "api.search_inventory": "inventory.read",
    "api.create_order": "orders.write",
    "api.change_order": "orders.write",
    "api.get_order": "orders.read",
    "api.list_orders": "orders.read",
}
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100


def sandbox_state() -> State:
    """The parts of the sandbox serving this request (`app.State`)."""
    return current_app.extensions["tw_sandbox"]


@bp.post("/oauth/token")
def token() -> Response:
    tokens = sandbox_state().tokens
    response = jsonify(tokens.issue(request.get_json(force=True, silent=True)))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/health")
def health() -> Response:
    return jsonify({"status": "ok", "time": int(time.time())})


@bp.get("/inventory/search")
def search_inventory() -> Response:
    event_id = request.args.get("eventId", "").strip()
    if not event_id:
        raise HttpError(400, "missing_parameter", "eventId is required.")
    section = request.args.get("section", "").strip() or None
    with _cursor_errors():
        items, next_cursor = sandbox_state().store.search(
            event_id, section, _page_size(), request.args.get("cursor")
        )
    return jsonify({"items": items, "nextCursor": next_cursor})


@bp.post("/orders")
def create_order() -> tuple[Response, int]:
    items = _order_items(request.get_json(force=True, silent=True))
    return jsonify(sandbox_state().store.create_order(g.client_id, items)), 201


@bp.get("/orders/<order_id>")
def get_order(order_id: str) -> Response:
    return jsonify(sandbox_state().store.order(g.client_id, order_id))


@bp.get("/orders")
def list_orders() -> Response:
    status = request.args.get("status") or None
    with _cursor_errors():
        items, next_cursor = sandbox_state().store.orders(
            g.client_id, _page_size(), request.args.get("cursor"), status, _updated_since()
        )
    return jsonify({"items": items, "nextCursor": next_cursor})


@bp.post("/orders/<order_id>/<any(confirm, fulfill, cancel, refund):action>")
def change_order(order_id: str, action: str) -> Response:
    return jsonify(sandbox_state().store.transition(g.client_id, order_id, action))


def whole(value: object, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _page_size() -> int:
    raw = request.args.get("limit", "")
    if not raw:
        return DEFAULT_PAGE_SIZE
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise HttpError(400, "invalid_parameter", f"limit must be 1 to {MAX_PAGE_SIZE}.")
    return int(raw)


def _updated_since() -> int | None:
    """`updatedSince` (unix seconds), or None when absent; 400 when it is not one."""
    raw = request.args.get("updatedSince", "").strip()
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 12:
        raise HttpError(400, "invalid_parameter", "updatedSince must be unix seconds (0 or more).")
    return int(raw)


@contextlib.contextmanager
def _cursor_errors() -> Iterator[None]:
    """Turn a bad `cursor` into 400 `invalid_cursor`."""
    try:
        yield
    except paging.InvalidCursor as exc:
        raise HttpError(400, "invalid_cursor", str(exc)) from None


def _order_items(body: object) -> list[tuple[str, int]]:
    """`[(listingId, quantity), ...]` from an order request, or 400/422 saying what is wrong."""
    if not isinstance(body, dict):
        raise HttpError(400, "invalid_json", "The body must be a JSON object.")
    items = body.get("items")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_ITEMS_PER_ORDER:
        raise HttpError(
            422, "validation_failed", f"items must be a list of 1 to {MAX_ITEMS_PER_ORDER} items."
        )
    wanted: list[tuple[str, int]] = []
    for number, item in enumerate(items):
        listing_id = item.get("listingId") if isinstance(item, dict) else None
        quantity = item.get("quantity") if isinstance(item, dict) else None
        if not isinstance(listing_id, str) or not listing_id:
            raise HttpError(422, "validation_failed", f"items[{number}].listingId is required.")
        if not whole(quantity, minimum=1):
            raise HttpError(
                422, "validation_failed", f"items[{number}].quantity must be a whole number ≥ 1."
            )
        if any(listing_id == seen for seen, _ in wanted):
            raise HttpError(422, "validation_failed", f"listing {listing_id} is in items twice.")
        wanted.append((listing_id, quantity))
    return wanted
