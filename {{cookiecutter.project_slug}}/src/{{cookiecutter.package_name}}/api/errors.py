"""The one exception the API client raises, built from the API's error shape.

The API answers every failure as `{"error": {"code", "message", "requestId"}}`; `ApiError`
carries those fields and the HTTP status, so a handler can tell `order_not_found` from
`rate_limited` without reading bodies. A request that got no answer at all (refused,
reset, timed out) is an `ApiError` too, with `status` None and a code saying what failed.
"""

from __future__ import annotations

import httpx

NETWORK_ERROR = "network_error"
TIMEOUT = "timeout"
DEADLINE_EXCEEDED = "deadline_exceeded"


class ApiError(Exception):
    """A failed API call: `status` (None without a response), `code`, `message`,
    `request_id` (quote it to the API's support)."""

    def __init__(
        self, status: int | None, code: str, message: str, request_id: str | None = None
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        where = f"HTTP {status} " if status is not None else ""
        request = f" (request {request_id})" if request_id else ""
        super().__init__(f"{where}{code}: {message}{request}")


def error_from_response(response: httpx.Response) -> ApiError:
    """Read the API's error shape; a body without it still gives a usable error."""
    request_id = response.headers.get("X-Request-Id")
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error.get("message", ""))
        request_id = error.get("requestId") or request_id
    except (ValueError, KeyError, TypeError):
        code = f"http_{response.status_code}"
        message = response.reason_phrase or response.text[:200]
    return ApiError(response.status_code, code, message, request_id)


def error_from_exception(exc: httpx.TransportError) -> ApiError:
    """The error for a request that got no response."""
    code = TIMEOUT if isinstance(exc, httpx.TimeoutException) else NETWORK_ERROR
    try:
        where = f" calling {exc.request.method} {exc.request.url}"
    except RuntimeError:  # raised before a request was made
        where = ""
    return ApiError(None, code, f"{type(exc).__name__}{where}: {exc}")
