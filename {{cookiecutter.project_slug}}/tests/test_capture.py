"""The capture archive on a real private Redis: what is kept, what never is, the bound,
and the export that `replay` reads back."""

import dataclasses
import io
import json
import time

import pytest

from {{ cookiecutter.package_name }} import capture, cli
from {{ cookiecutter.package_name }}.app import create_app
from {{ cookiecutter.package_name }}.intake import is_seen
from {{ cookiecutter.package_name }}.replay import read_events
from {{ cookiecutter.package_name }}.testing import TEST_SECRET, make_event, signed_headers


@pytest.fixture
def capturing(settings, redis_conn):
    """A receiver with capture on, bounded at 50 events."""
    settings = dataclasses.replace(settings, capture_max_events=50)
    return create_app(settings, connection=redis_conn).test_client()


def post(client, data: bytes, **headers):
    path = client.application.extensions["tw_settings"].webhook_path
    return client.post(path, data=data, headers={**signed_headers(data), **headers})


def archived(redis_conn) -> list[capture.Captured]:
    return list(capture.read(redis_conn))


def backdate_archive(redis_conn, seconds: int) -> None:
    """Move every archived delivery `seconds` into the past, as if received then: the
    stream's entry ids are the receipt times, so the entries are written again under
    earlier ids. Later deliveries get ids of the present."""
    entries = redis_conn.xrange(capture.STREAM_KEY)
    redis_conn.delete(capture.STREAM_KEY)
    for entry_id, fields in entries:
        ms, sequence = entry_id.decode().split("-")
        redis_conn.xadd(capture.STREAM_KEY, fields, id=f"{int(ms) - seconds * 1000}-{sequence}")


def test_capture_is_off_by_default(client, redis_conn):
    assert post(client, json.dumps(make_event()).encode()).status_code == 202
    assert not redis_conn.exists(capture.STREAM_KEY)


def test_accepted_event_is_archived_raw_with_headers_and_receipt_time(capturing, redis_conn):
    data = json.dumps(make_event("order.created", {"id": "ord_1"}), indent=2).encode()
    before = time.time()
    response = post(capturing, data, **{"User-Agent": "TW-Webhooks/1.1", "X-Trace": "abc"})
    assert response.status_code == 202
    [entry] = archived(redis_conn)
    assert entry.body == data  # byte for byte, indentation and all
    assert entry.event_id == json.loads(data)["id"] and entry.type == "order.created"
    assert before - 0.01 <= entry.received <= time.time() + 0.01
    assert entry.request_id == response.headers["X-Request-Id"]
    assert entry.headers["User-Agent"] == "TW-Webhooks/1.1"
    assert entry.headers["X-Trace"] == "abc"
    assert entry.headers["Content-Type"] == "application/json"


def test_secrets_and_signatures_are_never_archived(capturing, redis_conn):
    data = json.dumps(make_event()).encode()
    signature = signed_headers(data)["TW-Signature"]
    post(
        capturing,
        data,
        Authorization="Bearer s3cr3t-token",
        Cookie="session=s3cr3t-cookie",
        **{"X-Api-Key": "s3cr3t-key", "X-Upstream-Token": "s3cr3t-2"},
    )
    [entry] = archived(redis_conn)
    assert set(entry.headers) & {"TW-Signature", "Authorization", "Cookie"} == set()
    dump = b"".join(
        value for _, fields in redis_conn.xrange(capture.STREAM_KEY) for value in fields.values()
    )
    for secret in (signature.encode(), b"s3cr3t", TEST_SECRET.encode(), b"v1="):
        assert secret not in dump


def test_archived_headers_filter_is_case_insensitive():
    kept = capture.archived_headers(
        [("tw-signature", "t=1,v1=x"), ("PROXY-AUTHORIZATION", "x"), ("set-cookie", "x"),
         ("X-Client-Secret", "x"), ("Host", "example.com"), ("X-Request-Id", "req_1")]
    )  # fmt: skip
    assert kept == {"Host": "example.com", "X-Request-Id": "req_1"}


def test_duplicates_and_rejected_deliveries_are_not_archived(capturing, redis_conn):
    data = json.dumps(make_event()).encode()
    assert post(capturing, data).status_code == 202
    assert post(capturing, data).status_code == 200
    bad = capturing.post(
        capturing.application.extensions["tw_settings"].webhook_path,
        data=json.dumps(make_event()).encode(),
        headers=signed_headers(b"other body"),
    )
    assert bad.status_code == 401
    assert post(capturing, b'{"id": "evt_1"}').status_code == 400
    assert len(archived(redis_conn)) == 1


def test_archive_is_bounded(settings, redis_conn):
    client = create_app(
        dataclasses.replace(settings, capture_max_events=10), connection=redis_conn
    ).test_client()
    events = [make_event() for _ in range(300)]
    for event in events:
        assert post(client, json.dumps(event).encode()).status_code == 202
    # MAXLEN ~ trims whole stream nodes (100 entries by default), never below the bound.
    assert 10 <= redis_conn.xlen(capture.STREAM_KEY) <= 10 + 100
    kept = [c.event_id for c in capture.read(redis_conn)]
    assert kept == [e["id"] for e in events[-len(kept) :]]  # the newest are kept, in order
    assert sum(redis_conn.llen(f"rq:queue:{q}") for q in ("orders", "prices", "other")) == 300


def test_an_archive_that_cannot_be_written_never_costs_the_event(capturing, settings, redis_conn):
    redis_conn.set(capture.STREAM_KEY, "not a stream")  # makes XADD fail inside the script
    event = make_event("price.updated")
    assert post(capturing, json.dumps(event).encode()).status_code == 202
    assert is_seen(redis_conn, event["id"], settings.dedupe_window_seconds)
    assert redis_conn.lrange("rq:queue:prices", 0, -1) == [event["id"].encode()]


# --- export ----------------------------------------------------------------------------


def fill(client, events):
    for event in events:
        assert post(client, json.dumps(event, indent=2).encode()).status_code == 202


def test_export_is_json_lines_that_replay_reads_back(capturing, redis_conn, tmp_path):
    events = [make_event(t) for t in ("order.created", "price.updated", "order.refunded")]
    fill(capturing, events)
    out = tmp_path / "captured.jsonl"
    with open(out, "wb") as file:
        assert capture.export(redis_conn, file) == 3
    assert len(out.read_bytes().splitlines()) == 3
    assert [d.envelope for d in read_events([out])] == events


def test_export_filters_by_type_time_and_count(capturing, redis_conn):
    fill(capturing, [make_event("order.created", event_id="evt_old")])
    backdate_archive(redis_conn, 3600)  # received an hour ago
    middle = time.time() - 1800
    fill(capturing, [make_event("price.updated", event_id=f"evt_p{n}") for n in range(3)])
    fill(capturing, [make_event("order.cancelled", event_id="evt_new")])

    def ids(**filters):
        out = io.BytesIO()
        capture.export(redis_conn, out, **filters)
        return [json.loads(line)["id"] for line in out.getvalue().splitlines()]

    assert ids() == ["evt_old", "evt_p0", "evt_p1", "evt_p2", "evt_new"]
    assert ids(event_type="order.*") == ["evt_old", "evt_new"]
    assert ids(event_type="price.updated", limit=2) == ["evt_p1", "evt_p2"]
    assert ids(since=middle) == ["evt_p0", "evt_p1", "evt_p2", "evt_new"]
    assert ids(limit=0) == []


def test_export_reads_past_one_batch(capturing, redis_conn, monkeypatch):
    monkeypatch.setattr(capture, "READ_BATCH", 3)
    events = [make_event() for _ in range(10)]
    fill(capturing, events)
    assert [c.event_id for c in capture.read(redis_conn)] == [e["id"] for e in events]
    assert [c.event_id for c in capture.read(redis_conn, newest_first=True)] == [
        e["id"] for e in reversed(events)
    ]
    assert capture.find(redis_conn, events[1]["id"]).event_id == events[1]["id"]
    assert capture.find(redis_conn, "evt_never") is None


@pytest.mark.parametrize(
    "raw",
    [
        b'{"id": "evt_1", "note": "line\\nbreak", "x": [1,\n  2]}',
        b'{\r\n  "id": "evt_1",\r\n  "s": "  spaced  "\r\n}\r\n',
        b'  {"id":"evt_1"}  ',
    ],
)
def test_one_line_per_event_keeps_the_event(raw):
    line = capture.jsonl_line(raw)
    assert b"\n" not in line and b"\r" not in line
    assert json.loads(line) == json.loads(raw)


def test_export_command_writes_a_file(capturing, redis_url, monkeypatch, tmp_path, capsys):
    fill(capturing, [make_event("order.created"), make_event("price.updated")])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REDIS_URL", redis_url)
    assert cli.main(["events", "export", "-o", "out.jsonl", "--type", "price.*"]) == 0
    assert "exported 1 event(s) to out.jsonl" in capsys.readouterr().err
    [delivery] = read_events([tmp_path / "out.jsonl"])
    assert delivery.envelope["type"] == "price.updated"


def test_export_command_says_when_capture_is_off(redis_url, monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REDIS_URL", redis_url)
    assert cli.main(["events", "export"]) == 0
    err = capsys.readouterr().err
    assert "TW_CAPTURE_MAX_EVENTS" in err
    assert "archive in this Redis is empty" in err  # true as well when capture is on


def test_export_command_reports_an_unreachable_redis(monkeypatch, tmp_path, capsys):
    from {{ cookiecutter.package_name }}.dev.embedded_redis import free_port

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    assert cli.main(["events", "export"]) == 2
    assert "cannot reach Redis" in capsys.readouterr().err
