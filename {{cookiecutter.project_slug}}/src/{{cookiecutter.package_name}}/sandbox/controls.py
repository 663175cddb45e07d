"""The sandbox's controls under `/_sandbox`, as a blueprint: for tests and demos (stats,
price changes). No token, no rate limit, not counted in the stats."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from ..http_errors import HttpError
from .api import sandbox_state, whole

PREFIX = "/_sandbox"
bp = Blueprint("controls", __name__, url_prefix=PREFIX)


@bp.get("/stats")
def stats() -> Response:
    return jsonify(sandbox_state().stats_json())


@bp.put("/listings/<listing_id>/price")
def set_price(listing_id: str) -> Response:
    body = request.get_json(force=True, silent=True)
    amount = body.get("amount") if isinstance(body, dict) else None
    if not whole(amount, minimum=1):
        raise HttpError(422, "validation_failed", "amount must be whole cents, at least 1.")
    return jsonify(sandbox_state().store.set_price(listing_id, amount))
