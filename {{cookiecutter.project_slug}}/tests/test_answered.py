"""Each answered request's bookkeeping (counters, history, the log line): booked at once
for an app built with given settings, in batches off the request path under gunicorn."""

import logging
import time

from processes import python, wait_for

from {{ cookiecutter.package_name }} import logs, metrics, tallies
from {{ cookiecutter.package_name }}.answered import Answered, Books

APP_LOGGER = "{{ cookiecutter.package_name }}.app"


def answer(n: int = 1, at: float | None = None, **fields) -> Answered:
    values = {
        "at": time.time() if at is None else at,
        "status": 202,
        "is_delivery": True,
        "outcome": "accepted",
        "event_id": f"evt_booked_{n}",
        "event_type": "order.created",
        "request_id": f"req_{n:016x}",
        "method": "POST",
        "path": "/webhooks",
        "elapsed": 0.002,
    }
    values.update(fields)
    return Answered(**values)


def received() -> float:
    return metrics.REGISTRY.get_sample_value("tw_webhooks_received_total") or 0.0


def delivery_lines(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == APP_LOGGER]


def test_without_an_interval_each_answer_is_booked_at_once(caplog):
    caplog.set_level(logging.INFO, logger=APP_LOGGER)
    before = received()
    Books(interval=None).note(answer(1))
    assert received() == before + 1
    [line] = delivery_lines(caplog)
    assert line.getMessage().endswith(
        "accepted order.created evt_booked_1 in 2.00 ms (req_0000000000000001)"
    )


def test_notes_are_booked_by_the_thread_within_the_interval(caplog):
    caplog.set_level(logging.INFO, logger=APP_LOGGER)
    books = Books(interval=0.05)
    before = received()
    for n in range(3):
        books.note(answer(n))
    assert received() == before  # nothing booked on the request thread
    wait_for(lambda: received() == before + 3, timeout=5)
    assert [r.eventId for r in delivery_lines(caplog)] == [
        "evt_booked_0",
        "evt_booked_1",
        "evt_booked_2",
    ]


def test_a_line_keeps_the_time_of_the_answer(caplog):
    caplog.set_level(logging.INFO, logger=APP_LOGGER)
    books = Books(interval=60)
    books.note(answer(7, at=1_750_000_000.25))
    assert books.flush() == 1
    [line] = delivery_lines(caplog)
    assert (line.created, line.msecs) == (1_750_000_000.25, 250.0)
    assert logs.TextFormatter().format(line).split(" ")[1].endswith(",250")


def test_a_full_book_is_booked_by_the_request_thread():
    books = Books(interval=60, capacity=2)
    before = received()
    books.note(answer(1))
    assert received() == before
    books.note(answer(2))
    assert received() == before + 2


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_batch_counts_every_delivery_by_outcome(redis_conn):
    """Each delivery of a batch lands in its outcome's counter and in the console's tally;
    a health check in the same batch is logged, not counted."""
    tallies.TALLY.bind(redis_conn)  # the test's own tally (see `testing`)
    names = {
        "received": ("tw_webhooks_received_total", {}),
        "orders": ("tw_webhooks_enqueued_total", {"queue": "orders"}),
        "prices": ("tw_webhooks_enqueued_total", {"queue": "prices"}),
        "duplicate": ("tw_webhooks_duplicate_total", {}),
        "bad_signature": ("tw_webhooks_rejected_total", {"code": "bad_signature"}),
        "storage_unavailable": ("tw_webhooks_errors_total", {"code": "storage_unavailable"}),
        "latencies": ("tw_webhook_request_duration_seconds_count", {}),
    }
    before = {key: sample(name, **labels) for key, (name, labels) in names.items()}
    books = Books(interval=60)
    batch = [
        answer(1),
        answer(2),
        answer(3, event_type="price.updated"),
        answer(4, status=200, outcome="duplicate"),
        answer(5, status=401, outcome="bad_signature", event_id=None, event_type=None),
        answer(6, status=503, outcome="storage_unavailable"),
        answer(7, status=200, is_delivery=False, outcome="ok", path="/healthz"),
    ]
    for noted in batch:
        books.note(noted)
    assert books.flush() == 7
    after = {key: sample(name, **labels) for key, (name, labels) in names.items()}
    assert {key: after[key] - before[key] for key in names} == {
        "received": 6,
        "orders": 2,
        "prices": 1,
        "duplicate": 1,
        "bad_signature": 1,
        "storage_unavailable": 1,
        "latencies": 6,
    }
    tallies.TALLY.flush()
    tallied: dict[str, int] = {}
    for _minute, counts in tallies.read(redis_conn, tallies.DELIVERIES, minutes=2):
        for field, number in counts.items():
            tallied[field] = tallied.get(field, 0) + number
    assert tallied == {"accepted": 3, "duplicate": 1, "rejected": 1, "error": 1}


def test_one_answer_that_cannot_be_booked_costs_no_other(caplog):
    caplog.set_level(logging.INFO, logger=APP_LOGGER)
    books = Books(interval=60)
    books.note(answer(1))
    books.note(answer(2, event_type=None))  # "accepted" with no type: no queue to count
    books.note(answer(3))
    assert books.flush() == 3
    assert [r.levelname for r in delivery_lines(caplog)] == ["INFO", "ERROR", "INFO"]
    assert "could not book request req_0000000000000002" in caplog.text


FORK_AND_EXIT = """
import os, sys, time
from {{ cookiecutter.package_name }} import logs
from {{ cookiecutter.package_name }}.answered import Answered, Books

def answer(event_id):
    return Answered(time.time(), 202, True, "duplicate", event_id, "order.created",
                    "req_0", "POST", "/webhooks", 0.001)

logs.configure("text", "INFO", batched=True)
books = Books(interval=60)  # nothing is booked by the thread in this test
books.note(answer("evt_parent_1"))
pid = os.fork()
if pid == 0:
    books.note(answer("evt_child"))
    sys.exit(0)
os.waitpid(pid, 0)
books.note(answer("evt_parent_2"))
"""


def test_what_is_noted_is_booked_once_at_exit_across_a_fork():
    """gunicorn forks its workers, and a worker's last notes still wait when it exits."""
    done = python(FORK_AND_EXIT)
    assert done.returncode == 0, done.stderr
    booked = [line.split()[-5] for line in done.stderr.splitlines()]
    assert sorted(booked) == ["evt_child", "evt_parent_1", "evt_parent_2"]
