"""The Tickets Wholesale API client: one `Client` per process, shared by every handler.

Each call goes the same way: take a slot from the shared rate budget (`budget.py`), send
the request with a Bearer token (`token.py`) and, for a write, an `Idempotency-Key`
(`idempotency.py`), then either return the decoded JSON body or decide from the answer
whether to try again (`retries.py`). Every failure ends as one `ApiError`. A call gives up
before the job that made it would be stopped, so a handler sees the error rather than
being killed in the middle of a wait.

httpx does the HTTP: a thread-safe client that pools connections, with timeouts on every
request and an `Auth` hook for the token, and nothing of it is rewritten here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import httpx
import redis

from . import idempotency, retries
from .budget import Budget
from .errors import DEADLINE_EXCEEDED, ApiError, error_from_exception, error_from_response
from .token import TokenAuth

WRITE_METHODS = frozenset({"POST", "PUT"})
USER_AGENT = "{{ cookiecutter.project_slug }} (Tickets Wholesale webhook receiver)"


class Client:
    """Generic calls (`get`, `post`, `put`, `delete`, `paginate`) and typed helpers for the
    documented endpoints; paths as the API's docs write them (`/v1/...`)."""

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        connection: redis.Redis,
        scopes: tuple[str, ...] = (),
        timeout: float = 10,
        call_seconds: float = 60,
        retry_base: float = retries.BASE_SECONDS,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.call_seconds = call_seconds
        # The API's retry rules with this client's first wait; `sleep` waits between
        # attempts (a test passes its own, to see the waits without making them).
        self.retry_policy = dataclasses.replace(retries.POLICY, base=retry_base)
        self.sleep = sleep
        identity = hashlib.sha256(f"{self.base_url}\n{client_id}".encode()).hexdigest()[:24]
        self.budget = Budget(connection, identity)
        self.http = httpx.Client(
            base_url=self.base_url,
            auth=TokenAuth(
                connection, client_id, client_secret, scopes, self.base_url, self.budget
            ),
            timeout=timeout,
            headers={"Accept": "application/json", "User-Agent": USER_AGENT},
            transport=transport,
        )

    def close(self) -> None:
        self.http.close()

    # -- generic calls -------------------------------------------------------------------

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, json: Any = None) -> Any:
        return self.request("POST", path, json=json)

    def put(self, path: str, json: Any = None) -> Any:
        return self.request("PUT", path, json=json)

    def delete(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self.request("DELETE", path, params=params)

    def paginate(self, path: str, params: dict[str, Any] | None = None) -> Iterator[Any]:
        """Yield the `items` of every page, following `nextCursor` until there is none."""
        params = dict(params or {})
        while True:
            page = self.get(path, params=params)
            yield from page.get("items", [])
            cursor = page.get("nextCursor")
            if not cursor:
                return
            params["cursor"] = cursor

    def request(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        """Send one call, retried as the API's docs ask; the decoded body, or `ApiError`."""
        method = method.upper()
        url = self.url_of(path)  # before anything is sent, the token above all
        headers = {}
        if method in WRITE_METHODS:
            # Made once, before the retries, so every retry repeats it.
            headers["Idempotency-Key"] = idempotency.next_key(method, path)
        deadline = idempotency.deadline(self.call_seconds)
        retry, error = 0, None
        while True:
            ticket = self.budget.take(deadline)
            if ticket is None:  # the last attempt's failure says more, if there was one
                raise error or ApiError(
                    None, DEADLINE_EXCEEDED, f"{method} {path}: rate budget exhausted"
                )
            try:
                response = self.http.request(
                    method, url, params=params, json=json, headers=headers,
                    timeout=_attempt_timeout(self.http.timeout, deadline),
                )  # fmt: skip
            except (httpx.TransportError, ApiError) as exc:  # ApiError: the token request's
                self.budget.settle(ticket, None)
                response = None
                error = exc if isinstance(exc, ApiError) else error_from_exception(exc)
            except BaseException:
                self.budget.settle(ticket, None)
                raise
            else:
                self.budget.settle(ticket, response)
                if response.is_success:
                    return response.json() if response.content else None
                error = error_from_response(response)
            wait = self.retry_policy.next_wait(
                retry, error.status, retries.server_wait(response), time.monotonic(), deadline
            )
            if wait is None:
                raise error
            self.sleep(wait)
            retry += 1

    def url_of(self, path: str) -> httpx.URL:
        """The URL a call to `path` goes to; `ValueError` unless it is on the API's own
        scheme, host and port (`base_url`) and inside its path.

        Every request carries the bearer token and a write its idempotency key: a path
        built from event data (`/v1/orders/` + an id) must not send them anywhere else.
        So an absolute URL to another origin, a scheme-relative `//host/...` (which httpx
        would quietly glue onto the base), a scheme without a host, and `.` or `..`
        segments (which a server resolves above the base's path) are refused.
        """
        base = self.http.base_url
        try:
            parsed = httpx.URL(path)
        except httpx.InvalidURL as exc:
            raise ValueError(f"{path!r} is not a valid path: {exc}") from None
        if parsed.is_absolute_url and _origin(parsed) == _origin(base):
            url = parsed
        elif parsed.scheme or parsed.host or path.startswith("//"):
            url = None
        else:
            url = self.http.build_request("GET", path).url
        if url is None or _origin(url) != _origin(base) or _leaves_base(parsed, url, base):
            raise ValueError(
                f"{path!r} is not a path of the API at {self.base_url}: calls go to paths "
                "such as '/v1/orders', never to another host (the token would go with them)"
            )
        return url

    # -- typed helpers for the documented endpoints ---------------------------------------

    def health(self) -> dict[str, Any]:
        """`GET /v1/health`."""
        return self.get("/v1/health")

    def search_inventory(
        self, event_id: str, section: str | None = None, limit: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """The listings of show `event_id` (optionally one `section`), every page."""
        params = {"eventId": event_id, "section": section, "limit": limit}
        return self.paginate(
            "/v1/inventory/search", {k: v for k, v in params.items() if v is not None}
        )

    def create_order(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """`POST /v1/orders` with `[{"listingId": ..., "quantity": n}, ...]`; the new order.
        Inside a handler a re-run sends the same idempotency key: one order, however often."""
        return self.post("/v1/orders", json={"items": items})

    def get_order(self, order_id: str) -> dict[str, Any]:
        """`GET /v1/orders/<id>`; `ApiError` with status 404 when there is no such order."""
        return self.get(f"/v1/orders/{quote(order_id, safe='')}")

    def list_orders(self, **params: Any) -> Iterator[dict[str, Any]]:
        """Every order of this client, page after page (`params` go to the query)."""
        return self.paginate("/v1/orders", params)


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


def _leaves_base(given: httpx.URL, url: httpx.URL, base: httpx.URL) -> bool:
    """True if `url`'s path is outside `base`'s, or `given` has `.` or `..` segments
    (percent-encoded too: servers decode them)."""
    segments = set(given.path.split("/")) | set(url.path.split("/"))
    return not url.path.startswith(base.path) or bool(segments & {".", ".."})


def _attempt_timeout(timeout: httpx.Timeout, deadline: float) -> httpx.Timeout:
    """The client's timeouts, shortened so that one attempt cannot pass the deadline."""
    left = max(deadline - time.monotonic(), 0.001)
    return httpx.Timeout(
        connect=min(timeout.connect or left, left),
        read=min(timeout.read or left, left),
        write=min(timeout.write or left, left),
        pool=min(timeout.pool or left, left),
    )
