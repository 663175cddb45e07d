"""`make demo`: generate a receiver, run it, replay the sample events, show them handled.

Steps, each printed as it happens:
1. bake the template with its defaults into build/demo/ (a fresh secret lands in .env);
2. install the generated project into this virtualenv (editable, no downloads);
3. start it with its own `dev --sandbox` command: gunicorn + an RQ worker + an embedded
   Redis + the Tickets Wholesale API sandbox, which the handlers' `api` client calls;
4. sign and send every sample event with its `replay` command, then send them all again;
5. wait until the worker's handlers have run for each event (the `order.created` sample
   handler asks the API for its order: the samples' orders are unknown to the sandbox);
6. place an order in the sandbox, as the partner's shop would: the sandbox sends its
   signed `order.created` webhook to the receiver, and the handler fetches the order from
   the API. Then stop everything.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from cookiecutter.main import cookiecutter

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "demo"
BIN = Path(sys.executable).parent
HANDLER_RAN = re.compile(r"(evt_\w+): handler \S+ ok in")
SANDBOX_URL = re.compile(r"API sandbox on (http://[\d.:]+)")
TIMEOUT_SECONDS = 60


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bake() -> Path:
    shutil.rmtree(BUILD, ignore_errors=True)
    project = Path(cookiecutter(str(ROOT), no_input=True, output_dir=str(BUILD)))
    print(f"generated {project.relative_to(ROOT)}/")
    return project


def install(project: Path) -> None:
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
    command += ["--no-build-isolation", "-e", str(project)]
    subprocess.run(command, check=True)
    print(f"installed {project.name} (editable) into the demo's virtualenv")


def read_lines(process: subprocess.Popen, lines: queue.Queue) -> None:
    for raw in iter(process.stdout.readline, ""):
        lines.put(raw.rstrip("\n"))
    lines.put(None)


def wait_for_line(lines: queue.Queue, predicate, deadline: float) -> str:
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        if line is None:
            raise RuntimeError("the dev command exited early")
        print(f"   {line}", flush=True)
        if predicate(line):
            return line
    raise RuntimeError("timed out waiting for the receiver")


def place_order(api_url: str) -> str:
    """Order two seats through the sandbox's API, as a shop would; return the order id."""
    with httpx.Client(base_url=api_url, timeout=10) as http:
        credentials = {"client_id": "sandbox-client", "client_secret": "sandbox-secret"}
        token = http.post(
            "/v1/oauth/token", json={**credentials, "grant_type": "client_credentials"}
        ).json()["access_token"]
        order = http.post(
            "/v1/orders",
            json={"items": [{"listingId": "lst_7Qm2Floor", "quantity": 2}]},
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "demo-order"},
        ).json()
    print(f"placed order {order['id']} through {api_url}/v1/orders", flush=True)
    return order["id"]


def main() -> int:
    step("1. generate a receiver from the template (defaults)")
    project = bake()
    step("2. install it")
    install(project)
    cli = str(BIN / project.name)
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL" and not k.startswith("TW_")}
    env["PYTHONUNBUFFERED"] = "1"
    port = free_port()
    samples = sorted((project / "samples" / "events").glob("*.json"))
    sample_ids = {json.loads(path.read_text())["id"] for path in samples}

    step(f"3. start it: {project.name} dev --sandbox (web + worker + embedded Redis + API)")
    dev = subprocess.Popen(
        [cli, "dev", "--no-reload", "--sandbox", "--port", str(port)],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=read_lines, args=(dev, lines), daemon=True).start()
    status = 1
    try:
        deadline = time.monotonic() + TIMEOUT_SECONDS
        line = wait_for_line(lines, lambda line: SANDBOX_URL.search(line), deadline)
        api_url = SANDBOX_URL.search(line).group(1)
        # The worker and the web server start side by side: their lines come in either order.
        waiting = {"listening on", "Booting worker"}
        while waiting:
            line = wait_for_line(
                lines, lambda line, waiting=waiting: any(t in line for t in waiting), deadline
            )
            waiting = {text for text in waiting if text not in line}
        time.sleep(0.5)

        step(f"4. replay the {len(samples)} sample events, signed afresh, then all again")
        url = f"http://127.0.0.1:{port}/webhooks/tw"
        for attempt in ("first delivery", "second delivery: every one is a duplicate"):
            print(f"-- {attempt}", flush=True)
            subprocess.run(
                [cli, "replay", "--url", url, "samples/events"], cwd=project, env=env, check=True
            )

        step("5. the worker runs each event's handlers once")
        waiting = set(sample_ids)
        while waiting:
            line = wait_for_line(lines, lambda line: HANDLER_RAN.search(line), deadline)
            waiting.discard(HANDLER_RAN.search(line).group(1))
        print(f"\nall {len(samples)} sample events were processed by their handlers, once each")

        step("6. place an order in the API sandbox; its webhook comes back to the handler")
        order_id = place_order(api_url)
        wait_for_line(lines, lambda line: f"fetched order {order_id}" in line, deadline)
        print(f"\nthe order.created handler fetched {order_id} from the API: the whole loop")
        status = 0
    finally:
        step("stopping everything the demo started")
        dev.send_signal(signal.SIGINT)
        try:
            dev.wait(timeout=30)
        except subprocess.TimeoutExpired:
            dev.kill()
        while (line := lines.get()) is not None:
            print(f"   {line}", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
