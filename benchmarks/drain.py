"""Drain figures: how fast queued no-op events go through a worker.

Three contenders, each draining its own batch in burst mode as a subprocess:
the project's `worker` command on events queued by the receiver's own intake, a plain
`rq worker` with RQ's `SimpleWorker` on plain no-op jobs (the stack's ceiling), and
`rq worker` with RQ's default forking `Worker` (and `SpawnWorker`) on the same events as
the project's command. Throughput is taken from the jobs' own `started_at`/`ended_at`
stamps in Redis, so process start-up is not counted against anyone.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path

import redis
from common import intake, project_env


def _stamp(raw: bytes) -> float:
    text = raw.decode().rstrip("Z")
    fmt = "%Y-%m-%dT%H:%M:%S.%f" if "." in text else "%Y-%m-%dT%H:%M:%S"
    return datetime.strptime(text, fmt).timestamp()


def jobs_per_second(conn: redis.Redis, job_ids: list[str]) -> float:
    """Jobs per second between the first job's start and the last job's end."""
    pipe = conn.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hmget(f"rq:job:{job_id}", "started_at", "ended_at", "status")
    rows = pipe.execute()
    unfinished = [i for i, row in zip(job_ids, rows, strict=True) if row[2] != b"finished"]
    if unfinished:
        raise RuntimeError(f"{len(unfinished)} job(s) did not finish, e.g. {unfinished[0]}")
    first = min(_stamp(row[0]) for row in rows)
    last = max(_stamp(row[1]) for row in rows)
    return len(job_ids) / (last - first)


def queue_events(conn: redis.Redis, package: str, count: int) -> list[str]:
    """Queue `count` order events through the project's own intake (as the receiver does)."""
    testing = __import__(f"{package}.testing", fromlist=["make_event"])
    submit = intake(conn, package).submit
    ids = []
    for _ in range(count):
        event = testing.make_event("order.created", {"id": "ord_1", "status": "created"})
        submit(event)
        ids.append(event["id"])
    return ids


def queue_plain_jobs(conn: redis.Redis, count: int) -> list[str]:
    import noop_jobs
    from rq import Queue

    queue = Queue("plain", connection=conn)
    pipe = conn.pipeline(transaction=False)
    jobs = [queue.enqueue(noop_jobs.noop, pipeline=pipe) for _ in range(count)]
    pipe.execute()
    return [job.id for job in jobs]


def drain_project_worker(project, package, redis_url, conn, count) -> float:
    ids = queue_events(conn, package, count)
    command = [sys.executable, "-m", package, "worker", "--burst"]
    subprocess.run(command, env=project_env(project, package, redis_url), check=True, cwd=project)
    return jobs_per_second(conn, ids)


def drain_rq_worker(project, package, redis_url, conn, count, worker_class, plain) -> float:
    """`rq worker --burst` with `worker_class` on plain no-op jobs or on the project's events."""
    if plain:
        ids = queue_plain_jobs(conn, count)
        queues, serializer = ["plain"], []
    else:
        ids = queue_events(conn, package, count)
        queues = ["orders", "prices", "other"]
        serializer = ["--serializer", "rq.serializers.JSONSerializer"]
    rq = Path(sys.executable).with_name("rq")
    command = [
        str(rq), "worker", "--burst", "--url", redis_url, "-w", worker_class,
        "--quiet", "--logging_level", "WARNING", *serializer, *queues,
    ]  # fmt: skip
    subprocess.run(command, env=project_env(project, package, redis_url), check=True, cwd=project)
    return jobs_per_second(conn, ids)
