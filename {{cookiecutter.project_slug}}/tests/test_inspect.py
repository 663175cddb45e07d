"""`events list|show` and `failed list|retry` on a real private Redis, with real worker bursts."""

import dataclasses

import pytest
from processes import PACKAGE
from rq.registry import FailedJobRegistry

from {{ cookiecutter.package_name }} import cli, event_status, recovery
from {{ cookiecutter.package_name }}.config import ConfigError
from {{ cookiecutter.package_name }}.events import QUEUES
from {{ cookiecutter.package_name }}.intake import Intake
from {{ cookiecutter.package_name }}.routing import routes
from {{ cookiecutter.package_name }}.testing import make_event, run_worker


@pytest.fixture
def handlers():
    """Two handlers for orders: `books` always succeeds, `mails` fails while `broken` is set.
    Returns the run log and the switch."""
    routes.clear_handlers()  # `testing._handlers_under_test` puts them back after the test
    runs: list[tuple[str, str]] = []
    state = {"broken": False}

    def books(event):
        runs.append(("books", event.id))

    def mails(event):
        runs.append(("mails", event.id))
        if state["broken"]:
            raise ConnectionRefusedError("mail server down")

    routes.on("order.*")(books)
    routes.on("order.*")(mails)
    return runs, state


@pytest.fixture
def cli_env(redis_url, monkeypatch, tmp_path):
    """Run commands in-process against the private Redis, away from any `.env`."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("TW_RETRY_MAX", "3")
    monkeypatch.setenv("TW_RETRY_BASE_SECONDS", "0")


def submit(redis_conn, settings, *types):
    intake = Intake(redis_conn, settings)
    events = [make_event(t) for t in types]
    for event in events:
        assert intake.submit(event)
    return events


def test_queued_then_processed(handlers, settings, redis_conn):
    [event] = submit(redis_conn, settings, "order.created")
    info = event_status.show(redis_conn, event["id"])
    assert (info.status, info.attempts, info.seen, info.queue) == ("queued", 0, True, "orders")
    assert info.type == "order.created" and info.envelope == event
    run_worker(redis_conn, settings)
    info = event_status.show(redis_conn, event["id"])
    assert (info.status, info.attempts, info.last_error) == ("processed", 1, "")
    assert [name.rsplit(".", 1)[-1] for name in info.handlers_done] == ["books", "mails"]
    assert info.ended_at >= info.enqueued_at


def test_failed_after_every_retry_with_attempts_and_last_error(handlers, settings, redis_conn):
    runs, state = handlers
    state["broken"] = True
    [event] = submit(redis_conn, settings, "order.confirmed")
    run_worker(redis_conn, settings)
    info = event_status.show(redis_conn, event["id"])
    assert info.status == "failed"
    assert info.attempts == settings.retry_max + 1 == runs.count(("mails", event["id"]))
    assert info.retries_left == 0
    assert "mail server down" in info.last_error
    assert "HandlerFailed" in info.error_summary
    assert [name.rsplit(".", 1)[-1] for name in info.handlers_done] == ["books"]
    assert list(event_status.failed_ids(redis_conn)) == [event["id"]]


def test_an_event_waiting_for_a_retry_shows_why(handlers, settings, redis_conn):
    runs, state = handlers
    state["broken"] = True
    settings = dataclasses.replace(settings, retry_base_seconds=60)
    [event] = submit(redis_conn, settings, "order.created")
    run_worker(redis_conn, settings)
    info = event_status.show(redis_conn, event["id"])
    assert (info.status, info.attempts, info.retries_left) == (
        "scheduled",
        1,
        settings.retry_max - 1,
    )
    assert runs.count(("mails", event["id"])) == 1  # its retry is a minute away
    assert "mail server down" in info.last_error
    assert "HandlerFailed" in info.error_summary


def test_retry_keeps_the_handlers_that_succeeded(handlers, settings, redis_conn):
    runs, state = handlers
    state["broken"] = True
    [event] = submit(redis_conn, settings, "order.created")
    run_worker(redis_conn, settings)
    assert runs.count(("books", event["id"])) == 1
    state["broken"] = False  # the fix is deployed
    job = recovery.retry(redis_conn, settings, event["id"])
    assert job.origin == "orders"
    requeued = event_status.show(redis_conn, event["id"])
    assert requeued.status == "queued" and requeued.retries_left == settings.retry_max
    run_worker(redis_conn, settings)
    assert runs.count(("books", event["id"])) == 1  # not run again
    assert runs.count(("mails", event["id"])) == settings.retry_max + 2
    info = event_status.show(redis_conn, event["id"])
    assert (info.status, info.attempts) == ("processed", settings.retry_max + 2)
    assert list(event_status.failed_ids(redis_conn)) == []


def test_a_retried_event_that_fails_again_gets_its_retries_again(handlers, settings, redis_conn):
    runs, state = handlers
    state["broken"] = True
    [event] = submit(redis_conn, settings, "order.created")
    run_worker(redis_conn, settings)
    recovery.retry(redis_conn, settings, event["id"])
    run_worker(redis_conn, settings)
    info = event_status.show(redis_conn, event["id"])
    assert info.status == "failed"
    assert info.attempts == 2 * (settings.retry_max + 1) == runs.count(("mails", event["id"]))


def test_a_configuration_error_fails_at_once_and_retry_runs_it_after_the_fix(
    settings, redis_conn, sandbox, monkeypatch
):
    from {{ cookiecutter.package_name }}.api import api

    routes.clear_handlers()
    runs = []

    @routes.on("order.created")
    def confirm(event):
        runs.append(event.id)
        api.health()

    monkeypatch.delenv("TW_API_CLIENT_ID", raising=False)  # forgotten in the deploy
    monkeypatch.setenv("TW_API_BASE_URL", sandbox.url)
    monkeypatch.setenv("REDIS_URL", settings.redis_url)
    api.reset()
    settings = dataclasses.replace(settings, retry_base_seconds=60)
    [event] = submit(redis_conn, settings, "order.created")
    run_worker(redis_conn, settings)
    info = event_status.show(redis_conn, event["id"])
    assert (info.status, info.attempts, runs) == ("failed", 1, [event["id"]])  # no retries
    assert "TW_API_CLIENT_ID is not set" in info.last_error
    monkeypatch.setenv("TW_API_CLIENT_ID", sandbox.client_id)  # the fix
    monkeypatch.setenv("TW_API_CLIENT_SECRET", sandbox.client_secret)
    api.reset()
    recovery.retry(redis_conn, settings, event["id"])
    run_worker(redis_conn, settings)
    assert event_status.show(redis_conn, event["id"]).status == "processed"
    assert sandbox.stats()["byStatus"] == {"200": 2}  # a token, the health check
    api.reset()


def test_other_failures_beside_a_configuration_error_keep_their_retries(
    settings, redis_conn, monkeypatch
):
    routes.clear_handlers()

    @routes.on("order.created")
    def confirm(event):
        raise ConfigError("TW_SOMETHING is not set")

    @routes.on("order.created")
    def mail(event):
        raise ConnectionRefusedError("mail server down")

    settings = dataclasses.replace(settings, retry_base_seconds=60)
    [event] = submit(redis_conn, settings, "order.created")
    run_worker(redis_conn, settings)
    info = event_status.show(redis_conn, event["id"])
    assert (info.status, info.retries_left) == ("scheduled", settings.retry_max - 1)


def test_retry_refuses_events_that_are_not_failed(handlers, settings, redis_conn):
    [event] = submit(redis_conn, settings, "order.created")
    with pytest.raises(recovery.NotFailed, match="queued"):
        recovery.retry(redis_conn, settings, event["id"])
    with pytest.raises(recovery.NotFailed, match="no job"):
        recovery.retry(redis_conn, settings, "evt_unknown")
    assert event_status.show(redis_conn, event["id"]).status == "queued"


def test_list_is_newest_first_bounded_and_filtered(handlers, settings, redis_conn):
    done = submit(redis_conn, settings, *["order.created"] * 4, "price.updated")
    run_worker(redis_conn, settings)
    waiting = submit(redis_conn, settings, "order.cancelled", "inventory.updated")
    everything = event_status.list_events(redis_conn)
    assert len(everything) == 7
    assert {i.id for i in everything} == {e["id"] for e in done + waiting}
    stamps = [i.last_activity for i in everything]
    assert stamps == sorted(stamps, reverse=True)
    queued = event_status.list_events(redis_conn, status="queued")
    assert [i.id for i in queued] == [e["id"] for e in reversed(waiting)]
    processed = event_status.list_events(redis_conn, status="processed", limit=3)
    assert len(processed) == 3 and all(i.status == "processed" for i in processed)
    assert event_status.list_events(redis_conn, status="failed") == []


def test_unknown_and_expired_events(handlers, settings, redis_conn):
    assert event_status.show(redis_conn, "evt_never_seen") is None
    [event] = submit(redis_conn, settings, "order.created")
    run_worker(redis_conn, settings)
    redis_conn.delete(f"rq:job:{event['id']}")  # RQ drops a finished job after its result TTL
    info = event_status.show(redis_conn, event["id"], settings.dedupe_window_seconds)
    assert (info.status, info.seen) == ("expired", True)


def failed_registry(redis_conn, scores):
    """The first queue's failed registry holding `evt_0`, `evt_1`, ... scored `scores`
    (RQ scores to the second, so ties are common); returns its key and the ids in order."""
    key = FailedJobRegistry(QUEUES[0], connection=redis_conn).key
    ids = [f"evt_{n}" for n in range(len(scores))]
    redis_conn.zadd(key, dict(zip(ids, scores, strict=True)))
    return key, ids


def test_failed_ids_are_read_a_page_at_a_time(redis_conn, monkeypatch):
    monkeypatch.setattr(event_status, "ID_PAGE", 2)
    key, ids = failed_registry(redis_conn, [100, 100, 100, 101, 102])
    reading = event_status.failed_ids(redis_conn, [QUEUES[0]])
    first = next(reading)
    redis_conn.delete(key)  # what was not read yet is gone: only the first page is in hand
    assert [first, *reading] == ids[:2]


@pytest.mark.parametrize("removed", ["none", "each one read", "the last of each page"])
def test_failed_ids_skip_none_when_ids_go_while_reading(redis_conn, monkeypatch, removed):
    """`failed retry` empties the registry as it reads it, and RQ's cleanup drops the
    oldest: a cursor by rank would skip the id that moved into its place."""
    monkeypatch.setattr(event_status, "ID_PAGE", 2)
    key, ids = failed_registry(redis_conn, [100, 100, 100, 100, 100, 101, 102])
    read = []
    for event_id in event_status.failed_ids(redis_conn, [QUEUES[0]]):
        read.append(event_id)
        if removed == "each one read" or (removed != "none" and len(read) % 2 == 0):
            redis_conn.zrem(key, event_id)
    assert read == ids


def test_failed_ids_skip_none_when_one_read_fails_again(redis_conn, monkeypatch):
    """An id retried and failed again while the registry is read moves to a later score:
    what lay between its old place and its new one is still read."""
    monkeypatch.setattr(event_status, "ID_PAGE", 2)
    key, ids = failed_registry(redis_conn, [100, 100, 100, 100, 101, 102])
    read = []
    for event_id in event_status.failed_ids(redis_conn, [QUEUES[0]]):
        read.append(event_id)
        if len(read) == 2:
            redis_conn.zadd(key, {event_id: 200})
    assert read == [*ids, ids[1]]


# --- the commands ----------------------------------------------------------------------


def test_events_list_and_show_commands(handlers, settings, redis_conn, cli_env, capsys):
    _, state = handlers
    ok, bad = submit(redis_conn, settings, "order.created", "order.refunded")
    state["broken"] = True
    redis_conn.lrem("rq:queue:orders", 0, ok["id"])  # run `bad` alone, `ok` stays queued
    run_worker(redis_conn, settings)
    redis_conn.rpush("rq:queue:orders", ok["id"])
    assert cli.main(["events", "list"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:5] == ["id", "type", "status", "tries", "last"]
    rows = {line.split()[0]: line.split() for line in table[1:]}
    assert rows[ok["id"]][1:4] == ["order.created", "queued", "0"]
    assert rows[bad["id"]][1:4] == ["order.refunded", "failed", "4"]
    assert "HandlerFailed" in " ".join(rows[bad["id"]])
    # The error is a column of its own, in full (a traceback's last line).
    bad_line = next(line for line in table if line.startswith(bad["id"]))
    error = bad_line[table[0].index("error") :]
    assert error == event_status.show(redis_conn, bad["id"]).error_summary
    assert error.startswith(f"{PACKAGE}.jobs.HandlerFailed: ") and "mail server down" in error

    assert cli.main(["events", "list", "--status", "queued"]) == 0
    assert bad["id"] not in capsys.readouterr().out

    assert cli.main(["events", "show", bad["id"], "--body"]) == 0
    out = capsys.readouterr().out
    assert "status:        failed (queue orders)" in out
    assert "attempts:      4" in out
    assert "mail server down" in out
    assert f'"id": "{bad["id"]}"' in out

    assert cli.main(["events", "show", "evt_nope"]) == 1
    assert "no trace of event evt_nope" in capsys.readouterr().err


def test_failed_list_and_retry_commands(handlers, settings, redis_conn, cli_env, capsys):
    runs, state = handlers
    state["broken"] = True
    events = submit(redis_conn, settings, "order.created", "order.confirmed", "order.fulfilled")
    run_worker(redis_conn, settings)
    assert cli.main(["failed", "list"]) == 0
    listed = capsys.readouterr().out
    assert all(e["id"] in listed for e in events)

    state["broken"] = False
    assert cli.main(["failed", "retry", events[0]["id"]]) == 0
    assert f"requeued {events[0]['id']} on orders" in capsys.readouterr().out
    assert cli.main(["failed", "retry", events[0]["id"]]) == 1  # queued now, not failed
    assert "is not failed" in capsys.readouterr().err
    # A mistyped id (one RQ could never have written) is named, and the others still go.
    assert cli.main(["failed", "retry", "evt.1", "bad id:*", events[1]["id"]]) == 1
    out, err = capsys.readouterr()
    assert "evt.1" in err and "bad id:*" in err and "Traceback" not in err
    assert f"requeued {events[1]['id']} on orders" in out
    assert cli.main(["events", "show", "evt.1"]) == 1
    assert "no trace of event evt.1" in capsys.readouterr().err
    assert cli.main(["failed", "retry", "--all"]) == 0
    assert capsys.readouterr().out.count("requeued ") == 1
    assert cli.main(["failed", "retry"]) == 2  # neither ids nor --all

    run_worker(redis_conn, settings)
    assert all(event_status.show(redis_conn, e["id"]).status == "processed" for e in events)
    assert all(runs.count(("books", e["id"])) == 1 for e in events)
    assert cli.main(["failed", "list"]) == 0
    assert capsys.readouterr().out.strip() == "no failed events"
