"""Contract tests: what `rq_compat` relies on of RQ, against the installed RQ.

The intake and the Lua scripts write RQ's jobs and keys themselves, and the worker overrides
methods RQ does not document as extension points. Each test here fails when an RQ release
changes one of those, before an event is lost or misread. The kit runs this file on the
lowest allowed versions of the dependencies as well as the newest.
"""

import inspect
import json
import zlib
from datetime import UTC, datetime

import pytest
from rq import Queue, Retry, SimpleWorker
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.registry import DeferredJobRegistry, FinishedJobRegistry
from rq.serializers import JSONSerializer
from rq.utils import utcformat, utcparse

from {{ cookiecutter.package_name }} import rq_compat
from {{ cookiecutter.package_name }}.events import queue_for
from {{ cookiecutter.package_name }}.intake import (
    JOB_FUNCTION,
    PER_EVENT_FIELDS,
    RESULT_TTL_SECONDS,
    Intake,
    job_data,
    open_queues,
)
from {{ cookiecutter.package_name }}.testing import make_event
from {{ cookiecutter.package_name }}.worker import MovingQueue, Worker

# Fields RQ writes that differ between two jobs enqueued a moment apart.
PER_JOB = {*PER_EVENT_FIELDS, "last_heartbeat", "started_at", "ended_at"}


def fetch(redis_conn, job_id):
    return Job.fetch(job_id, connection=redis_conn, serializer=JSONSerializer)


def test_a_job_the_intake_wrote_is_read_back_by_rq(settings, redis_conn):
    event = make_event("order.created")
    assert Intake(redis_conn, settings).submit(event)
    job = fetch(redis_conn, event["id"])
    assert job.get_status(refresh=False) == JobStatus.QUEUED
    assert job.func_name == JOB_FUNCTION
    assert list(job.args) == [event] and job.kwargs == {}
    assert job.origin == queue_for(event["type"])
    assert job.timeout == settings.job_timeout_seconds
    assert job.result_ttl == RESULT_TTL_SECONDS
    assert job.retries_left == settings.retry_max
    assert job.retry_intervals == list(settings.retry_intervals)
    assert job.description == f"{event['type']} {event['id']}"
    assert job.created_at == job.enqueued_at
    assert abs((datetime.now(UTC) - job.enqueued_at.replace(tzinfo=UTC)).total_seconds()) < 60
    queue = Queue(job.origin, connection=redis_conn, serializer=JSONSerializer)
    assert queue.get_job_ids() == [event["id"]]


def test_the_intake_writes_the_hash_rq_would(settings, redis_conn):
    """The same job through RQ's own `Queue.enqueue_call`: the same fields, and the same
    values but for the per-job ones."""
    event = make_event("order.created")
    Intake(redis_conn, settings).submit(event)
    queue = open_queues(redis_conn)[queue_for(event["type"])]
    retry = Retry(max=settings.retry_max, interval=settings.retry_intervals)
    queue.enqueue_call(
        JOB_FUNCTION,
        args=(event,),
        job_id="rq-own",
        timeout=settings.job_timeout_seconds,
        result_ttl=RESULT_TTL_SECONDS,
        retry=retry,
        description=f"{event['type']} {event['id']}",
    )
    ours = redis_conn.hgetall(Job.key_for(event["id"]))
    theirs = {k: v for k, v in redis_conn.hgetall(Job.key_for("rq-own")).items() if v != b""}
    assert set(ours) == set(theirs)
    differing = {k.decode() for k in ours if ours[k] != theirs[k]}
    assert differing <= PER_JOB
    # The call itself: the same once RQ's compression is undone.
    assert JSONSerializer.loads(zlib.decompress(theirs[b"data"])) == JSONSerializer.loads(
        ours[b"data"]
    )


def test_the_call_is_framed_as_rqs_json_serializer_writes_it():
    body = json.dumps({"id": "evt_1", "type": "ping", "data": {"é": [1, 2]}}).encode()
    data = job_data(body)
    assert JSONSerializer.loads(data) == [JOB_FUNCTION, None, [json.loads(body)], {}]
    assert body in data  # byte for byte: what the sender signed
    assert rq_compat.envelope_of(data) == json.loads(body)
    assert rq_compat.envelope_of(zlib.compress(data)) == json.loads(body)


def test_an_rq_saved_job_gives_its_envelope_back(redis_conn):
    envelope = {"id": "evt_2", "type": "order.created"}
    queue = Queue("orders", connection=redis_conn, serializer=JSONSerializer)
    job = queue.enqueue_call(JOB_FUNCTION, args=(envelope,), job_id="evt_2")
    assert rq_compat.envelope_of(redis_conn.hget(job.key, "data")) == envelope


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 1, 31, 12, 0, 0, 0, tzinfo=UTC),
        datetime(2026, 12, 1, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(1999, 7, 4, 1, 2, 3, 40, tzinfo=UTC),
    ],
)
def test_job_timestamps_are_written_as_rq_writes_them(moment):
    assert rq_compat.job_timestamp(moment) == utcformat(moment)
    assert utcparse(rq_compat.job_timestamp(moment)) == moment


def test_the_keys_are_rqs(redis_conn):
    queue = Queue("orders", connection=redis_conn)
    assert rq_compat.queue_key("orders") == queue.key
    assert Job.key_for("evt_3") == rq_compat.JOB_KEY_PREFIX + "evt_3"
    finished = FinishedJobRegistry("orders", redis_conn).key
    deferred = DeferredJobRegistry("orders", redis_conn).key
    assert finished == rq_compat.FINISHED_REGISTRY_PREFIX + "orders"
    assert deferred == rq_compat.DEFERRED_REGISTRY_PREFIX + "orders"
    assert queue.intermediate_queue_key != queue.key  # the scripts take it as given, as a key


def test_a_live_worker_is_where_the_metrics_look(redis_conn):
    worker = SimpleWorker([Queue("orders", connection=redis_conn)], connection=redis_conn)
    worker.register_birth()
    worker.heartbeat()
    try:
        members = redis_conn.smembers(rq_compat.WORKERS_BY_QUEUE_KEY % "orders")
        assert members == {worker.key.encode()}
        stamp = redis_conn.hget(worker.key, rq_compat.WORKER_HEARTBEAT_FIELD)
        age = datetime.now(UTC) - utcparse(stamp.decode()).replace(tzinfo=UTC)
        assert abs(age.total_seconds()) < 60
    finally:
        worker.register_death()


@pytest.mark.parametrize("status", rq_compat.SCRIPT_STATUSES)
def test_the_statuses_the_scripts_write_are_rqs(redis_conn, status):
    queue = Queue("orders", connection=redis_conn, serializer=JSONSerializer)
    job = queue.enqueue_call(JOB_FUNCTION, args=({},), job_id="evt_4")
    redis_conn.hset(job.key, "status", status)
    assert fetch(redis_conn, "evt_4").get_status(refresh=False) == JobStatus(status)


def test_the_fields_the_scripts_use_are_rqs(redis_conn):
    queue = Queue("orders", connection=redis_conn, serializer=JSONSerializer)
    job = queue.enqueue_call(JOB_FUNCTION, args=({},), job_id="evt_5")
    fields = {name.decode() for name in redis_conn.hgetall(job.key)}
    assert set(rq_compat.SCRIPT_JOB_FIELDS) <= fields
    assert redis_conn.hget(job.key, "origin") == b"orders"
    assert redis_conn.hget(job.key, "status") == JobStatus.QUEUED.value.encode()


def test_a_job_requeued_at_the_front_in_a_transaction(redis_conn):
    queue = Queue("orders", connection=redis_conn, serializer=JSONSerializer)
    queue.enqueue_call(JOB_FUNCTION, args=({},), job_id="waiting")
    job = queue.enqueue_call(JOB_FUNCTION, args=({},), job_id="taken")
    redis_conn.lrem(queue.key, 1, "taken")
    job.set_status(JobStatus.STARTED)
    job.meta["note"] = "kept"
    with redis_conn.pipeline() as pipe:
        pipe.multi()
        rq_compat.requeue_at_front(queue, job, pipe)
        pipe.execute()
    assert queue.get_job_ids() == ["taken", "waiting"]
    again = fetch(redis_conn, "taken")
    assert again.get_status(refresh=False) == JobStatus.QUEUED
    assert again.meta == {"note": "kept"}


def test_meta_saved_in_a_pipeline(redis_conn):
    queue = Queue("orders", connection=redis_conn, serializer=JSONSerializer)
    job = queue.enqueue_call(JOB_FUNCTION, args=({},), job_id="evt_6")
    job.meta["handlers_done"] = ["a"]
    with redis_conn.pipeline() as pipe:
        rq_compat.save_meta(pipe, job)
        pipe.execute()
    assert fetch(redis_conn, "evt_6").meta == {"handlers_done": ["a"]}


def test_a_dequeued_job_is_fetched_with_its_queue(redis_conn):
    queue = Queue("orders", connection=redis_conn, serializer=JSONSerializer)
    queue.enqueue_call(JOB_FUNCTION, args=({},), job_id="evt_7")
    job, found = rq_compat.fetch_dequeued(
        MovingQueue, redis_conn, queue.key, "evt_7", serializer=JSONSerializer
    )
    assert (job.id, found.name, type(found)) == ("evt_7", "orders", MovingQueue)
    assert rq_compat.fetch_dequeued(MovingQueue, redis_conn, queue.key, "gone") is None


def test_a_run_is_started_while_the_registry_holds_it(redis_conn):
    queue = Queue("orders", connection=redis_conn, serializer=JSONSerializer)
    job = queue.enqueue_call(JOB_FUNCTION, args=({},), job_id="evt_8")
    with redis_conn.pipeline() as pipe:
        execution = Execution.create(job, ttl=60, pipeline=pipe)
        pipe.execute()
    assert rq_compat.is_started(redis_conn, job, execution)
    job.started_job_registry.remove_execution(execution)
    assert not rq_compat.is_started(redis_conn, job, execution)


def test_a_worker_forgets_a_run(redis_conn):
    worker = Worker(["orders"], connection=redis_conn, serializer=JSONSerializer)
    execution = Execution("run-1", "evt_9", connection=redis_conn)
    worker.executions[execution.id] = execution
    rq_compat.forget_execution(worker, execution)
    assert execution.id not in worker.executions


def _rq_method(name: str):
    owner, method = name.split(".")
    return getattr({"Queue": Queue, "Worker": SimpleWorker}[owner], method)


@pytest.mark.parametrize("name", sorted(rq_compat.WORKER_OVERRIDES))
def test_rq_has_the_methods_the_worker_overrides_with_their_parameters(name):
    parameters = list(inspect.signature(_rq_method(name)).parameters)
    if parameters[:1] in (["self"], ["cls"]):
        parameters = parameters[1:]
    expected = list(rq_compat.WORKER_OVERRIDES[name])
    assert parameters[: len(expected)] == expected, f"RQ's {name}{parameters}"


@pytest.mark.parametrize(
    "ours, rq_class, prefix", [(Worker, SimpleWorker, "Worker"), (MovingQueue, Queue, "Queue")]
)
def test_every_method_the_worker_overrides_is_listed(ours, rq_class, prefix):
    """An override added to `worker.py` must be added to `rq_compat.WORKER_OVERRIDES`, so that
    the test above holds RQ to it."""
    overridden = {
        f"{prefix}.{name}"
        for name, value in vars(ours).items()
        if inspect.isfunction(getattr(value, "__func__", value))  # not `queue_class`
        and not name.startswith("__")
        and hasattr(rq_class, name)
    }
    assert overridden <= set(rq_compat.WORKER_OVERRIDES)
