"""The HTTP contract through Flask's test client, on a real private Redis."""

import io
import json
import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from {{ cookiecutter.package_name }}.app import create_app
from {{ cookiecutter.package_name }}.config import ConfigError, Settings
from {{ cookiecutter.package_name }}.dev.embedded_redis import free_port
from {{ cookiecutter.package_name }}.events import MAX_CREATED_AHEAD_SECONDS
from {{ cookiecutter.package_name }}.testing import TEST_SECRET, make_event, signed_headers

PATH = Settings().webhook_path


def post(client, body: bytes, headers=None):
    return client.post(PATH, data=body, headers=headers or signed_headers(body))


def queued(redis_conn) -> int:
    return sum(redis_conn.llen(f"rq:queue:{name}") for name in ("orders", "prices", "other"))


def assert_error(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert error["requestId"] == response.headers["X-Request-Id"]
    assert error["requestId"].startswith("req_")


def test_first_receipt_is_202_accepted(client, make_event, redis_conn):
    event = make_event("order.created")
    response = post(client, json.dumps(event).encode())
    assert response.status_code == 202
    assert response.get_json() == {
        "status": "accepted",
        "id": event["id"],
        "requestId": response.headers["X-Request-Id"],
    }
    assert queued(redis_conn) == 1


def test_repeat_is_200_duplicate_and_not_queued_again(client, make_event, redis_conn):
    body = json.dumps(make_event("price.updated")).encode()
    assert post(client, body).status_code == 202
    again = post(client, body)
    assert again.status_code == 200
    assert again.get_json()["status"] == "duplicate"
    assert queued(redis_conn) == 1


def test_unknown_event_type_is_acknowledged(client, make_event, redis_conn):
    response = post(client, json.dumps(make_event("inventory.rebalanced")).encode())
    assert response.status_code == 202
    assert redis_conn.llen("rq:queue:other") == 1


@pytest.mark.parametrize(
    "headers, code",
    [
        ({}, "signature_missing"),
        ({"TW-Signature": ""}, "signature_missing"),
        ({"TW-Signature": "t=1,v1=zz"}, "signature_malformed"),
        ({"TW-Signature": "t=1," + "v1=" + "a" * 64}, "timestamp_out_of_tolerance"),
    ],
)
def test_bad_signatures_are_401_and_never_queued(client, make_event, redis_conn, headers, code):
    body = json.dumps(make_event()).encode()
    assert_error(
        post(client, body, headers={"Content-Type": "application/json", **headers}), 401, code
    )
    assert queued(redis_conn) == 0


def test_wrong_secret_is_401_signature_mismatch(client, make_event, redis_conn):
    body = json.dumps(make_event()).encode()
    assert_error(
        post(client, body, signed_headers(body, secret="whsec_other")), 401, "signature_mismatch"
    )
    assert queued(redis_conn) == 0


def test_non_ascii_header_is_a_4xx(client, make_event):
    body = json.dumps(make_event()).encode()
    response = post(client, body, {"TW-Signature": "t=1,v1=é"})
    assert_error(response, 401, "signature_malformed")


@pytest.mark.parametrize(
    "body, code",
    [
        (b"not json", "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        (b"[1, 2]", "invalid_event"),
        (b'{"type": "order.created", "created": 1, "data": {}}', "invalid_event"),
        (b'{"id": "evt 1", "type": "order.created", "created": 1, "data": {}}', "invalid_event"),
        (b'{"id": "evt_1", "type": "", "created": 1, "data": {}}', "invalid_event"),
        (b'{"id": "evt_1", "type": "order.created", "created": "1", "data": {}}', "invalid_event"),
        (b'{"id": "evt_1", "type": "order.created", "created": true, "data": {}}', "invalid_event"),
        (b'{"id": "evt_1", "type": "order.created", "created": 1, "data": []}', "invalid_event"),
        (b"[" * 100_000, "invalid_json"),
        # JSON on the wire is UTF-8: no other encoding, no byte order mark.
        (
            '{"id": "evt_1", "type": "ping", "created": 1, "data": {}}'.encode("utf-16"),
            "invalid_json",
        ),
        (b'\xef\xbb\xbf{"id": "evt_1", "type": "ping", "created": 1, "data": {}}', "invalid_json"),
    ],
    ids=lambda v: repr(v)[:30] if isinstance(v, bytes) else v,
)
def test_signed_but_invalid_bodies_are_400(client, redis_conn, body, code):
    assert_error(post(client, body), 400, code)
    assert queued(redis_conn) == 0


def test_a_created_far_in_the_future_is_400(client, redis_conn):
    """A `created` more than a day ahead (milliseconds, or 10**300) would hold
    `newest_only`'s mark above every real event of its object; a day is far more than the
    signature tolerance lets an honest clock be ahead."""
    now = int(time.time())
    for created in (now + MAX_CREATED_AHEAD_SECONDS + 60, now * 1000, 10**300):
        body = json.dumps(make_event("price.updated", created=created)).encode()
        response = post(client, body)
        assert_error(response, 400, "invalid_event")
        message = response.get_json()["error"]["message"]
        assert message.startswith(f"`created` is more than {MAX_CREATED_AHEAD_SECONDS} s ahead")
    assert queued(redis_conn) == 0
    tolerance = Settings().tolerance_seconds
    for created in (now + MAX_CREATED_AHEAD_SECONDS - 60, now + 2 * tolerance, 0):
        body = json.dumps(make_event("price.updated", created=created)).encode()
        assert post(client, body).status_code == 202
    assert queued(redis_conn) == 3


def event_of_size(size: int) -> bytes:
    """A valid event whose JSON is exactly `size` bytes long."""
    empty = json.dumps(make_event("order.created", {"pad": ""})).encode()
    envelope = json.loads(empty)
    envelope["data"]["object"]["pad"] = "x" * (size - len(empty))
    body = json.dumps(envelope).encode()
    assert len(body) == size
    return body


def post_chunked(client, body: bytes):
    """POST `body` as a chunked stream, which announces no length, from a server that
    decodes chunked bodies and says so with `wsgi.input_terminated`, as gunicorn does."""
    return client.post(
        PATH,
        input_stream=io.BytesIO(body),
        headers={**signed_headers(body), "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )


@pytest.mark.parametrize("send", [post, post_chunked], ids=["content-length", "chunked"])
def test_a_body_over_the_limit_is_413_however_it_is_framed(client, redis_conn, settings, send):
    limit = settings.max_body_bytes
    for size in (limit + 1, 3 * limit):
        response = send(client, event_of_size(size))
        assert_error(response, 413, "payload_too_large")
        message = response.get_json()["error"]["message"]
        assert message == f"The body is larger than the limit of {limit} bytes."
    assert queued(redis_conn) == 0
    assert send(client, event_of_size(limit)).status_code == 202


def test_unknown_path_and_wrong_method_use_the_error_shape(client):
    assert_error(client.get("/nope"), 404, "not_found")
    response = client.post("/v1/webhooks", data=b"{}")
    assert_error(response, 404, "not_found")
    message = response.get_json()["error"]["message"]
    assert message == f"Nothing is served at /v1/webhooks: the API posts webhooks to {PATH}."
    response = client.get(PATH)
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


def test_health_and_readiness(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200


def unreachable_redis():
    return redis.Redis(
        port=free_port(),
        socket_connect_timeout=0.2,
        socket_timeout=0.2,
        retry=Retry(NoBackoff(), 0),
    )


def test_redis_down_is_503_with_retry_after_and_nothing_recorded(settings, make_event, redis_conn):
    client = create_app(settings, connection=unreachable_redis()).test_client()
    body = json.dumps(make_event()).encode()
    response = post(client, body)
    assert_error(response, 503, "storage_unavailable")
    assert int(response.headers["Retry-After"]) > 0
    assert_error(client.get("/readyz"), 503, "storage_unavailable")
    # Once Redis is back the same event is accepted: nothing was marked seen.
    healthy = create_app(settings, connection=redis_conn).test_client()
    assert post(healthy, body).status_code == 202


def test_refuses_to_start_without_a_secret(redis_url):
    with pytest.raises(ConfigError, match="TW_WEBHOOK_SECRETS"):
        create_app(Settings(secrets=(), redis_url=redis_url))


def test_webhook_path_is_configurable(redis_conn, redis_url, make_event):
    settings = Settings(secrets=(TEST_SECRET,), redis_url=redis_url, webhook_path="/in")
    client = create_app(settings, connection=redis_conn).test_client()
    body = json.dumps(make_event()).encode()
    assert client.post("/in", data=body, headers=signed_headers(body)).status_code == 202
