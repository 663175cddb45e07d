"""`GET /healthz` (the process answers) and `GET /readyz` (and its Redis does), for load
balancers and orchestrators. Logged at DEBUG unless they fail; never counted as deliveries."""

from __future__ import annotations

import redis
from flask import Blueprint, Response, current_app

from .http_errors import HttpError, json_response

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return json_response({"status": "ok"}, 200)


@bp.get("/readyz")
def readyz() -> Response:
    try:
        current_app.extensions["tw_intake"].connection.ping()
    except redis.RedisError:
        raise HttpError(503, "storage_unavailable", "Redis is not reachable.") from None
    return json_response({"status": "ready"}, 200)
