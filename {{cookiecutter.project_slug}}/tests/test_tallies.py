"""The per-minute outcome history the console charts: tallied in memory, flushed to Redis
in one round trip, read back per minute; and the chart geometry drawn from it."""

import json
import os
import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from {{ cookiecutter.package_name }} import tallies
from {{ cookiecutter.package_name }}.console.charts import stacked_bars
from {{ cookiecutter.package_name }}.dev.embedded_redis import free_port
from {{ cookiecutter.package_name }}.routing import routes
from {{ cookiecutter.package_name }}.testing import make_event, run_worker, signed_post

NOW = 1_750_000_000.0  # a fixed clock: 29166666 minutes and 40 s


class Clock:
    def __init__(self, now: float = NOW):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_counts_land_in_per_minute_hashes_that_expire(redis_conn):
    clock = Clock()
    tally = tallies.Tally(interval=None, clock=clock)
    tally.bind(redis_conn)
    tally.count("deliveries", "accepted")
    tally.count("deliveries", "accepted")
    tally.count("deliveries", "rejected")
    clock.now += 60
    tally.count("deliveries", "accepted", 5)
    assert redis_conn.keys("tw:history:*") == []  # nothing written before the flush
    assert tally.flush() == 8
    minute = int(NOW // 60)
    assert redis_conn.hgetall(tallies.key("deliveries", minute)) == {
        b"accepted": b"2",
        b"rejected": b"1",
    }
    assert redis_conn.hgetall(tallies.key("deliveries", minute + 1)) == {b"accepted": b"5"}
    assert 0 < redis_conn.ttl(tallies.key("deliveries", minute)) <= tallies.KEEP_SECONDS
    # A second flush adds to the same hashes; an empty one writes nothing.
    tally.count("deliveries", "accepted")
    assert tally.flush() == 1 and tally.flush() == 0
    assert redis_conn.hget(tallies.key("deliveries", minute + 1), "accepted") == b"6"


def test_read_gives_every_minute_of_the_span_oldest_first(redis_conn):
    minute = int(NOW // 60)
    redis_conn.hset(tallies.key("handlers", minute), mapping={"ok:a": 3, "failed:b": 1})
    redis_conn.hset(tallies.key("handlers", minute - 2), "ok:a", 7)
    redis_conn.hset(tallies.key("handlers", minute - 3), "ok:a", 100)  # outside the span
    rows = tallies.read(redis_conn, "handlers", minutes=3, now=NOW)
    assert rows == [
        (minute - 2, {"ok:a": 7}),
        (minute - 1, {}),
        (minute, {"ok:a": 3, "failed:b": 1}),
    ]


def test_count_is_a_no_op_until_bound(redis_conn):
    tally = tallies.Tally(interval=None)
    tally.count("deliveries", "accepted")
    tally.bind(redis_conn)
    assert tally.flush() == 0


def test_a_tally_redis_refused_is_kept_for_the_next_flush(redis_conn):
    down = redis.Redis(port=free_port(), retry=Retry(NoBackoff(), 0))  # fails at once
    tally = tallies.Tally(interval=None, clock=Clock())
    tally.bind(down)
    tally.count("deliveries", "error", 3)
    assert tally.flush() == 0  # refused, kept
    tally.bind(redis_conn)  # switching flushes what was counted for the old one: refused again
    assert tally.flush() == 3
    assert redis_conn.hget(tallies.key("deliveries", int(NOW // 60)), "error") == b"3"


def test_the_background_thread_flushes_on_its_own(redis_conn):
    tally = tallies.Tally(interval=0.05)
    tally.bind(redis_conn)
    tally.count("deliveries", "duplicate")
    deadline = time.monotonic() + 5
    while not redis_conn.keys("tw:history:deliveries:*") and time.monotonic() < deadline:
        time.sleep(0.02)
    [key] = redis_conn.keys("tw:history:deliveries:*")
    assert redis_conn.hgetall(key) == {b"duplicate": b"1"}


def test_a_forked_child_starts_with_an_empty_tally_and_its_own_thread(redis_conn):
    tally = tallies.Tally(interval=3600, clock=Clock())
    tally.bind(redis_conn)
    tally.count("deliveries", "accepted", 2)  # the parent's, never the child's to send
    pid = os.fork()
    if pid == 0:  # the child: report through its exit status, never return into pytest
        ok = not tally._counts and not tally._timer.running
        tally.count("deliveries", "rejected")
        ok = ok and tally._timer.running and tally.flush() == 1
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert tally.flush() == 2
    assert redis_conn.hgetall(tallies.key("deliveries", int(NOW // 60))) == {
        b"accepted": b"2",
        b"rejected": b"1",
    }


def summed(rows) -> dict[str, int]:
    """Counts over the minutes read (a test may straddle a minute's end)."""
    total: dict[str, int] = {}
    for _minute, counts in rows:
        for name, number in counts.items():
            total[name] = total.get(name, 0) + number
    return total


def test_the_receiver_and_the_worker_count_their_outcomes(client, settings, redis_conn):
    routes.clear_handlers()  # the plugin's autouse fixture puts the project's back

    def fine(event):
        pass

    def broken(event):
        raise RuntimeError("no")

    routes.on("order.created")(fine)
    routes.on("order.created")(broken)
    event = make_event("order.created")
    assert signed_post(client, event).status_code == 202
    assert signed_post(client, event).status_code == 200
    assert signed_post(client, json.dumps(event).encode(), secret="whsec_wrong").status_code == 401
    run_worker(redis_conn, settings)  # `broken` fails its first run and every retry
    tallies.TALLY.flush()  # the test's own tally (see `testing`), flushed by hand
    assert summed(tallies.read(redis_conn, tallies.DELIVERIES, minutes=2)) == {
        "accepted": 1,
        "duplicate": 1,
        "rejected": 1,
    }
    assert summed(tallies.read(redis_conn, tallies.HANDLERS, minutes=2)) == {
        f"ok:{fine.__module__}.{fine.__qualname__}": 1,
        f"failed:{broken.__module__}.{broken.__qualname__}": settings.retry_max + 1,
    }


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        # Two minutes: 3 ok + 1 bad, then 2 ok; the taller bar fills the height.
        (
            [(0, {"ok": 3, "bad": 1}), (1, {"ok": 2})],
            [
                [(10.0, 30.0, "g"), (0.0, 10.0, "r")],
                [(20.0, 20.0, "g")],
            ],
        ),
        ([(0, {}), (1, {"other": 9})], [[], []]),  # nothing named: empty bars, no division
    ],
)
def test_stacked_bars_geometry(rows, expected):
    chart = stacked_bars(rows, {"ok": "g", "bad": "r"}, width=100, height=40)
    assert [[(s.y, s.height, s.css_class) for s in bar.segments] for bar in chart.bars] == expected
    assert [bar.x for bar in chart.bars] == [0.0, 50.0]
    assert all(bar.width == 49.0 for bar in chart.bars)
    assert chart.total == {
        "ok": sum(r.get("ok", 0) for _m, r in rows),
        "bad": sum(r.get("bad", 0) for _m, r in rows),
    }
    assert chart.bars[0].title.startswith("00:00 UTC: ")
