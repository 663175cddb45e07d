"""A handler module for the worker-processes figures: one call to the API sandbox per event.

Each run asks the sandbox at `BENCH_API_URL` (started with `--latency-ms`) for
`GET /v1/health`, with a bearer token each worker process fetches once, as a handler
calling the real API through a client that caches its token would.
"""

import functools
import importlib
import os

import httpx

on = importlib.import_module(
    os.environ.get("BENCH_PACKAGE", "tw_webhook_receiver") + ".handlers"
).on


@functools.cache
def _api() -> httpx.Client:
    """One client per worker process, made on its first event (after any fork)."""
    client = httpx.Client(base_url=os.environ["BENCH_API_URL"], timeout=10)
    answer = client.post(
        "/v1/oauth/token",
        json={
            "grant_type": "client_credentials",
            "client_id": os.environ.get("TW_API_CLIENT_ID", "sandbox-client"),
            "client_secret": os.environ.get("TW_API_CLIENT_SECRET", "sandbox-secret"),
        },
    )
    answer.raise_for_status()
    client.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
    return client


@on("*")
def call_the_api(event) -> None:
    _api().get("/v1/health").raise_for_status()
