"""The events console with Flask's test client, on real Redis data: events submitted by the
receiver, run by worker bursts (one handler that fails), archived by capture."""

import dataclasses
import http.client
import json
import re
import sys
from html import unescape

import itsdangerous
import pytest
import redis
from processes import PACKAGE, project_env, running, wait_until_up
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq.serializers import JSONSerializer

from {{ cookiecutter.package_name }} import capture, cli, event_status, tallies
from {{ cookiecutter.package_name }}.app import create_app as create_receiver
from {{ cookiecutter.package_name }}.console import app as console_app
from {{ cookiecutter.package_name }}.console import pages as console_pages
from {{ cookiecutter.package_name }}.console.security import COOKIE, SESSION_SECONDS, check_binding
from {{ cookiecutter.package_name }}.dev.embedded_redis import free_port
from {{ cookiecutter.package_name }}.intake import open_queues
from {{ cookiecutter.package_name }}.routing import routes
from {{ cookiecutter.package_name }}.testing import TEST_SECRET, make_event, run_worker, signed_headers
from {{ cookiecutter.package_name }}.worker import Worker, requeue_abandoned

TOKEN = "console-token-0123456789"
HOSTILE = '<script>alert("x")</script> \' " & ünïcødé ☃ ' + "z" * 5000


@pytest.fixture
def state():
    """`books` succeeds for orders; `mails` fails for orders while `broken` is set."""
    routes.clear_handlers()  # the plugin's autouse fixture puts the project's back
    switch = {"broken": True}

    def books(event):
        pass

    def mails(event):
        if switch["broken"]:
            raise ConnectionRefusedError("mail server down")

    routes.on("order.*")(books)
    routes.on("order.*")(mails)
    return switch


@pytest.fixture
def receiver(settings, redis_conn):
    """The real receiver with capture on, to deliver signed events to."""
    settings = dataclasses.replace(settings, capture_max_events=100)
    return create_receiver(settings, connection=redis_conn).test_client()


def make_console(settings, redis_conn, **options):
    return console_app.create_app(settings, redis_conn, **options).test_client()


@pytest.fixture
def console(settings, redis_conn):
    return make_console(settings, redis_conn)


def deliver(receiver, *events, **headers):
    for event in events:
        body = json.dumps(event).encode()
        path = receiver.application.extensions["tw_settings"].webhook_path
        response = receiver.post(path, data=body, headers={**signed_headers(body), **headers})
        assert response.status_code == 202, response.get_data(as_text=True)


def csrf(client, path="/"):
    html = client.get(path).get_data(as_text=True)
    return re.search(r'<meta name="csrf-token" content="([^"]+)">', html).group(1)


def text(response) -> str:
    return response.get_data(as_text=True)


@pytest.fixture
def mixed(state, receiver, settings, redis_conn):
    """One processed price update, one failed order, one still queued order."""
    price, order = make_event("price.updated"), make_event("order.created")
    deliver(receiver, price, order)
    run_worker(redis_conn, settings)
    queued = make_event("order.confirmed")
    deliver(receiver, queued)
    tallies.TALLY.flush()
    return {"processed": price, "failed": order, "queued": queued}


def test_overview_shows_queues_failures_workers_and_the_last_hour(mixed, console):
    response = console.get("/")
    assert response.status_code == 200
    html = text(response)
    cards = re.findall(r'<div class="card[^"]*"><b>(\d+)</b>([^<]*)', html)
    assert ("1", "") in cards  # the failed events card, whose label is a link
    assert ("0", "workers alive") in cards  # the burst worker is gone
    assert ("1", "waiting in orders") in cards
    rows = re.findall(r"<tr><td>(\w+)</td><td class=\"num\">(\d+)</td>", html)
    assert rows == [("orders", "1"), ("prices", "0"), ("other", "0")]
    # Three deliveries were accepted this minute; mails failed every try, books ran once.
    assert "accepted: 3" in html and "rejected: 0" in html
    failures = re.findall(r"<code>[^<]*\.(\w+)</code></td><td class=\"num[^\"]*\">(\d+)</td>", html)
    assert failures == [("mails", "4"), ("books", "0")]
    assert html.count('<rect class="ok"') >= 2 and '<rect class="bad"' in html


def test_the_charts_read_out_only_the_busy_minutes_and_a_quiet_hour_in_one_line(receiver, console):
    """A bar's title is what a text browser or a screen reader reads: not 60 lines of
    "none" for an idle hour."""
    quiet = text(console.get("/"))
    assert "No deliveries in the last hour." in quiet and "No runs in the last hour." in quiet
    assert "<svg" not in quiet and "UTC: none" not in quiet
    deliver(receiver, *[make_event("price.updated") for _ in range(3)])
    tallies.TALLY.flush()
    busy = text(console.get("/"))
    # One title per minute that had deliveries (two if the test straddles a minute).
    titles = re.findall(r"<title>\d\d:\d\d UTC: (\d+) accepted, 0 duplicate, [^<]*</title>", busy)
    assert 1 <= len(titles) <= 2 and sum(map(int, titles)) == 3
    assert busy.count("<title>") == 1 + len(titles)  # the page's own, and those
    assert busy.count("<svg") == 1 and "No runs in the last hour." in busy


def test_events_filter_by_status_type_id_and_time(mixed, console):
    def ids(query):
        response = console.get("/events" + query)
        assert response.status_code == 200, text(response)
        return re.findall(r'href="/events/(evt_\w+)"', text(response))

    everything = ids("")
    assert sorted(everything) == sorted(e["id"] for e in mixed.values())
    assert ids("?status=failed") == [mixed["failed"]["id"]]
    assert ids("?status=processed") == [mixed["processed"]["id"]]
    assert sorted(ids("?type=order.*")) == sorted([mixed["failed"]["id"], mixed["queued"]["id"]])
    assert ids("?type=price.updated&status=queued") == []
    assert ids("?id=" + mixed["queued"]["id"][4:14]) == [mixed["queued"]["id"]]
    assert sorted(ids("?since=2000-01-01T00:00")) == sorted(everything)
    assert sorted(ids("?since=1h")) == sorted(everything)
    assert ids("?until=2000-01-01T00:00") == []
    # The handler that failed, by its short name, as `failed retry --handler` takes it.
    assert ids("?handler=mails") == ids("?status=failed&handler=mails") == [mixed["failed"]["id"]]
    assert ids("?handler=books") == []


def test_events_are_paginated(state, receiver, settings, redis_conn, console, monkeypatch):
    monkeypatch.setattr(console_pages, "PAGE_SIZE", 2)
    deliver(receiver, *[make_event("price.updated") for _ in range(5)])
    seen = []
    path = "/events"
    while path:
        html = text(console.get(path))
        seen += re.findall(r'href="/events/(evt_\w+)"', html)
        more = re.search(r'href="(\?[^"]+)" rel="next"', html)
        path = "/events" + unescape(more.group(1)) if more else ""
    assert len(seen) == len(set(seen)) == 5


def test_bad_filters_are_explained_with_400(console):
    response = console.get("/events?type=ord*er")
    assert response.status_code == 400 and "bad event type pattern" in text(response)
    response = console.get("/events?since=yesterday")
    assert response.status_code == 400 and "since: want unix seconds" in text(response)
    response = console.get("/events?status=lost")
    assert response.status_code == 400 and "status: choose one of" in text(response)


@pytest.mark.parametrize(
    "query",
    [
        "since=99999999999999999999",
        "until=99999999999999999999",
        "since=99999999999999999999d",
        "until=0001-01-01",
        "since=-5",
        "since=1e5",
    ],
)
def test_a_time_filter_out_of_range_is_a_400_not_redis_down(receiver, console, query):
    deliver(receiver, make_event("order.created"))
    for path in ("/captured", "/captured/export.jsonl", "/events", "/failed"):
        response = console.get(f"{path}?{query}")
        assert response.status_code == 400, (path, text(response))
        assert "Redis" not in text(response)
        assert re.search(r"(since|until): .*(out of range|want unix seconds)", text(response))


def test_a_time_filter_at_the_ends_of_the_range_finds_nothing_or_everything(receiver, console):
    event = make_event("order.created")
    deliver(receiver, event)
    assert event["id"] not in text(console.get("/captured?until=0"))
    assert console.get("/captured/export.jsonl?until=0").get_data() == b""
    assert event["id"] in text(console.get("/captured?since=0&until=9999-12-31"))
    assert event["id"] in text(console.get("/events?until=9999-12-31"))


def test_one_event_with_envelope_attempts_request_id_and_headers(mixed, console, redis_conn):
    event = mixed["failed"]
    html = text(console.get(f"/events/{event['id']}"))
    assert unescape(html).count(json.dumps(event, indent=2)) == 1  # pretty-printed envelope
    assert re.search(r'<dt>status</dt><dd><span class="status s-failed">failed</span>', html)
    assert re.search(r"<dt>failed last run</dt><dd><code>[^<]*mails</code></dd>", html)
    # Every run with the failing handler's traceback.
    runs = re.findall(r'<tr><td class="when">([^<]+)</td><td>([a-z ]+)</td>', html)
    assert [outcome for _when, outcome in runs] == ["failed"] * 4
    assert html.count("raise ConnectionRefusedError(&#34;mail server down&#34;)") == 4
    assert html.count("ConnectionRefusedError: mail server down") == 4
    assert re.search(r"<dt>handlers done</dt><dd><code>[^<]*books</code></dd>", html)
    [archived] = [c for c in capture.read(redis_conn) if c.event_id == event["id"]]
    assert archived.request_id.startswith("req_") and archived.request_id in html
    assert "<th>Content-Type</th>" in html
    assert "Retry this event" in html


def test_a_secret_header_in_an_archive_is_redacted_and_no_secret_is_shown(
    console, redis_conn, receiver, settings
):
    event = make_event("order.created")
    body = json.dumps(event).encode()
    fields = capture.entry(event, body, [])
    # An archive written before headers were filtered (or by hand) still never shows them.
    fields[fields.index("headers") + 1] = json.dumps({"TW-Signature": "t=1,v1=abcdef0123"})
    redis_conn.xadd(capture.STREAM_KEY, dict(zip(fields[::2], fields[1::2], strict=True)))
    html = text(console.get(f"/events/{event['id']}"))
    assert "<th>TW-Signature</th>" in html and "[redacted]" in html
    assert "abcdef0123" not in html
    for path in ("/", "/events", "/failed", "/captured", f"/events/{event['id']}"):
        assert TEST_SECRET not in text(console.get(path))


def test_a_run_cut_short_by_a_lost_worker_is_shown(
    state, receiver, settings, redis_conn, console, redis_url, monkeypatch, tmp_path, capsys
):
    """A worker killed mid-run leaves no result; `requeue_abandoned` puts the event back
    and counts it in the job. The page said "attempts 1" after it ran again."""
    event = make_event("order.created")
    deliver(receiver, event)
    queue = open_queues(redis_conn)["orders"]
    dead = Worker([queue], connection=redis_conn, lost_after=2)
    job, _ = queue.dequeue_any([queue], None, connection=redis_conn, serializer=JSONSerializer)
    dead.prepare_execution(job)
    dead.prepare_job_execution(job)  # then it vanishes, as under kill -9
    started = queue.started_job_registry.key
    redis_conn.zadd(started, dict.fromkeys(redis_conn.zrange(started, 0, -1), 0))  # silent
    assert requeue_abandoned(queue) == [event["id"]]

    def attempts_shown() -> str:
        html = text(console.get(f"/events/{event['id']}"))
        assert "No run recorded yet" not in html and "the worker running it was lost" in html
        found = re.search(r"<dt>attempts</dt><dd>(\d+) [^\n]*\(1 cut short by a lost worker", html)
        return found.group(1) if found else html

    assert attempts_shown() == "1"
    run_worker(redis_conn, settings)  # `mails` fails every try
    assert attempts_shown() == str(1 + settings.retry_max + 1)
    state["broken"] = False
    retried = console.post("/failed/retry", data={"csrf": csrf(console), "id": event["id"]})
    assert retried.status_code == 303
    run_worker(redis_conn, settings)
    assert event_status.show(redis_conn, event["id"]).status == "processed"
    assert attempts_shown() == str(1 + settings.retry_max + 1 + 1)  # each run counted once
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REDIS_URL", redis_url)
    assert cli.main(["events", "show", event["id"]]) == 0
    shown = capsys.readouterr().out
    assert f"attempts:      {settings.retry_max + 3}\n" in shown
    assert "abandoned:     1 run(s) cut short by a lost worker, requeued\n" in shown


def test_unknown_event_is_404(console):
    response = console.get("/events/evt_nothing_here")
    assert response.status_code == 404 and "No trace of event evt_nothing_here" in text(response)


def test_retry_one_then_a_selection_then_everything_matching(
    state, receiver, settings, redis_conn, console
):
    events = [make_event("order.created") for _ in range(4)]
    deliver(receiver, *events)
    run_worker(redis_conn, settings)
    assert sorted(event_status.failed_ids(redis_conn)) == sorted(e["id"] for e in events)
    state["broken"] = False
    token = csrf(console, "/failed")

    one = console.post("/failed/retry", data={"csrf": token, "id": events[0]["id"]})
    assert one.status_code == 303 and "requeued=1" in one.headers["Location"]
    selection = console.post(
        "/failed/retry", data={"csrf": token, "id": [events[1]["id"], events[2]["id"]]}
    )
    assert "requeued=2" in selection.headers["Location"]
    assert list(event_status.failed_ids(redis_conn)) == [events[3]["id"]]
    run_worker(redis_conn, settings)
    # A filter that matches nothing requeues nothing; the matching one requeues the rest.
    for nothing in ({"type": "price.*"}, {"handler": "books"}):
        none = console.post("/failed/retry-matching", data={"csrf": token, **nothing})
        assert "requeued=0" in none.headers["Location"]
    rest = console.post(
        "/failed/retry-matching", data={"csrf": token, "type": "order.*", "handler": "mails"}
    )
    assert "requeued=1" in rest.headers["Location"]
    run_worker(redis_conn, settings)
    for event in events:
        assert event_status.show(redis_conn, event["id"]).status == "processed"
    html = text(console.get(f"/events/{events[0]['id']}"))
    runs = re.findall(r'<tr><td class="when">[^<]+</td><td>([a-z ]+)</td>', html)
    assert runs == ["failed"] * (settings.retry_max + 1) + ["successful"]
    page = text(console.get(rest.headers["Location"]))
    assert "Requeued 1 event(s)" in page and "No failed events" in page


def test_captured_list_and_export_as_json_lines(receiver, console):
    events = [make_event("order.created"), make_event("price.updated")]
    deliver(receiver, *events)
    html = text(console.get("/captured"))
    assert all(event["id"] in html for event in events)
    export = console.get("/captured/export.jsonl?type=order.*")
    assert export.status_code == 200
    assert export.headers["Content-Disposition"].startswith('attachment; filename="captured-')
    assert [json.loads(line) for line in export.get_data().splitlines()] == [events[0]]
    everything = console.get("/captured/export.jsonl").get_data().splitlines()
    assert [json.loads(line) for line in everything] == events


def test_every_post_needs_the_sessions_csrf_token(mixed, console, settings, redis_conn):
    failed_id = mixed["failed"]["id"]
    assert console.post("/failed/retry", data={"id": failed_id}).status_code == 403
    assert console.post("/failed/retry", data={"id": failed_id, "csrf": "x"}).status_code == 403
    # Another session's token is refused as well: tokens are per session.
    other = make_console(settings, redis_conn)
    other_token = csrf(other)
    stolen = console.post("/failed/retry", data={"id": failed_id, "csrf": other_token})
    assert stolen.status_code == 403
    assert list(event_status.failed_ids(redis_conn)) == [failed_id]
    ok = console.post("/failed/retry", data={"id": failed_id, "csrf": csrf(console)})
    assert ok.status_code == 303 and list(event_status.failed_ids(redis_conn)) == []


def test_a_post_without_its_csrf_token_says_why(mixed, console):
    missing = console.post("/failed/retry", data={"id": mixed["failed"]["id"]})
    assert missing.status_code == 403 and "carries no CSRF token" in text(missing)
    wrong = console.post("/failed/retry", data={"id": mixed["failed"]["id"], "csrf": "x"})
    assert wrong.status_code == 403 and "not this session&#39;s" in text(wrong)


REBOUND = "rebind.attacker.test"


def test_another_sites_name_rebound_to_the_console_is_refused(mixed, console, redis_conn):
    """DNS rebinding: a page of rebind.attacker.test, its name now pointing at 127.0.0.1,
    would read the CSRF token and post with its own (matching) Origin."""
    page = console.get("/failed", headers={"Host": f"{REBOUND}:8050"})
    assert page.status_code == 421 and 'csrf-token" content=""' in text(page)
    assert f"not to &#39;{REBOUND}:8050&#39;" in text(page)
    assert "localhost" in text(page) and "Set-Cookie" not in page.headers
    token = csrf(console, "/failed")  # even with a token read some other way
    posted = console.post(
        "/failed/retry-matching",
        data={"csrf": token},
        headers={"Host": REBOUND, "Origin": f"http://{REBOUND}"},
    )
    assert posted.status_code == 421
    assert list(event_status.failed_ids(redis_conn)) == [mixed["failed"]["id"]]
    for name in ("localhost", "localhost:8050", "127.0.0.1", "127.0.0.1:9000", "[::1]:8050",
                 "LOCALHOST:1"):  # fmt: skip
        assert console.get("/", headers={"Host": name}).status_code == 200, name
    for name in ("127.0.0.1.nip.io", "localhost.attacker.test", "[::2]", "0.0.0.0:8050"):
        assert console.get("/", headers={"Host": name}).status_code == 421, name


def test_the_configured_host_is_answered_and_with_a_token_any_name(settings, redis_conn):
    own = make_console(settings, redis_conn, host="127.0.0.2")
    assert own.get("/", headers={"Host": "127.0.0.2:8050"}).status_code == 200
    assert own.get("/", headers={"Host": "127.0.0.3"}).status_code == 421
    ipv6 = make_console(settings, redis_conn, host="::1")
    assert ipv6.get("/", headers={"Host": "[::1]:8050"}).status_code == 200
    # With a token (needed beyond loopback), the token guards it, under any name.
    for host in ("0.0.0.0", "127.0.0.1"):
        guarded = make_console(settings, redis_conn, token=TOKEN, host=host)
        assert guarded.get("/", headers={"Host": "ops.example.com"}).status_code == 302


def test_every_post_must_come_from_the_consoles_own_origin(mixed, console, redis_conn):
    failed_id = mixed["failed"]["id"]
    token = csrf(console, "/failed")
    for headers in (
        {"Origin": "http://evil.example"},
        {"Origin": "http://localhost:8050"},  # another port is another origin
        {"Origin": "null"},
        {"Origin": ""},
        {"Referer": "http://evil.example/page"},
    ):
        response = console.post(
            "/failed/retry", data={"csrf": token, "id": failed_id}, headers=headers
        )
        assert response.status_code == 403, headers
        assert "changes are taken only from the console&#39;s own pages" in text(response)
    assert list(event_status.failed_ids(redis_conn)) == [failed_id]
    same = console.post(
        "/failed/retry",
        data={"csrf": token, "id": failed_id},
        headers={"Origin": "http://localhost", "Referer": "http://evil.example/"},
    )
    assert same.status_code == 303 and list(event_status.failed_ids(redis_conn)) == []


def test_the_running_console_refuses_a_rebound_name_over_http(redis_url, tmp_path):
    port = free_port()
    command = [sys.executable, "-m", PACKAGE, "console", "--port", str(port)]
    log = tmp_path / "console.log"
    with running(command, project_env(redis_url), log) as process:
        wait_until_up(f"http://127.0.0.1:{port}/", process, log)

        def ask(method: str, headers: dict[str, str], body: str = "") -> tuple[int, str]:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                connection.request(method, "/failed/retry-matching" if body else "/failed",
                                   body=body or None, headers=headers)  # fmt: skip
                response = connection.getresponse()
                return response.status, response.read().decode()
            finally:
                connection.close()

        status, page = ask("GET", {"Host": f"{REBOUND}:{port}"})
        assert status == 421 and "answers only to" in page
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        rebound = {"Host": f"{REBOUND}:{port}", "Origin": f"http://{REBOUND}:{port}"}
        assert ask("POST", {**form, **rebound}, "type=order.*")[0] == 421
        elsewhere = {"Host": f"127.0.0.1:{port}", "Origin": "http://evil.example"}
        status, page = ask("POST", {**form, **elsewhere}, "type=order.*")
        assert status == 403 and "own pages" in page
        status, page = ask("GET", {"Host": f"localhost:{port}"})
        assert status == 200 and "Failed" in page


def test_read_only_hides_the_actions_and_refuses_them(mixed, settings, redis_conn):
    console = make_console(settings, redis_conn, read_only=True)
    failed_id = mixed["failed"]["id"]
    for path in ("/failed", f"/events/{failed_id}"):
        html = text(console.get(path))
        assert "read-only" in html and "Retry" not in html and "/failed/retry" not in html
    token = csrf(console)
    for action in ("/failed/retry", "/failed/retry-matching"):
        response = console.post(action, data={"csrf": token, "id": failed_id})
        assert response.status_code == 403 and "read-only" in text(response)
    assert list(event_status.failed_ids(redis_conn)) == [failed_id]


def test_with_a_token_every_page_asks_for_it(settings, redis_conn):
    console = make_console(settings, redis_conn, token=TOKEN)
    first = console.get("/events?status=failed")
    assert first.status_code == 302
    assert first.headers["Location"] == "/login?next=/events?status%3Dfailed"
    assert console.post("/failed/retry", data={"id": "evt_1"}).status_code == 401
    wrong = console.post("/login", data={"csrf": csrf(console, "/login"), "token": "nope"})
    assert wrong.status_code == 401 and "not the console" in text(wrong)
    assert console.get("/").status_code == 302
    login = console.post(
        "/login",
        data={"csrf": csrf(console, "/login"), "token": TOKEN, "next": "/events"},
    )
    assert login.status_code == 302 and login.headers["Location"] == "/events"
    cookie = login.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    assert TOKEN not in cookie
    assert console.get("/").status_code == 200
    assert TOKEN not in text(console.get("/"))
    logout = console.post("/logout", data={"csrf": csrf(console)})
    assert logout.status_code == 302 and console.get("/").status_code == 302


def test_the_login_cookie_is_secure_over_https_and_goes_only_to_safe_places(settings, redis_conn):
    for elsewhere in ("//evil.example/", "/\\evil.example", "https://evil.example/"):
        console = make_console(settings, redis_conn, token=TOKEN)
        token = csrf(console, "https://localhost/login")
        login = console.post(
            "https://localhost/login",
            data={"csrf": token, "token": TOKEN, "next": elsewhere},
        )
        assert "Secure" in login.headers["Set-Cookie"]
        assert login.headers["Location"] == "/"  # never to another site
    proxied = make_console(settings, redis_conn, token=TOKEN)
    login = proxied.post(
        "/login",
        data={"csrf": csrf(proxied, "/login"), "token": TOKEN},
        headers={"X-Forwarded-Proto": "https"},
    )
    assert login.status_code == 302 and "Secure" in login.headers["Set-Cookie"]


def test_a_login_lasts_12_hours_outlives_a_restart_and_ends_with_the_token(
    settings, redis_conn, monkeypatch
):
    console = make_console(settings, redis_conn, token=TOKEN)
    login = console.post("/login", data={"csrf": csrf(console, "/login"), "token": TOKEN})
    assert "Expires=" in login.headers["Set-Cookie"]  # kept when the browser restarts
    cookie = {"Cookie": login.headers["Set-Cookie"].split(";", 1)[0]}

    def page(token):
        app = console_app.create_app(settings, redis_conn, token=token)
        return app.test_client(use_cookies=False).get("/", headers=cookie)

    assert page(TOKEN).status_code == 200  # a restarted console with the same token
    assert page(TOKEN + "2").status_code == 302  # a new token: log in again
    later = itsdangerous.TimestampSigner.get_timestamp
    monkeypatch.setattr(
        itsdangerous.TimestampSigner,
        "get_timestamp",
        lambda signer: later(signer) + SESSION_SECONDS + 1,
    )
    assert page(TOKEN).status_code == 302  # 12 hours on


def test_a_bearer_token_works_without_a_cookie_or_csrf(mixed, settings, redis_conn):
    console = make_console(settings, redis_conn, token=TOKEN)
    good = {"Authorization": f"Bearer {TOKEN}"}
    assert console.get("/events", headers=good).status_code == 200
    bad = console.get("/events", headers={"Authorization": "Bearer " + TOKEN[:-1] + "x"})
    assert bad.status_code == 401
    retried = console.post("/failed/retry", data={"id": mixed["failed"]["id"]}, headers=good)
    assert retried.status_code == 303 and list(event_status.failed_ids(redis_conn)) == []


def test_security_headers_on_every_answer(console):
    for response in (console.get("/"), console.get("/events/evt_none"), console.get("/login")):
        headers = response.headers
        csp = headers["Content-Security-Policy"]
        assert csp.startswith("default-src 'self';") and "'unsafe-inline'" not in csp
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Referrer-Policy"] == "same-origin"
        assert headers["X-Content-Type-Options"] == "nosniff"
    page = console.get("/failed")
    nonce = re.search(r"style-src 'nonce-([^']+)'", page.headers["Content-Security-Policy"])
    assert f'<style nonce="{nonce.group(1)}">' in text(page)
    assert nonce.group(1) not in text(console.get("/failed"))  # a new nonce every time


def test_hostile_content_is_shown_as_text(state, receiver, console, redis_conn, settings):
    event = make_event("order.created", {"note": HOSTILE, HOSTILE: "key"})
    deliver(receiver, event, **{"User-Agent": "<script>alert(1)</script>"})
    run_worker(redis_conn, settings)
    # An archive entry with an id and a type the receiver would refuse, written directly.
    odd = {"id": '<img src=x onerror="alert(1)">', "type": "<script>alert(2)</script>"}
    redis_conn.xadd(
        capture.STREAM_KEY,
        dict(zip(*[iter(capture.entry(odd, json.dumps(odd).encode(), []))] * 2, strict=True)),
    )
    pages = [
        console.get(f"/events/{event['id']}"),
        console.get("/captured"),
        console.get("/events?id=%3Cscript%3Ealert(3)%3C/script%3E"),
        console.get("/events?type=%3Cscript%3Ealert(4)"),
        console.get("/events/%3Cscript%3Ealert(5)%3C%2Fscript%3E"),
        console.get("/failed?since=%22%3E%3Cscript%3E"),
        console.get("/events/" + odd["id"]),
    ]
    for response in pages:
        html = text(response)
        assert "<script>alert" not in html and "<img src=x" not in html, html
        assert 'onerror="alert' not in html
    assert "&lt;script&gt;alert(\\&#34;x\\&#34;)&lt;/script&gt;" in text(pages[0])
    assert "ünïcødé ☃" in text(pages[0]) and "z" * 5000 in text(pages[0])
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text(pages[0])  # the User-Agent
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in text(pages[1])
    assert pages[4].status_code == 404 and "&lt;script&gt;alert(5)" in text(pages[4])


def test_a_lone_surrogate_in_an_event_is_shown_as_its_escape(
    receiver, settings, redis_conn, console
):
    """JSON may escape half of a UTF-16 pair on its own (`"\\ud800"`); UTF-8 has no such
    character. The receiver takes the event as sent, the handler gets it, and every page
    shows it, escaped as it came, rather than a 500."""
    routes.clear_handlers()
    seen = []

    def notes(event):
        seen.append(event.object["note"])
        raise ValueError("bad note " + event.object["note"])

    routes.on("order.created")(notes)
    event = make_event("order.created", {"id": "ord_1", "note": "half \ud800 of a pair"})
    body = json.dumps(event).encode()
    assert b"\\ud800" in body
    deliver(receiver, event)
    run_worker(redis_conn, settings)
    assert seen[0] == "half \ud800 of a pair"
    for path in ("/", "/events", "/failed", "/captured", "/captured/export.jsonl"):
        assert console.get(path).status_code == 200, path
    page = console.get(f"/events/{event['id']}")
    assert page.status_code == 200
    html = unescape(text(page))
    assert "ValueError: bad note half \\ud800 of a pair" in html
    shown = re.search(r"<h2>Envelope</h2>\s*<pre>(.*?)</pre>", html, re.S).group(1)
    assert json.loads(shown) == event


def test_redis_down_is_a_503_page(settings):
    gone = redis.Redis(port=free_port(), retry=Retry(NoBackoff(), 0))  # fails at once
    console = console_app.create_app(settings, gone).test_client()
    response = console.get("/")
    assert response.status_code == 503 and "Redis did not answer" in text(response)


def test_no_public_binding_without_a_token(redis_url, monkeypatch, tmp_path, capsys):
    check_binding("127.0.0.1", "")
    check_binding("::1", "")
    check_binding("localhost", "")
    check_binding("0.0.0.0", TOKEN)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.delenv("TW_CONSOLE_TOKEN", raising=False)
    assert cli.main(["console", "--host", "0.0.0.0", "--port", "0"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "TW_CONSOLE_TOKEN is not set" in error


def test_the_receiver_never_serves_the_console(client):
    for path in ("/events", "/failed", "/captured", "/login"):
        assert client.get(path).status_code == 404
    assert COOKIE not in client.get("/healthz").headers.get("Set-Cookie", "")
