"""Reconciliation: the order changes whose webhooks never arrived are found through the
API (the sandbox, over real HTTP) and delivered to the handlers once, through the intake.

The webhooks go to a port where nothing listens, and the sandbox's sender gives up on
each after a short retry window: the receiver was down for longer than the sender
retries. The handlers (`reconcile_handlers`) count each order transition they ran for.
"""

import dataclasses
import logging
import time

import pytest
import reconcile_handlers as seen
from clocks import FakeClock
from processes import cli, project_env
from test_metrics import scrape
from test_sandbox import connect

from {{ cookiecutter.package_name }} import ledger, reconcile
from {{ cookiecutter.package_name }}.cli import main as run_command
from {{ cookiecutter.package_name }}.config import ConfigError, settings_from_env
from {{ cookiecutter.package_name }}.console import app as console_app
from {{ cookiecutter.package_name }}.dev.embedded_redis import free_port
from {{ cookiecutter.package_name }}.events import Event
from {{ cookiecutter.package_name }}.ordering import is_newest

# What a pass delivers for an order the receiver never heard of, by its status at the API
# (docs/reconcile.md): the statuses every path to it goes through.
DELIVERED = {
    "created": ["created"],
    "confirmed": ["created", "confirmed"],
    "fulfilled": ["created", "confirmed", "fulfilled"],
    "cancelled": ["created", "cancelled"],
    "refunded": ["created", "refunded"],
}
# Actions taken on the orders placed by `place_orders`, in turn.
JOURNEYS = [
    (), ("confirm",), ("confirm", "fulfill"), ("cancel",), ("confirm", "cancel"),
    ("confirm", "fulfill", "refund"),
]  # fmt: skip


@pytest.fixture
def handler_modules():
    return ("reconcile_handlers",)


@pytest.fixture
def records(redis_url, monkeypatch):
    """The handlers' Redis (they read REDIS_URL, as in a worker process)."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    seen._redis.cache_clear()


def unreachable() -> str:
    return f"http://127.0.0.1:{free_port()}/webhooks"


def start_lost(start_sandbox, **options):
    """A sandbox whose every webhook is lost: its receiver is down beyond the retry window."""
    return start_sandbox(
        webhook_url=unreachable(), webhook_max_attempts=1000, webhook_retry_window=0.1,
        **options,
    )  # fmt: skip


def reconciling(settings, api, **changes):
    """`settings` with the API client pointed at the sandbox, no settle delay."""
    return dataclasses.replace(
        settings, api_base_url=api.url, api_client_id=api.client_id,
        api_client_secret=api.client_secret, reconcile_settle_seconds=0, **changes,
    )  # fmt: skip


def place_orders(api, count: int, client=None, pause: float = 0) -> dict[str, str]:
    """Place `count` orders (`pause` s apart) and move each along one of the `JOURNEYS`;
    order id -> its status. `client` defaults to one of the project's own client id."""
    client = client or connect(api)
    finals = {}
    for number in range(count):
        time.sleep(pause)
        order = client.post(
            "/v1/orders", json={"items": [{"listingId": "lst_7Qm2Floor", "quantity": 1}]}
        )
        order = order.json()
        for action in JOURNEYS[number % len(JOURNEYS)]:
            order = client.post(f"/v1/orders/{order['id']}/{action}").json()
        finals[order["id"]] = order["status"]
    assert api.webhooks.wait_until_idle(timeout=30)
    return finals


def place_in_store(api, count: int) -> dict[str, str]:
    """As `place_orders`, straight in the sandbox's store: no request spends its rate limit."""
    finals = {}
    for number in range(count):
        order = api.store.create_order(api.client_id, [("lst_7Qm2Floor", 1)])
        for action in JOURNEYS[number % len(JOURNEYS)]:
            order = api.store.transition(api.client_id, order["id"], action)
        finals[order["id"]] = order["status"]
    assert api.webhooks.wait_until_idle(timeout=30)
    return finals


def expected_runs(finals: dict[str, str]) -> dict[str, int]:
    return {f"{o}:{status}": 1 for o, final in finals.items() for status in DELIVERED[final]}


def test_after_an_outage_one_pass_delivers_every_missed_transition_once(
    start_sandbox, settings, redis_conn, run_worker, records
):
    api = start_lost(start_sandbox)
    config = reconciling(settings, api)
    assert reconcile.run_once(config).outcome == "baseline"  # the receiver ran before
    finals = place_orders(api, 12)
    counts = api.webhooks.counts()
    assert counts["delivered"] == 0 and counts["failed"] == 30  # 12 created, 18 changes
    report = reconcile.run_once(config)
    assert (report.outcome, report.checked, report.api_calls) == ("ok", 12, 1)
    run_worker()
    assert {f"{o}:{s}" for o, s in finals.items()} <= seen.saw(redis_conn)  # final states
    assert seen.runs(redis_conn) == expected_runs(finals)  # each transition once
    assert seen.synthetic(redis_conn) == set(expected_runs(finals))
    entries = ledger.read(redis_conn, finals)
    assert {order: entry.status for order, entry in entries.items()} == finals
    again = reconcile.run_once(config)
    assert (again.outcome, again.checked, again.events) == ("ok", 12, [])
    run_worker()
    assert seen.runs(redis_conn) == expected_runs(finals)


def test_late_real_events_run_no_handler_twice(
    start_sandbox, settings, redis_conn, run_worker, records, client, signed_post,
    event_status, caplog, capsys,
):  # fmt: skip
    api = start_lost(start_sandbox)
    config = reconciling(settings, api)
    reconcile.run_once(config)
    finals = place_orders(api, 6)
    reconcile.run_once(config)
    run_worker()
    before = seen.runs(redis_conn)
    # The receiver is back, and the API's own events arrive after all (as a resend would).
    real = [result.delivery for result in api.webhooks.results]
    for delivery in real:
        assert signed_post(client, delivery.body).status_code == 202
    with caplog.at_level(logging.INFO):
        run_worker()
    after = seen.runs(redis_conn)
    assert before == expected_runs(finals)
    assert set(after.values()) == {1}  # no handler ran twice for one transition
    assert {transition: after[transition] for transition in before} == before
    for delivery in real:
        envelope = delivery.envelope
        transition = envelope["data"]["object"]["id"], envelope["type"].partition(".")[2]
        info = event_status(envelope["id"])
        assert info.status == "processed"
        if transition[1] in DELIVERED[finals[transition[0]]]:
            assert info.duplicate_of == "rec_{}_{}".format(*transition)
            assert info.handlers_done == ()
            assert f"{envelope['id']}: duplicate of rec_" in caplog.text
        else:  # e.g. `confirmed` of an order since cancelled: never delivered, runs now
            assert info.duplicate_of == ""
            assert "{}:{}".format(*transition) in set(after) - set(before)
    console = console_app.create_app(settings, redis_conn).test_client()
    page = console.get(f"/events/{real[0].envelope['id']}").get_data(as_text=True)
    assert "duplicate of" in page and "no handler ran" in page  # the console says so too
    assert run_command(["events", "show", real[0].envelope["id"]]) == 0  # and `events show`
    assert "duplicate of:  rec_" in capsys.readouterr().out


def test_a_real_event_and_its_synthetic_twin_waiting_together_run_once(
    start_sandbox, settings, redis_conn, run_worker, records, client, signed_post
):
    api = start_lost(start_sandbox)
    config = reconciling(settings, api)
    reconcile.run_once(config)
    finals = place_orders(api, 6)
    real = [result.delivery for result in api.webhooks.results]
    half = len(real) // 2
    for delivery in real[:half]:  # these arrive before the pass, and still wait
        signed_post(client, delivery.body)
    report = reconcile.run_once(config)  # the ledger has not seen them: twins are fed
    for delivery in real[half:]:  # these arrive after it
        signed_post(client, delivery.body)
    run_worker()
    runs = seen.runs(redis_conn)
    assert set(runs.values()) == {1}
    assert set(expected_runs(finals)) <= set(runs)
    assert report.events  # there were twins, and each transition still ran once


def test_two_real_events_of_one_transition_both_run(
    settings, redis_conn, run_worker, records, client, signed_post, make_event
):
    """Between the API's own events the event id is the dedupe key, as before the ledger:
    samples replayed with fresh ids all reach the handlers."""
    order = {"id": "ord_sample", "status": "created", "updatedAt": 100}
    for _ in range(2):
        signed_post(client, make_event("order.created", order))
    run_worker()
    assert seen.runs(redis_conn) == {"ord_sample:created": 2}


def test_the_watermark_survives_a_restart_and_since_walks_back(
    start_sandbox, settings, redis_conn, redis_url, records
):
    api = start_lost(start_sandbox)
    config = reconciling(settings, api, reconcile_overlap_seconds=0)
    # The sandbox's orders and this process's pass are dated a minute in the past, so that
    # the command's pass (a process on the real clock) finds them all settled.
    api.store.clock = clock = FakeClock(int(time.time()) - 60)
    [old] = place_orders(api, 1)
    clock.advance(1)  # the watermark lands in a later second than the old order's change
    assert reconcile.run_once(config, clock=clock).outcome == "baseline"
    mark = reconcile.read_watermark(redis_conn)
    assert mark == (clock.now, "")
    clock.advance(1)
    [new] = place_orders(api, 1)
    # A fresh process, the command, goes on from the stored watermark.
    env = project_env(
        redis_url, TW_API_BASE_URL=api.url, TW_API_CLIENT_ID=api.client_id,
        TW_API_CLIENT_SECRET=api.client_secret, TW_RECONCILE_OVERLAP_SECONDS="0",
        TW_RECONCILE_SETTLE_SECONDS="0",
    )  # fmt: skip
    dry = cli("reconcile", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert f"would feed rec_{new}_created" in dry.stdout and old not in dry.stdout
    assert "1 order(s) checked in 1 API call(s)" in dry.stdout
    assert reconcile.read_watermark(redis_conn) == mark  # a dry run moves nothing
    assert redis_conn.llen("rq:queue:orders") == 0
    walked = cli("reconcile", "--since", "1h", env=env)
    assert walked.returncode == 0, walked.stderr
    assert f"fed rec_{old}_created" in walked.stdout and f"fed rec_{new}_created" in walked.stdout
    assert reconcile.read_watermark(redis_conn) > mark
    assert redis_conn.llen("rq:queue:orders") == 2
    refused = cli("reconcile", "--since", "yesterday", env=env)
    assert refused.returncode == 2 and "want a duration" in refused.stderr


def test_a_dry_first_pass_says_it_leaves_the_watermark_unset(
    start_sandbox, settings, redis_conn, records
):
    config = reconciling(settings, start_lost(start_sandbox))
    dry = reconcile.run_once(config, dry_run=True)
    assert dry.outcome == "baseline" and "a dry run leaves it" in dry.summary()
    assert reconcile.read_watermark(redis_conn) is None
    real = reconcile.run_once(config)
    assert "the watermark is set" in real.summary()
    assert reconcile.read_watermark(redis_conn) is not None


def test_without_updated_since_the_list_is_walked_newest_first_down_to_the_watermark(
    start_sandbox, settings, redis_conn, run_worker, records
):
    api = start_lost(start_sandbox)
    config = reconciling(settings, api, reconcile_updated_since=False, reconcile_overlap_seconds=0)
    api.store.clock = clock = FakeClock(int(time.time()))
    before = place_orders(api, 2)
    clock.advance(1)
    reconcile.run_once(config, clock=clock)  # the watermark: after those two
    clock.advance(1)
    finals = place_orders(api, 6)
    report = reconcile.run_once(config, clock=clock)
    assert (report.mode, report.outcome, report.checked) == ("newest-first", "ok", 6)
    run_worker()
    assert seen.runs(redis_conn) == expected_runs(finals)  # not the two before the watermark
    assert not set(seen.runs(redis_conn)) & set(expected_runs(before))
    assert reconcile.run_once(config, clock=clock).events == []


def test_a_pass_cut_short_is_resumed_by_the_next(
    start_sandbox, settings, redis_conn, run_worker, records
):
    api = start_lost(start_sandbox)
    reconcile.run_once(reconciling(settings, api))
    finals = place_orders(api, 6)  # 12 transitions to deliver
    full = reconciling(settings, api, max_queue_depth=8)
    cut = reconcile.run_once(full)
    assert cut.outcome == "error" and "QueueFull" in cut.error and len(cut.events) == 8
    run_worker()
    rest = reconcile.run_once(full)
    assert rest.outcome == "ok" and len(rest.events) == 4
    run_worker()
    assert seen.runs(redis_conn) == expected_runs(finals)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("TW_RECONCILE_UPDATED_SINCE", "maybe", "must be true or false"),
        ("TW_RECONCILE_INTERVAL_SECONDS", "-5", "at least 0"),
        ("TW_LEDGER_RETENTION_SECONDS", "60", "at least 3600"),
    ],
)
def test_a_wrong_reconcile_setting_is_named(name, value, message):
    with pytest.raises(ConfigError, match=f"{name} {message}|{name} must be {message}"):
        settings_from_env({name: value})


def test_reconcile_settings_are_read():
    settings = settings_from_env({
        "TW_RECONCILE_INTERVAL_SECONDS": "60", "TW_RECONCILE_UPDATED_SINCE": "false",
        "TW_RECONCILE_SETTLE_SECONDS": "5", "TW_RECONCILE_OVERLAP_SECONDS": "900",
    })  # fmt: skip
    assert settings.reconcile_interval_seconds == 60
    assert not settings.reconcile_updated_since
    assert (settings.reconcile_settle_seconds, settings.reconcile_overlap_seconds) == (5, 900)


def test_what_a_pass_delivers_from_the_ledger():
    entry = ledger.Entry
    order = {"id": "ord_1", "status": "fulfilled", "createdAt": 100, "updatedAt": 200}
    assert reconcile.missing(None, order, horizon=0) == ["created", "confirmed", "fulfilled"]
    assert reconcile.missing(None, order, horizon=150) == ["fulfilled"]  # ledger forgot it
    confirmed = entry("confirmed", 150, {"created": "e1", "confirmed": "e2"})
    assert reconcile.missing(confirmed, order, 0) == ["fulfilled"]
    # A lost `confirmed` behind a `fulfilled` that arrived is not gone back for.
    assert (
        reconcile.missing(entry("fulfilled", 200, {"created": "e1", "fulfilled": "e3"}), order, 0)
        == []
    )
    cancelled = {**order, "status": "cancelled"}
    assert reconcile.missing(confirmed, cancelled, 0) == ["cancelled"]
    assert reconcile.missing(None, cancelled, 0) == ["created", "cancelled"]
    refunded = {**order, "status": "refunded"}
    assert reconcile.missing(entry("cancelled", 200, {"cancelled": "e"}), refunded, 0) == [
        "refunded"
    ]


def test_synthetic_events_keep_the_path_order_for_newest_only(redis_conn):
    order = {"id": "ord_2", "status": "fulfilled", "createdAt": 500, "updatedAt": 500}
    events = reconcile.events_for(order, ["created", "confirmed", "fulfilled"])
    assert [e["id"] for e in events] == [
        "rec_ord_2_created",
        "rec_ord_2_confirmed",
        "rec_ord_2_fulfilled",
    ]
    assert [e["created"] for e in events] == [498, 499, 500]
    parsed = [Event.from_dict(e) for e in events]
    assert all(event.synthetic for event in parsed)
    assert all(is_newest(event, "ord_2", connection=redis_conn, ttl=60) for event in parsed)
    late_real = Event.from_dict({**events[1], "id": "evt_late", "synthetic": False})
    assert not late_real.synthetic
    assert not is_newest(late_real, "ord_2", connection=redis_conn, ttl=60)
    forged = Event.from_dict({**events[1], "id": "evt_forged"})  # `synthetic` without rec_
    assert not forged.synthetic


def test_operators_see_the_passes_in_metrics_and_console(
    start_sandbox, settings, redis_conn, records, client
):
    api = start_lost(start_sandbox)
    config = reconciling(settings, api)
    reconcile.run_once(config)
    place_orders(api, 3)  # created, confirmed, fulfilled: 6 transitions
    reconcile.run_once(config)
    scraped = scrape(client)
    assert scraped[("tw_reconcile_runs_total", (("outcome", "ok"),))] == 1
    assert scraped[("tw_reconcile_runs_total", (("outcome", "baseline"),))] == 1
    assert scraped[("tw_reconcile_events_total", (("type", "order.created"),))] == 3
    assert scraped[("tw_reconcile_events_total", (("type", "order.confirmed"),))] == 2
    assert scraped[("tw_reconcile_events_total", (("type", "order.fulfilled"),))] == 1
    assert 0 <= scraped[("tw_reconcile_watermark_age_seconds", ())] < 60
    page = (
        console_app.create_app(settings, redis_conn).test_client().get("/").get_data(as_text=True)
    )
    assert "found 6 change(s) whose webhook never arrived" in page
    assert "<code>order.created</code> \u00d73" in page


def test_one_pass_at_a_time(settings, redis_conn):
    first, second = reconcile.Lock(redis_conn), reconcile.Lock(redis_conn)
    with first.held():
        with pytest.raises(reconcile.Busy, match=first.token), second.held():
            pass
        second.release()  # not its lock: nothing happens
        assert first.renew()
    assert second.acquire()


def test_the_periodic_pass_is_off_without_credentials(settings, caplog):
    on = dataclasses.replace(settings, reconcile_interval_seconds=5)
    with caplog.at_level(logging.WARNING):
        assert reconcile.start_periodic(on) is None
    assert "reconciliation off: TW_API_CLIENT_ID is not set" in caplog.text
