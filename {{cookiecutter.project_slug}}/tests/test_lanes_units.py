"""Lanes (`lanes.py`) in one process, on a real Redis: the order in which events join a
lane when workers race, the fencing of a lost lease, and the settings and gauges."""

import pytest
from prometheus_client import generate_latest
from rq.serializers import JSONSerializer

from {{ cookiecutter.package_name }} import lanes, metrics
from {{ cookiecutter.package_name }}.config import ConfigError, settings_from_env
from {{ cookiecutter.package_name }}.console import app as console_app
from {{ cookiecutter.package_name }}.events import Event
from {{ cookiecutter.package_name }}.intake import Intake, open_queues
from {{ cookiecutter.package_name }}.routing import routes
from {{ cookiecutter.package_name }}.testing import make_event, run_worker
from {{ cookiecutter.package_name }}.worker import MovingQueue

LANE = "test_lanes_units.apply:ord_1"


def apply(event):
    """The lane handler (never called here: these tests drive the lanes, not the jobs)."""


def tally(event):
    """A handler without a lane."""


@pytest.fixture(params=["order", "function"])
def lane_handler(request):
    """`apply` in a lane per order: by name (Redis works out the lanes of a job taken
    earlier) or by a function of the event (the worker reads that job and says)."""
    lane = "order" if request.param == "order" else (lambda event: event.object["id"])
    routes.on("order.*", lane=lane)(apply)


def take(settings, redis_conn, *events):
    """Queue `events` and take them off the queue as workers do, in that order."""
    intake = Intake(redis_conn, settings)
    for event in events:
        intake.submit(event)
    queue = MovingQueue("orders", connection=redis_conn, serializer=JSONSerializer)
    return [
        MovingQueue.dequeue_any([queue], None, redis_conn, serializer=JSONSerializer)[0]
        for _ in events
    ], queue


def test_a_job_taken_later_never_overtakes_one_taken_earlier(lane_handler, settings, redis_conn):
    """Two workers take A then B; B's worker reaches Redis first. B joins behind A all the
    same (its worker joins A for it) and waits, off the worker; A runs."""
    first, second = (
        make_event("order.created", {"id": "ord_1"}),
        make_event("order.cancelled", {"id": "ord_1"}),
    )
    (job_a, job_b), queue = take(settings, redis_conn, first, second)
    lane_set = lanes.Lanes(redis_conn, lease_seconds=20)
    ticket_b = lane_set.enter(job_b, queue, done=())
    assert ticket_b.whole_job_parked and not ticket_b.claimed
    assert redis_conn.hget(job_b.key, "status") == b"deferred"
    assert queue.intermediate_queue.get_job_ids() == [job_a.id]  # B is off the worker
    ticket_a = lane_set.enter(job_a, queue, done=())
    assert list(ticket_a.claimed) == [LANE]
    # A succeeds: the lane passes to B, back at the front of its queue.
    job_a.set_status("finished")
    assert not lane_set.leave(job_a, ticket_a, done=[f"{__name__}.apply"])
    assert redis_conn.lrange(queue.key, 0, -1) == [job_b.id.encode()]
    assert redis_conn.hget(job_b.key, "status") == b"queued"


def test_a_job_without_a_lane_handler_costs_the_lanes_no_redis_call(settings, redis_conn):
    routes.on("order.*")(apply)
    routes.on("price.updated", lane="listing")(apply)  # lanes exist, not for orders
    (job,), queue = take(settings, redis_conn, make_event("order.created", {"id": "ord_1"}))
    redis_conn.connection_pool.disconnect()
    lane_set = lanes.Lanes(redis_conn, lease_seconds=20)
    redis_conn.connection_pool.connection_kwargs["port"] = 1  # any call would now fail
    assert lane_set.enter(job, queue, done=()) is None


def test_an_event_woken_while_it_ends_its_run_is_queued_once(settings, redis_conn):
    """B ran its lane-free handler while A held the lane. A's release sees B 'finished' by
    RQ and queues it; B's own end, just after, must not queue it a second time (it would
    then run twice at once)."""
    routes.on("order.*", lane="order")(apply)
    routes.on("order.*")(tally)
    events = (
        make_event("order.created", {"id": "ord_1"}),
        make_event("order.cancelled", {"id": "ord_1"}),
    )
    (job_a, job_b), queue = take(settings, redis_conn, *events)
    lane_set = lanes.Lanes(redis_conn, lease_seconds=20)
    ticket_a = lane_set.enter(job_a, queue, done=())
    ticket_b = lane_set.enter(job_b, queue, done=())
    assert list(ticket_b.parked) == [LANE] and not ticket_b.whole_job_parked
    job_b.set_status("finished")  # `tally` ran; RQ recorded the run
    job_a.set_status("finished")
    lane_set.leave(job_a, ticket_a, done=[f"{__name__}.apply", f"{__name__}.tally"])
    assert lane_set.leave(job_b, ticket_b, done=[f"{__name__}.tally"])
    assert redis_conn.lrange(queue.key, 0, -1) == [job_b.id.encode()]


def test_a_lost_lease_never_lets_two_events_run_at_once(lane_handler, settings, redis_conn):
    """A's worker freezes past its lease; A runs again elsewhere with a new token. The
    frozen run can neither renew nor release the lane: B waits for the new run of A."""
    events = (
        make_event("order.created", {"id": "ord_1"}),
        make_event("order.cancelled", {"id": "ord_1"}),
    )
    (job_a, job_b), queue = take(settings, redis_conn, *events)
    lane_set = lanes.Lanes(redis_conn, lease_seconds=20)
    frozen = lane_set.enter(job_a, queue, done=())
    assert lane_set.enter(job_b, queue, done=()).whole_job_parked
    redis_conn.hset(lanes.PREFIX + LANE, "until", 0)  # the lease ran out
    again = lane_set.enter(job_a, queue, done=())
    assert again.claimed[LANE][1] > frozen.claimed[LANE][1]
    assert lane_set.renew(job_a, frozen) == [LANE]
    job_a.set_status("finished")
    lane_set.leave(job_a, frozen, done=[f"{__name__}.apply"])
    assert redis_conn.zrange(lanes.PREFIX + LANE + ":q", 0, 0) == [job_a.id.encode()]
    assert redis_conn.hget(lanes.PREFIX + LANE, "holder") == job_a.id.encode()
    assert redis_conn.llen(queue.key) == 0  # B still waits
    assert lane_set.renew(job_a, again) == []
    lane_set.leave(job_a, again, done=[f"{__name__}.apply"])
    assert redis_conn.lrange(queue.key, 0, -1) == [job_b.id.encode()]


def test_a_blocked_lane_is_scraped_with_its_age(lane_handler, settings, redis_conn):
    (job,), queue = take(settings, redis_conn, make_event("order.created", {"id": "ord_1"}))
    lane_set = lanes.Lanes(redis_conn, lease_seconds=20)
    ticket = lane_set.enter(job, queue, done=())
    job.set_status("failed")
    redis_conn.zadd(lanes.BLOCKED_KEY, {"older:lane": 1})  # blocked long ago
    lane_set.leave(job, ticket, done=())
    scrape = generate_latest(metrics.receiver_registry(open_queues(redis_conn), 20)).decode()
    assert "tw_lanes_blocked 2.0" in scrape
    age = next(line for line in scrape.splitlines() if line.startswith("tw_lanes_oldest"))
    assert float(age.split()[1]) > 1e9
    assert [info.lane for info in lanes.list_lanes(redis_conn, blocked_only=True)] == [LANE]


def test_lane_takes_a_name_or_a_function():
    with pytest.raises(ValueError, match="lane="):
        routes.on("order.*", lane="")
    routes.on("price.updated", lane=lambda event: event.object["listingId"])(apply)
    handler = routes.handlers_for("price.updated")[0]
    event = Event.from_dict(make_event("price.updated", {"listingId": "lst_9"}))
    assert lanes.lanes_of([handler], event) == {f"{__name__}.apply:lst_9": handler}


@pytest.mark.parametrize("value", ["block", "skip", "SKIP"])
def test_lane_on_failure_setting(value):
    assert settings_from_env({"TW_LANE_ON_FAILURE": value}).lane_on_failure == value.lower()


def test_lane_on_failure_setting_refuses_other_values():
    with pytest.raises(ConfigError, match="TW_LANE_ON_FAILURE"):
        settings_from_env({"TW_LANE_ON_FAILURE": "retry"})


def test_the_console_overview_shows_a_blocked_lane(settings, redis_conn):
    def refuses(event):
        raise RuntimeError("no")

    routes.on("order.*", lane="order")(refuses)
    intake = Intake(redis_conn, settings)
    first = make_event("order.created", {"id": "ord_9"})
    intake.submit(first)
    intake.submit(make_event("order.confirmed", {"id": "ord_9"}))
    run_worker(redis_conn, settings)
    html = console_app.create_app(settings, redis_conn).test_client().get("/").get_data(True)
    assert "blocked lanes" in html and "Blocked lanes" in html
    assert f"{__name__}.test_the_console_overview_shows_a_blocked_lane.&lt;locals&gt;" in html
    assert f'href="/events/{first["id"]}"' in html
