"""`dev --sandbox`: the whole loop offline. An order placed in the sandbox reaches the dev
receiver as `order.created`; the worker's handler confirms it through the sandbox (at the
`TW_API_BASE_URL` dev gave it), and the `order.confirmed` the sandbox sends back reaches
the handlers too."""

import re
import sys

import httpx
import pytest
from processes import PACKAGE, project_env, running, wait_for, wait_until_up

from {{ cookiecutter.package_name }}.dev.embedded_redis import free_port

pytestmark = pytest.mark.e2e


def test_dev_sandbox_runs_the_whole_loop(redis_url, tmp_path):
    port = free_port()
    env = project_env(redis_url, TW_HANDLER_MODULES="sandbox_loop_handlers")
    log = tmp_path / "dev.log"
    command = [
        sys.executable,
        "-m",
        PACKAGE,
        "dev",
        "--sandbox",
        "--no-reload",
        "--port",
        str(port),
    ]
    with running(command, env, log) as dev:
        wait_until_up(f"http://127.0.0.1:{port}/readyz", dev, log)
        api = re.search(r"API sandbox on (http://\S+) ", log.read_text()).group(1)
        wait_for(lambda: "Tickets Wholesale API sandbox on " + api in log.read_text())
        with httpx.Client(base_url=api) as client:
            token = client.post("/v1/oauth/token", json={
                "client_id": "sandbox-client", "client_secret": "sandbox-secret",
                "grant_type": "client_credentials",
            }).json()["access_token"]  # fmt: skip
            client.headers["Authorization"] = f"Bearer {token}"
            order = client.post("/v1/orders", json={
                "items": [{"listingId": "lst_7Qm2Floor", "quantity": 2}],
            }).json()  # fmt: skip
            confirmed = f"sandbox loop: order {order['id']} is confirmed"
            wait_for(lambda: confirmed in log.read_text(), timeout=60)
            assert client.get(f"/v1/orders/{order['id']}").json()["status"] == "confirmed"
            stats = client.get("/_sandbox/stats").json()
    assert stats["webhooks"]["delivered"] == 2  # order.created, order.confirmed
    lines = log.read_text().splitlines()
    assert any(line.startswith("   api | Tickets Wholesale API sandbox on") for line in lines)
    assert next(line for line in lines if confirmed in line).startswith("worker | ")
