"""The replay sender, piece by piece: reading, planning, signing, retrying, reporting.

HTTP behaviour is tested against a real local server that answers from a script and
checks every signature it receives, so nothing here is a stub of the network.
"""

import io
import json
import shlex
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from clocks import FakeClock

from {{ cookiecutter.package_name }} import cli
from {{ cookiecutter.package_name }}.dev import state as devstate
from {{ cookiecutter.package_name }}.dev.embedded_redis import free_port
from {{ cookiecutter.package_name }}.rate_limit import RateLimiter
from {{ cookiecutter.package_name }}.replay import (
    Delivery,
    Options,
    Progress,
    Result,
    Sender,
    _classify,
    curl_command,
    format_summary,
    pacer,
    plan,
    read_events,
    run,
    with_fresh_ids,
)
from {{ cookiecutter.package_name }}.signature import HEADER, verify
from {{ cookiecutter.package_name }}.testing import TEST_SECRET, make_event

SAMPLES = str(Path(__file__).resolve().parent.parent / "samples" / "events")


def body(event) -> bytes:
    return json.dumps(event).encode()


# --- reading ---------------------------------------------------------------------------


def test_folder_is_read_recursively_in_name_order_and_bodies_kept_verbatim(tmp_path):
    (tmp_path / "b").mkdir()
    pretty = json.dumps(make_event(event_id="evt_2"), indent=4).encode()
    (tmp_path / "b" / "2.json").write_bytes(pretty)
    (tmp_path / "1.json").write_bytes(body(make_event(event_id="evt_1")))
    (tmp_path / "notes.txt").write_text("not an event")
    deliveries = read_events([tmp_path])
    assert [d.envelope["id"] for d in deliveries] == ["evt_1", "evt_2"]
    assert deliveries[1].body == pretty
    assert deliveries[1].source.endswith("2.json")


def test_json_list_and_json_lines(tmp_path):
    listing = tmp_path / "list.json"
    listing.write_text(json.dumps([make_event(event_id="evt_a"), make_event(event_id="evt_b")]))
    lines = tmp_path / "events.jsonl"
    third, fourth = (json.dumps(make_event(event_id=i)) for i in ("evt_c", "evt_d"))
    lines.write_text(third + "\n\n" + fourth + "\n")
    deliveries = read_events([listing, lines])
    assert [d.envelope["id"] for d in deliveries] == ["evt_a", "evt_b", "evt_c", "evt_d"]
    assert [d.source.rsplit("/", 1)[-1] for d in deliveries] == [
        "list.json[0]", "list.json[1]", "events.jsonl:1", "events.jsonl:3",
    ]  # fmt: skip


def test_the_samples_are_eight_valid_events():
    deliveries = read_events([SAMPLES])
    assert len(deliveries) == 8
    assert len({d.envelope["id"] for d in deliveries}) == 8


def test_missing_path_and_broken_json_are_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        read_events([tmp_path / "nope"])
    (tmp_path / "broken.json").write_text("{oops")
    with pytest.raises(ValueError, match="not JSON"):
        read_events([tmp_path / "broken.json"])


def test_a_line_that_is_not_an_event_is_still_sent_as_is(tmp_path):
    lines = tmp_path / "mixed.jsonl"
    lines.write_text("not json\n[1, 2]\n")
    deliveries = read_events([lines])
    assert [d.body for d in deliveries] == [b"not json", b"[1, 2]"]
    assert [d.envelope for d in deliveries] == [{}, {}]
    assert with_fresh_ids(deliveries) == deliveries


# --- planning --------------------------------------------------------------------------


def test_fresh_ids_change_only_the_id():
    deliveries = read_events([SAMPLES])
    fresh = with_fresh_ids(deliveries)
    old_ids = {d.envelope["id"] for d in deliveries}
    new_ids = [d.envelope["id"] for d in fresh]
    assert len(set(new_ids)) == len(new_ids) and not old_ids & set(new_ids)
    for before, after in zip(deliveries, fresh, strict=True):
        assert {**after.envelope, "id": None} == {**before.envelope, "id": None}
        assert after.source == before.source


def test_copies_repeat_each_event_in_place():
    deliveries = read_events([SAMPLES])[:3]
    planned = plan(deliveries, copies=3)
    assert planned == [d for d in deliveries for _ in range(3)]


def test_shuffle_is_repeatable_with_a_seed():
    deliveries = read_events([SAMPLES])
    first = plan(deliveries, copies=2, shuffle=True, seed=7)
    assert first == plan(deliveries, copies=2, shuffle=True, seed=7)
    assert first != plan(deliveries, copies=2, shuffle=True, seed=8)
    assert first != plan(deliveries, copies=2)
    assert sorted(d.source for d in first) == sorted(d.source for d in plan(deliveries, 2))


# --- backoff ---------------------------------------------------------------------------


def options(url="http://127.0.0.1:1/webhooks", **overrides):
    return Options(url=url, secrets=(TEST_SECRET,), **overrides)


def test_backoff_doubles_with_jitter_and_is_capped():
    sender = Sender(options(backoff_base=0.5, backoff_max=30.0))
    for attempt in range(1, 9):
        nominal = min(0.5 * 2 ** (attempt - 1), 30.0)  # past the cap, jittered below it
        delays = [sender.backoff(attempt, None) for _ in range(50)]
        assert all(nominal * 0.8 <= delay <= min(nominal * 1.2, 30.0) for delay in delays)
        assert max(delays) - min(delays) > nominal / 20  # jittered, not fixed


def test_retry_after_is_honoured_up_to_the_cap():
    sender = Sender(options(backoff_max=30.0))
    assert sender.backoff(1, "7") == 7.0
    assert sender.backoff(5, "0") == 0.0
    assert sender.backoff(1, "3600") == 30.0
    assert 0.4 <= sender.backoff(1, "soon") <= 0.6  # not seconds: exponential instead


# --- classification --------------------------------------------------------------------


@pytest.mark.parametrize(
    "status, payload, outcome",
    [
        (202, {"status": "accepted"}, "accepted"),
        (200, {"status": "duplicate"}, "duplicate"),
        (204, None, "accepted"),
        (401, {"error": {"code": "signature_mismatch"}}, "rejected:signature_mismatch"),
        (400, {"error": {"code": "invalid_event", "message": "m"}}, "rejected:invalid_event"),
        (404, "<html>nope</html>", "rejected:http_404"),
        (503, {"error": {"code": "storage_unavailable"}}, "failed:storage_unavailable"),
        (502, "Bad Gateway", "failed:http_502"),
        (500, [1, 2], "failed:http_500"),
    ],
)
def test_classification(status, payload, outcome):
    raw = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
    result = _classify(Delivery(b"{}", "x"), status, raw if payload is not None else b"", 1)
    assert result.outcome == outcome
    assert result.ok == (outcome in ("accepted", "duplicate"))


# --- a scripted receiver ---------------------------------------------------------------


class Script:
    """Answers to give, in order (the last one repeats), and what was received."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.received: list[tuple[dict, bytes, int]] = []  # headers, body, verified t


@pytest.fixture
def receiver():
    servers = []

    def start(*answers):
        script = Script(*answers)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                data = self.rfile.read(int(self.headers["Content-Length"]))
                t = verify(self.headers.get(HEADER), data, [TEST_SECRET])
                script.received.append((dict(self.headers), data, t))
                status, headers, payload = (
                    script.answers.pop(0) if len(script.answers) > 1 else script.answers[0]
                )
                raw = json.dumps(payload).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}/webhooks/tw", script

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


ACCEPTED = (202, {}, {"status": "accepted"})
DUPLICATE = (200, {}, {"status": "duplicate"})


def error(status, code, headers=None):
    return (status, headers or {}, {"error": {"code": code, "message": code, "requestId": "r"}})


def send(url, event, **overrides):
    sleeps = []
    sender = Sender(options(url, **overrides), sleep=sleeps.append)
    return sender.send(Delivery(body(event), "test")), sleeps


def test_429_waits_for_retry_after_then_succeeds(receiver):
    url, _ = receiver(error(429, "rate_limited", {"Retry-After": "3"}), ACCEPTED)
    result, sleeps = send(url, make_event())
    assert (result.outcome, result.status, result.attempts) == ("accepted", 202, 2)
    assert sleeps == [3.0]


def test_5xx_and_409_are_retried_with_growing_delays(receiver):
    url, _ = receiver(
        error(503, "storage_unavailable"), error(500, "internal_error"), error(409, "conflict"),
        DUPLICATE,
    )  # fmt: skip
    result, sleeps = send(url, make_event(), backoff_base=1.0)
    assert (result.outcome, result.attempts) == ("duplicate", 4)
    assert len(sleeps) == 3
    for delay, nominal in zip(sleeps, [1, 2, 4], strict=True):
        assert nominal * 0.8 <= delay <= nominal * 1.2


def test_every_attempt_is_signed_afresh_with_the_current_time(receiver):
    url, script = receiver(error(503, "storage_unavailable"), ACCEPTED)
    event = make_event(created=1)  # an old event: the signature time is now, not `created`
    send(url, event)
    assert len(script.received) == 2
    for headers, data, t in script.received:
        assert data == body(event)
        assert abs(t - time.time()) < 60
        assert headers["Content-Type"] == "application/json"


def test_other_4xx_are_final(receiver):
    url, script = receiver(error(400, "invalid_event"), ACCEPTED)
    result, sleeps = send(url, make_event())
    assert (result.outcome, result.attempts, sleeps) == ("rejected:invalid_event", 1, [])
    assert len(script.received) == 1


def test_gives_up_after_max_attempts(receiver):
    url, script = receiver(error(503, "storage_unavailable"))
    result, sleeps = send(url, make_event(), max_attempts=4)
    assert (result.outcome, result.attempts, len(sleeps)) == ("failed:storage_unavailable", 4, 3)
    assert len(script.received) == 4


def test_unreachable_receiver_is_a_network_error_after_retries():
    url = f"http://127.0.0.1:{free_port()}/webhooks/tw"
    result, sleeps = send(url, make_event(), max_attempts=3)
    assert (result.outcome, result.status, result.attempts, len(sleeps)) == (
        "network_error", None, 3, 2,
    )  # fmt: skip


def test_run_sends_everything_concurrently_and_reports_each(receiver):
    url, script = receiver(ACCEPTED)
    deliveries = plan(read_events([SAMPLES]), copies=3)
    seen = []
    results = run(deliveries, options(url, concurrency=6), on_result=seen.append)
    assert len(results) == len(seen) == 24
    assert sorted(r.delivery.source for r in results) == sorted(d.source for d in deliveries)
    assert len(script.received) == 24


def test_cli_exit_status_and_summary(receiver, monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TW_WEBHOOK_SECRETS", TEST_SECRET)
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(json.dumps(make_event()) for _ in range(3)))
    url, _ = receiver(ACCEPTED, DUPLICATE, error(401, "signature_mismatch"))
    assert cli.main(["replay", "--url", url, str(events)]) == 1
    out = capsys.readouterr().out
    summary = out[out.index("outcome") :]
    for line in ("accepted", "duplicate", "rejected:signature_mismatch"):
        assert f"{line}" in summary
    assert "total" in summary and " 3 " in summary
    url, _ = receiver(ACCEPTED)
    assert cli.main(["replay", "-q", "--url", url, str(events)]) == 0


def test_the_cli_gives_up_in_one_line_when_nothing_listens(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TW_WEBHOOK_SECRETS", TEST_SECRET)
    url = f"http://127.0.0.1:{free_port()}/webhooks/tw"
    assert cli.main(["replay", "--url", url, SAMPLES]) == 1
    out = capsys.readouterr().out
    # Not eight events each retried for 15 s: one line, once the first was refused 3 times.
    assert out.splitlines() == [
        f"replay: nothing listens at {url} (connection refused); is the receiver (`dev`) "
        "running? --url sends elsewhere"
    ]


def test_refusals_after_the_receiver_answered_are_retried_as_before(receiver):
    url, _ = receiver(ACCEPTED)
    sender = Sender(options(url, max_attempts=4, stop_when_refused=True), sleep=lambda s: None)
    assert sender.send(Delivery(body(make_event()), "first")).ok
    sender._port, sender._local.conn = free_port(), None  # the receiver went away after
    result = sender.send(Delivery(body(make_event()), "second"))
    assert (result.outcome, result.attempts) == ("network_error", 4)


def test_replay_sends_to_the_running_dev_receiver(receiver, monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)  # where dev runs, and keeps its state file
    monkeypatch.setenv("TW_WEBHOOK_SECRETS", TEST_SECRET)
    url, script = receiver(ACCEPTED)
    base = url.removesuffix("{{ cookiecutter.webhook_path }}")
    with devstate.published(None, devstate.STATE_FILE, receiver=base):  # dev --port N
        assert cli.main(["replay", "-q", SAMPLES]) == 0
    assert len(script.received) == 8
    source = f"the running dev's, from {devstate.STATE_FILE}"
    assert capsys.readouterr().err == f"Receiver: {url} ({source})\n"


# --- dry run ---------------------------------------------------------------------------


def test_dry_run_curl_carries_a_header_that_verifies(client, redis_conn):
    event = make_event("price.updated")
    delivery = Delivery(body(event), "x")
    url = "http://127.0.0.1:8000" + client.application.extensions["tw_settings"].webhook_path
    command = shlex.split(curl_command(delivery, options(url)))
    assert command[:5] == ["curl", "-sS", "-X", "POST", url]
    headers = dict(command[i + 1].split(": ", 1) for i, part in enumerate(command) if part == "-H")
    data = command[command.index("--data-binary") + 1].encode()
    assert data == delivery.body
    assert abs(verify(headers[HEADER], data, [TEST_SECRET]) - time.time()) < 60
    # What curl would send is accepted by the real receiver.
    response = client.post(url.split("8000", 1)[1], data=data, headers=headers)
    assert response.status_code == 202


def test_dry_run_prints_one_command_per_delivery(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TW_WEBHOOK_SECRETS", TEST_SECRET)
    assert cli.main(["replay", "--dry-run", "--copies", "2", SAMPLES]) == 0
    words = shlex.split(capsys.readouterr().out)  # pretty bodies span lines, quoted
    assert words.count("curl") == 16
    assert words.count("--data-binary") == 16


# --- pacing and reporting --------------------------------------------------------------


def test_rate_limiter_spaces_calls():
    clock = FakeClock()
    limiter = pacer(rate=40)  # 25 ms apart
    limiter.clock, limiter.sleep = clock, clock.sleep
    started = clock()
    sent = []
    for _ in range(9):
        limiter.wait()
        sent.append(clock() - started)
    assert sent == pytest.approx([n * 0.025 for n in range(9)])
    clock.advance(1.0)  # idle for a while: the next call goes at once, then 25 ms on
    limiter.wait()
    limiter.wait()
    assert clock.sleeps[-1] == pytest.approx(0.025)
    assert len(clock.sleeps) == 9


def test_rate_limiter_is_shared_across_threads():
    clock = FakeClock()
    limiter = RateLimiter(1, 1 / 50, clock=clock)  # replay's pacer at 50/s: 20 ms apart
    waits = []

    def call():
        waits.append(limiter.reserve())  # each thread books its own slot

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(waits) == pytest.approx([n * 0.02 for n in range(8)])


def test_the_pacer_waits_in_real_time():
    limiter = pacer(rate=40)  # the one test of its real sleep: 25 ms apart
    started = time.monotonic()
    for _ in range(5):
        limiter.wait()
    assert time.monotonic() - started >= 4 * 0.025 * 0.95


def test_summary_table_counts_each_outcome():
    delivery = Delivery(b"{}", "x")
    results = [
        Result(delivery, "accepted", 202, 1),
        Result(delivery, "accepted", 202, 1),
        Result(delivery, "rejected:invalid_event", 400, 1),
        Result(delivery, "network_error", None, 6),
    ]
    table = format_summary(results, 2.0).splitlines()
    assert table[0].split() == ["outcome", "count"]
    assert table[1].split() == ["accepted", "2"]
    assert table[2].split() == ["network_error", "1"]
    assert table[3].split() == ["rejected:invalid_event", "1"]
    assert table[4].split()[:2] == ["total", "4"] and "(2/s)" in table[4]


class FakeTty(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_only_on_a_terminal():
    result = Result(Delivery(b"{}", "x"), "accepted", 202, 1)
    quiet = io.StringIO()
    Progress(20, quiet).update(result)
    assert quiet.getvalue() == ""
    tty = FakeTty()
    progress = Progress(20, tty)
    for _ in range(20):
        progress.update(result)
    assert "[" + "#" * 15 + "." * 15 + "] 10/20" in tty.getvalue()
    assert tty.getvalue().endswith("] 20/20\n")
