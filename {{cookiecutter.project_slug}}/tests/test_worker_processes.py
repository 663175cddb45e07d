"""`worker --processes N`: N job processes under one command, with the worker's guarantees.

The children really work at once (handlers that sleep overlap in time, in different
processes); SIGTERM to the command lets every child finish its running job and leaves the
rest queued; a child killed with -9 is replaced and its job recovered, exactly once; each
child serves its handler metrics on its own port.
"""

import os
import signal
import sys
from pathlib import Path

import pytest
from processes import PACKAGE, project_env, running, totals, wait_for, worker_metrics_ports
from slow_handlers import FINISHED_AT_KEY, FINISHES_KEY, FIRST_KEY, PID_KEY, STARTS_KEY, counts

from {{ cookiecutter.package_name }}.config import Settings
from {{ cookiecutter.package_name }}.dev.embedded_redis import free_port
from {{ cookiecutter.package_name }}.intake import Intake, open_queues
from {{ cookiecutter.package_name }}.testing import make_event

pytestmark = pytest.mark.e2e


def worker_command(*args: str) -> list[str]:
    return [sys.executable, "-m", PACKAGE, "worker", *args]


def submit(redis_conn, redis_url, events):
    intake = Intake(redis_conn, Settings(redis_url=redis_url, retry_max=0))
    for event in events:
        assert intake.submit(event)


def children(pid: int) -> set[int]:
    """The pids of the processes `pid` started (Linux)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    if not path.exists():
        pytest.skip("needs /proc/PID/task/PID/children to see the worker processes")
    return set(map(int, path.read_text().split()))


def test_children_work_at_once_and_sigterm_drains_them(redis_url, redis_conn, tmp_path):
    env = project_env(redis_url, TW_HANDLER_MODULES="slow_handlers")
    sleep = 1.0
    events = [make_event("order.created", {"sleep": sleep}) for _ in range(9)]
    submit(redis_conn, redis_url, events)
    log = tmp_path / "worker.log"
    with running(worker_command("--processes", "3"), env, log) as command:
        # Three jobs done and the next three running: the stop lands in the middle of jobs.
        wait_for(lambda: len(counts(redis_conn, STARTS_KEY)) >= 6, timeout=30, interval=0.02)
        command.send_signal(signal.SIGTERM)  # to the command alone, as `docker stop` does
        assert command.wait(timeout=20) == 0, log.read_text()
    starts, finishes = counts(redis_conn, STARTS_KEY), counts(redis_conn, FINISHES_KEY)
    assert len(starts) >= 6
    assert finishes == starts == dict.fromkeys(starts, 1)  # every running job finished
    orders = open_queues(redis_conn)["orders"]
    assert orders.count == len(events) - len(finishes)  # the rest waits in its queue
    assert orders.started_job_registry.count == 0

    # Which process ran each job, and when it ended: every `slow` run covers at least
    # [end - sleep, end], so three runs that ended within `sleep` of each other overlapped.
    pids = {k: int(v) for k, v in counts(redis_conn, PID_KEY).items()}
    ended = {k.decode(): float(v) for k, v in redis_conn.hgetall(FINISHED_AT_KEY).items()}
    assert len(set(pids.values())) == 3
    assert any(
        len({pids[e] for e in ended if t <= ended[e] < t + sleep}) == 3 for t in ended.values()
    ), (pids, ended)

    # What is left goes through a burst of two processes, which then exit.
    burst = running(worker_command("--processes", "2", "--burst"), env, tmp_path / "b.log")
    with burst as rest:
        assert rest.wait(timeout=60) == 0
    ids = [event["id"] for event in events]
    for key in (FIRST_KEY, STARTS_KEY, FINISHES_KEY):
        assert counts(redis_conn, key) == dict.fromkeys(ids, 1), key


def test_a_killed_child_is_replaced_and_its_job_recovered(redis_url, redis_conn, tmp_path):
    lost_after = 2
    env = project_env(
        redis_url,
        TW_HANDLER_MODULES="slow_handlers",
        TW_WORKER_LOST_AFTER_SECONDS=str(lost_after),
        TW_WORKER_METRICS_PORT=str(free_port()),
    )
    log = tmp_path / "worker.log"

    def slow_runs(pids: set[int]) -> float:
        """The `slow` handler's runs counted by the children `pids`, all of which answer."""
        ports = worker_metrics_ports(log)
        name = "tw_handler_duration_seconds_count"
        urls = [f"http://127.0.0.1:{ports[pid]}/metrics" for pid in pids]
        return sum(totals(url, name, "slow_handlers.slow") for url in urls)

    with running(worker_command("--processes", "2"), env, log) as command:
        quick = [make_event("order.created") for _ in range(4)]
        submit(redis_conn, redis_url, quick)
        wait_for(lambda: len(counts(redis_conn, FINISHES_KEY)) == 4, timeout=30)
        before = children(command.pid)
        assert len(before) == 2
        # Each child serves its own handler metrics, on a port of its own.
        wait_for(lambda: worker_metrics_ports(log).keys() >= before, timeout=10)
        assert len({worker_metrics_ports(log)[pid] for pid in before}) == 2
        assert wait_for(lambda: _or_none(slow_runs, before) == 4, timeout=10)

        event = make_event("order.created", {"sleep": 1.5})
        submit(redis_conn, redis_url, [event])
        pid = int(wait_for(lambda: redis_conn.hget(PID_KEY, event["id"]), timeout=15))
        assert pid in before
        os.kill(pid, signal.SIGKILL)  # the child alone, mid-handler (the OOM killer's way)
        replaced = wait_for(lambda: len(children(command.pid) - before) == 1, timeout=10)
        assert replaced and len(children(command.pid)) == 2
        bound = 1.75 * lost_after + 1.5 + 5
        wait_for(lambda: counts(redis_conn, FINISHES_KEY).get(event["id"]), timeout=bound)
        # A process's counts end with it: the dead child's runs are gone, the recovered
        # run is counted by whoever ran it, and the new child serves its own port.
        after = children(command.pid)
        wait_for(lambda: worker_metrics_ports(log).keys() >= after, timeout=10)
        lost = sum(int(redis_conn.hget(PID_KEY, e["id"])) == pid for e in quick)
        assert wait_for(lambda: _or_none(slow_runs, after) == 4 - lost + 1, timeout=10)
    assert counts(redis_conn, FIRST_KEY)[event["id"]] == 1  # done before the kill: not again
    assert counts(redis_conn, STARTS_KEY)[event["id"]] == 2  # interrupted, then run again
    assert counts(redis_conn, FINISHES_KEY)[event["id"]] == 1
    assert "(killed by SIGKILL); starting another" in log.read_text()


def _or_none(read, *args):
    """`read(*args)`, or None while a port does not answer yet."""
    try:
        return read(*args)
    except OSError:
        return None


def test_redis_is_located_once_for_every_child(redis_url, tmp_path):
    """The command names its Redis once; the children inherit it, and say nothing again."""
    log = tmp_path / "worker.log"
    burst = worker_command("--processes", "3", "--burst")
    with running(burst, project_env(redis_url), log) as command:
        assert command.wait(timeout=60) == 0, log.read_text()
    text = log.read_text()
    assert text.count("Redis: ") == 1, text
    assert text.count(" listening on ") == 3, text


def test_a_child_that_refuses_its_settings_stops_the_command(redis_url, tmp_path):
    env = project_env(redis_url, TW_HANDLER_MODULES="no_such_handlers")
    log = tmp_path / "worker.log"
    with running(worker_command("--processes", "2"), env, log) as command:
        assert command.wait(timeout=60) == 2, log.read_text()
    text = log.read_text()
    assert "error: TW_HANDLER_MODULES names 'no_such_handlers'" in text
    assert "a worker process refused the settings; stopping" in text


def test_a_child_with_a_bug_is_started_again_not_stopped(redis_url, tmp_path):
    """A ValueError is a bug, not a refused setting: its traceback, and another child."""
    (tmp_path / "buggy_handlers.py").write_text("raise ValueError('a bug at import')\n")
    env = project_env(redis_url, TW_HANDLER_MODULES="buggy_handlers")
    env["PYTHONPATH"] += os.pathsep + str(tmp_path)
    log = tmp_path / "worker.log"
    with running(worker_command("--processes", "2"), env, log) as command:
        wait_for(lambda: log.read_text().count("starting another") >= 4, timeout=30)
        assert command.poll() is None  # still running, its children started again
        command.send_signal(signal.SIGTERM)
        assert command.wait(timeout=20) == 0, log.read_text()
    text = log.read_text()
    assert "ValueError: a bug at import" in text and "Traceback" in text
    assert "exited (status 1); starting another" in text
    assert "error: " not in text
