"""Bulk recovery: failed events selected by type, failing handler and time, on a real Redis
with real worker bursts; the same filters for `events export`."""

import dataclasses
import io
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from rq.job import Job
from rq.utils import now, utcformat
from test_capture import backdate_archive

from {{ cookiecutter.package_name }} import cli, event_filters, event_status, recovery
from {{ cookiecutter.package_name }}.app import create_app
from {{ cookiecutter.package_name }}.event_filters import EventFilter, parse_moment
from {{ cookiecutter.package_name }}.event_status import EventInfo
from {{ cookiecutter.package_name }}.intake import Intake
from {{ cookiecutter.package_name }}.routing import routes
from {{ cookiecutter.package_name }}.testing import make_event, run_worker, signed_post

NOW = 1_764_547_200.0  # 2025-12-01T00:00:00Z


@pytest.fixture
def handlers():
    """`books` takes orders, `mails` orders and prices, `audit` everything; each raises
    while its name is in the returned set."""
    routes.clear_handlers()  # `testing._only_project_handlers` puts them back after the test
    broken: set[str] = set()

    def books(event):
        if "books" in broken:
            raise RuntimeError("ledger down")

    def mails(event):
        if "mails" in broken:
            raise ConnectionRefusedError("mail server down")

    def audit(event):
        if "audit" in broken:
            raise RuntimeError("audit store down")

    routes.on("order.*")(books)
    routes.on("order.*")(mails)
    routes.on("price.*")(mails)
    routes.on("*")(audit)
    return broken


@pytest.fixture
def fail_fast(settings):
    """No retries: a failing event goes straight to the failed registry."""
    return dataclasses.replace(settings, retry_max=0)


@pytest.fixture
def cli_env(redis_url, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("TW_RETRY_MAX", "0")


def fail(redis_conn, settings, broken, names, *types):
    """Queue events of `types` and run them while the handlers `names` are broken."""
    broken.clear()
    broken.update(names)
    intake = Intake(redis_conn, settings)
    events = [make_event(t) for t in types]
    for event in events:
        assert intake.submit(event)
    run_worker(redis_conn, settings)
    broken.clear()
    return [event["id"] for event in events]


# --- pure parts --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1764547200", NOW),
        ("1764547200.5", NOW + 0.5),
        ("2025-12-01", NOW),
        ("2025-12-01T02:30", NOW + 2.5 * 3600),
        ("2025-12-01T02:30:00+02:00", NOW + 0.5 * 3600),
        ("90s", NOW - 90),
        ("15m", NOW - 900),
        ("2h", NOW - 7200),
        ("1.5h", NOW - 5400),
        ("3d", NOW - 3 * 86400),
        (" 2h ", NOW - 7200),
    ],
)
def test_moments_people_type(text, expected):
    assert parse_moment(text, now=NOW) == expected


@pytest.mark.parametrize("text", ["", "2 hours", "2w", "-2h", "yesterday", "2025-13-01", "h"])
def test_unreadable_moments_say_which_forms_work(text):
    with pytest.raises(ValueError, match="time ago"):
        parse_moment(text, now=NOW)


@pytest.mark.parametrize(
    "text", ["99999999999999999999", "99999999999999999999d", "0001-01-01", "100000d", "9" * 400]
)
def test_moments_before_1970_or_past_9999_are_out_of_range(text):
    """Past them a stream id, a datetime or a float gives out: a 400 or a usage error, never
    "Redis is down" or a traceback."""
    with pytest.raises(ValueError, match="out of range: want a time from 1970 to the year 9999"):
        parse_moment(text, now=NOW)


def info(event_type="order.created", received=NOW, failed=()):
    moment = datetime.fromtimestamp(received, UTC) if received is not None else None
    return EventInfo(
        id="evt_1", type=event_type, status="failed", received_at=moment, handlers_failed=failed
    )


FAILED = ("myproject.handlers.orders.reserve_seats", "myproject.handlers.mail.send")


@pytest.mark.parametrize(
    ("event_filter", "expected"),
    [
        (EventFilter(), True),
        (EventFilter(event_type="order.created"), True),
        (EventFilter(event_type="order.*"), True),
        (EventFilter(event_type="*"), True),
        (EventFilter(event_type="order.cancelled"), False),
        (EventFilter(event_type="price.*"), False),
        (EventFilter(handler="reserve_seats"), True),
        (EventFilter(handler="orders.reserve_seats"), True),
        (EventFilter(handler="myproject.handlers.mail.send"), True),
        (EventFilter(handler="seats"), False),  # a tail is whole dotted parts
        (EventFilter(handler="send_mail"), False),
        (EventFilter(since=NOW), True),  # at or after
        (EventFilter(since=NOW + 0.001), False),
        (EventFilter(until=NOW), False),  # strictly before
        (EventFilter(until=NOW + 0.001), True),
        (EventFilter(since=NOW - 1, until=NOW + 1), True),
        (EventFilter(event_type="order.*", handler="send", since=NOW - 1), True),
        (EventFilter(event_type="order.*", handler="nope", since=NOW - 1), False),
    ],
    ids=lambda value: value.describe() or "empty" if isinstance(value, EventFilter) else None,
)
def test_filter_matches_exactly_what_it_says(event_filter, expected):
    assert event_filter.matches(info(failed=FAILED)) is expected


def test_an_event_without_a_time_or_failed_handler_matches_only_filters_without_them():
    bare = info(received=None, failed=())
    assert EventFilter(event_type="order.*").matches(bare)
    assert not EventFilter(since=0).matches(bare)
    assert not EventFilter(until=NOW).matches(bare)
    assert not EventFilter(handler="send").matches(bare)


def test_a_bad_type_pattern_is_refused():
    with pytest.raises(ValueError, match="pattern"):
        EventFilter(event_type="order.*.x")
    assert EventFilter().empty and not EventFilter(handler="x").empty


# --- on a real Redis ---------------------------------------------------------------------


def test_the_job_records_which_handlers_failed_until_they_succeed(
    handlers, fail_fast, redis_conn, cli_env, capsys
):
    [event_id] = fail(redis_conn, fail_fast, handlers, {"mails", "audit"}, "order.created")
    failed = event_status.show(redis_conn, event_id)
    assert failed.status == "failed"
    assert [name.rsplit(".", 1)[-1] for name in failed.handlers_failed] == ["audit", "mails"]
    assert [name.rsplit(".", 1)[-1] for name in failed.handlers_done] == ["books"]
    assert cli.main(["events", "show", event_id]) == 0
    assert f"failed last:   {', '.join(failed.handlers_failed)}\n" in capsys.readouterr().out
    recovery.retry(redis_conn, fail_fast, event_id)
    run_worker(redis_conn, fail_fast)
    done = event_status.show(redis_conn, event_id)
    assert (done.status, done.handlers_failed) == ("processed", ())
    assert done.received_at == failed.received_at  # the requeue keeps the receipt time


def test_failed_matching_by_type_handler_and_time(handlers, fail_fast, redis_conn):
    mails = fail(redis_conn, fail_fast, handlers, {"mails"}, "order.created", "price.updated")
    for event_id in mails:  # received an hour ago, as their jobs' stamps now say
        redis_conn.hset(Job.key_for(event_id), "created_at", utcformat(now() - timedelta(hours=1)))
    middle = time.time() - 1800
    books = fail(redis_conn, fail_fast, handlers, {"books"}, "order.created", "order.cancelled")
    audit = fail(redis_conn, fail_fast, handlers, {"audit"}, "inventory.updated")
    fail(redis_conn, fail_fast, handlers, set(), "order.created")  # processed: never listed

    def ids(**criteria):
        return sorted(
            i.id for i in event_filters.failed_matching(redis_conn, EventFilter(**criteria))
        )

    assert ids() == sorted(mails + books + audit)
    assert ids(event_type="order.*") == sorted([mails[0], *books])
    assert ids(event_type="order.cancelled") == [books[1]]
    assert ids(handler="mails") == sorted(mails)
    assert ids(handler="books", event_type="order.created") == [books[0]]
    assert ids(since=middle) == sorted(books + audit)
    assert ids(until=middle) == sorted(mails)
    assert ids(since=middle, handler="mails") == []


def test_failed_matching_reads_the_registry_in_batches(
    handlers, fail_fast, redis_conn, monkeypatch
):
    monkeypatch.setattr(event_filters, "FETCH_BATCH", 3)
    failed = fail(redis_conn, fail_fast, handlers, {"audit"}, *["price.updated"] * 7)
    redis_conn.delete(f"rq:job:{failed[4]}")  # gone between the registry read and the fetch
    found = [i.id for i in event_filters.failed_matching(redis_conn)]
    assert sorted(found) == sorted(failed[:4] + failed[5:])


def test_failed_retry_by_filter_with_dry_run_and_progress(
    handlers, fail_fast, redis_conn, cli_env, capsys, monkeypatch
):
    mails = fail(redis_conn, fail_fast, handlers, {"mails"}, "order.created", "price.updated")
    books = fail(redis_conn, fail_fast, handlers, {"books"}, "order.refunded")

    assert cli.main(["failed", "retry", "--type", "order.*", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "would requeue 2 event(s):"
    assert sorted(out[1:]) == sorted([mails[0], books[0]])
    assert sorted(event_status.failed_ids(redis_conn)) == sorted(mails + books)  # untouched

    assert cli.main(["failed", "list", "--handler", "mails"]) == 0
    listed = capsys.readouterr().out
    assert all(i in listed for i in mails) and books[0] not in listed

    assert cli.main(["failed", "retry", books[0], "--type", "order.*"]) == 2
    assert "not both" in capsys.readouterr().err
    assert cli.main(["failed", "retry", "--handler", "books", "--until", "2000-01-01"]) == 0
    assert "no failed events matching handler books, until 2000-01-01 00:00:00Z" in (
        capsys.readouterr().out
    )

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    monkeypatch.setattr(cli.failed, "PROGRESS_FROM", 2)
    assert cli.main(["failed", "retry", "--handler", "mails", "--since", "1h"]) == 0
    assert sorted(capsys.readouterr().out.split()[1::4]) == sorted(mails)
    assert terminal.getvalue().endswith("] 2/2\n")
    assert list(event_status.failed_ids(redis_conn)) == books
    run_worker(redis_conn, fail_fast)
    assert all(event_status.show(redis_conn, i).status == "processed" for i in mails)
    assert cli.main(["failed", "retry", "--type", "price.*"]) == 0
    assert capsys.readouterr().out.strip() == "no failed events matching type price.*"


def test_bad_filter_options_are_refused_by_the_parser(cli_env, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["failed", "retry", "--since", "last tuesday"])
    assert exit_info.value.code == 2
    assert "time ago (90s, 15m, 2h, 3d)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["events", "export", "--type", "order*"])
    assert "bad event type pattern" in capsys.readouterr().err


def test_export_by_handler_type_and_time(handlers, fail_fast, redis_conn, cli_env, capsys):
    settings = dataclasses.replace(fail_fast, capture_max_events=100)
    client = create_app(settings, connection=redis_conn).test_client()

    def deliver(*types):
        events = [make_event(t) for t in types]
        assert all(signed_post(client, e).status_code == 202 for e in events)
        return [e["id"] for e in events]

    handlers.add("mails")
    early = deliver("order.created", "price.updated")
    run_worker(redis_conn, settings)
    handlers.clear()
    backdate_archive(redis_conn, 3600)  # those were received an hour ago
    middle = time.time() - 1800
    late = deliver("order.created", "order.cancelled")
    run_worker(redis_conn, settings)

    def exported(event_filter, limit=None):
        out = io.BytesIO()
        count = event_filters.export_matching(redis_conn, out, event_filter, limit)
        ids = [json.loads(line)["id"] for line in out.getvalue().splitlines()]
        assert count == len(ids)
        return ids

    assert exported(EventFilter()) == early + late
    assert exported(EventFilter(handler="mails")) == early
    assert exported(EventFilter(handler="books")) == []
    assert exported(EventFilter(until=middle)) == early
    assert exported(EventFilter(since=middle, event_type="order.*")) == late
    assert exported(EventFilter(event_type="order.*"), limit=1) == [late[1]]
    assert exported(EventFilter(handler="mails", event_type="price.*"), limit=5) == [early[1]]
    by_handler = event_filters.captured_matching(redis_conn, EventFilter(handler="mails"))
    assert [c.event_id for c in by_handler] == early

    assert cli.main(["events", "export", "--handler", "mails", "--type", "order.*"]) == 0
    result = capsys.readouterr()
    assert [json.loads(line)["id"] for line in result.out.splitlines()] == [early[0]]
    assert "exported 1 event(s)" in result.err
    assert cli.main(["events", "export", "--since", "2h", "--until", str(middle)]) == 0
    assert [json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()] == early
