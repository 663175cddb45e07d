"""Handlers for the `dev --sandbox` test: a created order is confirmed through the API
sandbox (whose address and credentials `dev` gives the worker), and the confirmation it
sends back is logged. Plain urllib, so the test needs nothing but the sandbox.

Loaded into the dev worker with `TW_HANDLER_MODULES=sandbox_loop_handlers`.
"""

import json
import logging
import os
import urllib.request

from {{ cookiecutter.package_name }}.handlers import Event, on

log = logging.getLogger(__name__)


def call(method: str, path: str, body: dict | None = None, headers: dict | None = None) -> dict:
    request = urllib.request.Request(
        os.environ["TW_API_BASE_URL"] + path,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", **(headers or {})},
        method=method,
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


@on("order.created")
def confirm_order(event: Event) -> None:
    token = call("POST", "/v1/oauth/token", {
        "client_id": os.environ["TW_API_CLIENT_ID"],
        "client_secret": os.environ["TW_API_CLIENT_SECRET"],
        "grant_type": "client_credentials",
    })["access_token"]  # fmt: skip
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": event.id}
    call("POST", f"/v1/orders/{event.object['id']}/confirm", headers=headers)


@on("order.confirmed")
def log_confirmation(event: Event) -> None:
    log.info("sandbox loop: order %s is confirmed", event.object["id"])
