"""`make demo`: generate a receiver, run it, replay the sample events, show them handled.

Steps, each printed as it happens:
1. bake the template with its defaults into build/demo/ (a fresh secret lands in .env);
2. install the generated project into this virtualenv (editable, no downloads);
3. start it with its own `dev` command: gunicorn + an RQ worker + an embedded Redis;
4. sign and send every sample event with its `replay` command, then send them all again;
5. wait until the worker's handlers have logged each event, then stop everything.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from cookiecutter.main import cookiecutter

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "demo"
BIN = Path(sys.executable).parent
HANDLER_MARK = ".handlers."
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

    step(f"3. start it: {project.name} dev (web + worker + embedded Redis)")
    dev = subprocess.Popen(
        [cli, "dev", "--no-reload", "--port", str(port)],
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
        wait_for_line(lines, lambda line: "listening on" in line, deadline)
        wait_for_line(lines, lambda line: "Booting worker" in line, deadline)
        time.sleep(0.5)

        step(f"4. replay the {len(samples)} sample events, signed afresh, then all again")
        url = f"http://127.0.0.1:{port}/webhooks/tw"
        for attempt in ("first delivery", "second delivery: every one is a duplicate"):
            print(f"-- {attempt}", flush=True)
            subprocess.run(
                [cli, "replay", "--url", url, "samples/events"], cwd=project, env=env, check=True
            )

        step("5. the worker runs each event's handler once")
        handled = 0
        while handled < len(samples):
            wait_for_line(lines, lambda line: HANDLER_MARK in line, deadline)
            handled += 1
        print(f"\nall {handled} sample events were processed by their handlers, once each")
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
