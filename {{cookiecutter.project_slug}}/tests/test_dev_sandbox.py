"""`dev --sandbox`: the whole loop offline. An order placed in the sandbox reaches the dev
receiver as `order.created`; the worker's handler confirms it through the sandbox (at the
`TW_API_BASE_URL` dev gave it), and the `order.confirmed` the sandbox sends back reaches
the handlers too. Ctrl-C stops everything."""

import os
import re
import signal
import subprocess
import sys

import httpx
import pytest
from processes import PACKAGE, project_env, wait_for, wait_until_up

from {{ cookiecutter.package_name }}.embedded_redis import free_port

pytestmark = pytest.mark.e2e


def test_dev_sandbox_runs_the_whole_loop(tmp_path):
    port = free_port()
    env = project_env("unused", TW_HANDLER_MODULES="sandbox_loop_handlers")
    del env["REDIS_URL"]  # dev starts its own Redis
    log = tmp_path / "dev.log"
    with open(log, "wb") as out:
        dev = subprocess.Popen(
            [sys.executable, "-m", PACKAGE, "dev", "--sandbox", "--no-reload", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/readyz", dev, log)
        banner = wait_for(lambda: re.search(r"API sandbox on (http://\S+) ", log.read_text()))
        api = banner.group(1)
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
    finally:
        os.killpg(dev.pid, signal.SIGINT)
        try:
            status = dev.wait(timeout=30)
        finally:
            if dev.poll() is None:
                os.killpg(dev.pid, signal.SIGKILL)
    output = log.read_text()
    assert status == 0, output
    assert "Traceback" not in output, output
