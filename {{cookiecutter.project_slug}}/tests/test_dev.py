"""The `dev` command as a user runs it: no REDIS_URL, one terminal, Ctrl-C, nothing left.

It starts an embedded Redis, gunicorn (auto-reload) and a worker; a replayed sample must
reach the test's handlers (`recording_handlers`, whose record goes to the test's Redis),
with the worker's log line about it prefixed `worker |`; Ctrl-C must stop every process it
started, grandchildren included, without a traceback.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from processes import PACKAGE, PROJECT_ROOT, cli, project_env, running, wait_for, wait_until_up
from recording_handlers import runs

from {{ cookiecutter.package_name }}.dev.embedded_redis import free_port
from {{ cookiecutter.package_name }}.dev.state import STATE_FILE
from {{ cookiecutter.package_name }}.testing import make_event

pytestmark = pytest.mark.e2e
SAMPLE = str(PROJECT_ROOT / "samples" / "events" / "01-order.created.json")


def children() -> dict[int, list[int]]:
    """Parent pid -> child pids, for every process (from /proc)."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def descendants(pid: int) -> dict[int, str]:
    """Every process below `pid`, with its command line."""
    tree, found, todo = children(), {}, [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            try:
                found[child] = (Path(f"/proc/{child}/cmdline").read_bytes()).replace(b"\0", b" ")
            except OSError:
                continue
            todo.append(child)
    return {p: c.decode(errors="replace") for p, c in found.items()}


def alive(pid: int) -> bool:
    """Running, and not a zombie waiting for a parent to collect it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process tree from /proc")
def test_dev_runs_everything_and_ctrl_c_leaves_no_process(tmp_path, redis_url, redis_conn):
    port = free_port()
    env = project_env(
        "unused", TW_HANDLER_MODULES="recording_handlers", TEST_RECORD_REDIS_URL=redis_url
    )
    del env["REDIS_URL"]  # as on a fresh checkout: dev starts its own Redis
    log = tmp_path / "dev.log"
    with open(log, "wb") as out:
        dev = subprocess.Popen(
            [sys.executable, "-m", PACKAGE, "dev", "--port", str(port)],
            cwd=tmp_path,  # no .env here either
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/readyz", dev, log)
        # Another terminal in the same directory: replay finds dev's port without --url.
        sent = cli("replay", SAMPLE, env=env, cwd=tmp_path)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert f"http://127.0.0.1:{port}{{ cookiecutter.webhook_path }} (the running dev's" in sent.stderr
        event_id = json.loads(Path(SAMPLE).read_text())["id"]
        wait_for(lambda: runs(redis_conn).get(f"order:{event_id}"))
        handled = f"{event_id}: handler recording_handlers.record_order ok"
        wait_for(lambda: handled in log.read_text())
        lines = log.read_text().splitlines()
        handler_line = next(line for line in lines if handled in line)
        assert handler_line.startswith("worker | ")
        assert any(line.startswith(" redis | embedded Redis at redis://") for line in lines)
        assert any(line.startswith("   web | ") for line in lines)
        # Another terminal in the same directory, REDIS_URL unset: dev's Redis, named.
        listed = cli("events", "list", env=env, cwd=tmp_path)
        assert event_id in listed.stdout, listed.stdout + listed.stderr
        assert f"the running dev's, from {STATE_FILE}" in listed.stderr

        def everything_started():
            procs = descendants(dev.pid)
            commands = list(procs.values())
            gunicorns = [c for c in commands if "gunicorn" in c]
            workers = [p for p, c in procs.items() if f"-m {PACKAGE} worker" in c]
            scheduler = workers and any(descendants(workers[0]))
            redis_server = any("redis-server" in c for c in commands)
            return procs if len(gunicorns) >= 2 and scheduler and redis_server else None

        started = wait_for(everything_started, timeout=20)
        assert len(started) >= 5  # redis-server, gunicorn master + worker, worker, scheduler
        print("\n".join(f"{pid} {command}" for pid, command in started.items()))
    finally:
        # What Ctrl-C in a terminal does: SIGINT to every process of the foreground group.
        os.killpg(dev.pid, signal.SIGINT)
        try:
            status = dev.wait(timeout=30)
        finally:
            if dev.poll() is None:
                os.killpg(dev.pid, signal.SIGKILL)
    assert status == 0, log.read_text()
    output = log.read_text()
    assert output.rstrip().endswith("   dev | stopped")
    assert not (tmp_path / STATE_FILE).exists()
    assert "Traceback" not in output, output  # Redis outlives the processes that use it
    # `wait_for` fails the test if any of them is still running after 10 s.
    wait_for(lambda: not any(alive(pid) for pid in started), timeout=10)


HOT_HANDLER = """
import time

from {{ cookiecutter.package_name }}.routing import on


@on("order.created")
def hot(event):
    print("{version} start", event.id, flush=True)
    time.sleep(event.object.get("sleep", 0))
    print("{version} end", event.id, flush=True)
"""
ADDED_HANDLER = """
from {{ cookiecutter.package_name }}.routing import on


@on("order.created")
def added(event):
    print("added module ran for", event.id, flush=True)
"""


def test_dev_restarts_the_worker_between_jobs_on_handler_changes(tmp_path):
    """Editing a handler module and adding one while `dev` runs: the job running at that
    moment finishes on the old code, and the next event meets the new code."""
    package = tmp_path / "hotpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "hot.py").write_text(HOT_HANDLER.format(version="v1"))
    slow, quick = make_event("order.created", {"sleep": 2}), make_event("order.created")
    for name, event in (("slow", slow), ("quick", quick)):
        (tmp_path / f"{name}.json").write_text(json.dumps(event))
    port = free_port()
    env = project_env("unused", TW_HANDLER_MODULES="hotpkg")
    del env["REDIS_URL"]
    env["PYTHONPATH"] += os.pathsep + str(tmp_path)
    url = f"http://127.0.0.1:{port}{{ cookiecutter.webhook_path }}"
    log = tmp_path / "dev.log"
    command = [sys.executable, "-m", PACKAGE, "dev", "--port", str(port)]
    with running(command, env, log, cwd=tmp_path) as dev:  # no .env there
        wait_until_up(f"http://127.0.0.1:{port}/readyz", dev, log)
        assert "worker restarted between jobs on changes under" in log.read_text()
        sent = cli("replay", "--url", url, str(tmp_path / "slow.json"), env=env)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        wait_for(lambda: f"v1 start {slow['id']}" in log.read_text())
        (package / "hot.py").write_text(HOT_HANDLER.format(version="v2"))
        (package / "added.py").write_text(ADDED_HANDLER)
        wait_for(lambda: "the worker restarts after its current job" in log.read_text())
        sent = cli("replay", "--url", url, str(tmp_path / "quick.json"), env=env)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        wait_for(lambda: f"added module ran for {quick['id']}" in log.read_text(), timeout=30)
        wait_for(lambda: f"v2 end {quick['id']}" in log.read_text())
    lines = [line for line in log.read_text().splitlines() if line.startswith("worker | ")]
    text = "\n".join(lines)
    # The slow job ran once, on the old code, to its end; the new worker then started.
    assert text.count(f"start {slow['id']}") == 1
    ended = next(i for i, line in enumerate(lines) if f"v1 end {slow['id']}" in line)
    listening = [i for i, line in enumerate(lines) if " listening on " in line]
    assert len(listening) == 2 and listening[1] > ended, text
    assert f"v1 start {quick['id']}" not in text
    assert "cold shut down" not in text and "Traceback" not in text


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process tree from /proc")
def test_dev_starts_a_killed_worker_again(tmp_path):
    """A worker killed under `dev` (kill -9, out of memory) is not left down until a file
    changes: it starts again, and the next event is handled."""
    package = tmp_path / "hotpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "hot.py").write_text(HOT_HANDLER.format(version="v1"))
    event = make_event("order.created")
    (tmp_path / "event.json").write_text(json.dumps(event))
    port = free_port()
    env = project_env("unused", TW_HANDLER_MODULES="hotpkg")
    del env["REDIS_URL"]
    env["PYTHONPATH"] += os.pathsep + str(tmp_path)
    log = tmp_path / "dev.log"
    command = [sys.executable, "-m", PACKAGE, "dev", "--port", str(port)]

    def worker_pids() -> list[int]:  # dev's children (not the scheduler a worker forks)
        command_of = descendants(dev.pid)
        ours = children().get(dev.pid, [])
        return [p for p in ours if f"-m {PACKAGE} worker" in command_of.get(p, "")]

    with running(command, env, log, cwd=tmp_path) as dev:
        wait_until_up(f"http://127.0.0.1:{port}/readyz", dev, log)
        [first] = wait_for(worker_pids)
        wait_for(lambda: " listening on " in log.read_text())
        os.killpg(first, signal.SIGKILL)  # the worker and its scheduler
        wait_for(lambda: "worker exited (killed by SIGKILL); it starts again" in log.read_text())
        [second] = wait_for(lambda: [p for p in worker_pids() if p != first], timeout=20)
        sent = cli("replay", str(tmp_path / "event.json"), env=env, cwd=tmp_path)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        wait_for(lambda: f"v1 end {event['id']}" in log.read_text(), timeout=30)
    assert second != first
    assert "Traceback" not in log.read_text()
