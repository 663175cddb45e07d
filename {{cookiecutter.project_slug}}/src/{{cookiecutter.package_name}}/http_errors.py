"""The error shape every HTTP answer other than a success takes, for the receiver and the
sandbox alike: `{"error": {"code", "message", "requestId"}}`, one stable code per cause.

A view refuses a request by raising `HttpError`; the app's error handler turns it into
`error_response`. Not the API client's `api.ApiError`, which is what a handler gets when
the API answers with this shape.
"""

from __future__ import annotations

import json

from flask import Response, g

REQUEST_ID_HEADER = "X-Request-Id"

# Stable codes for the errors Werkzeug raises before a view runs.
HTTP_ERROR_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
}


class HttpError(Exception):
    """Answer this request with `status` and the error shape's `code` and `message`."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


# One encoder for every answer: `json.dumps` with `separators` builds a new one per call.
_encode = json.JSONEncoder(separators=(",", ":")).encode


def json_response(payload: dict, status: int) -> Response:
    """`payload` as compact JSON (cheaper than `jsonify`, which the hot path would feel)."""
    return Response(_encode(payload), status, mimetype="application/json")


def error_response(status: int, code: str, message: str) -> Response:
    """An error in the API's shape, carrying the current request id (`g.request_id`)."""
    body = {"error": {"code": code, "message": message, "requestId": g.get("request_id")}}
    return json_response(body, status)
