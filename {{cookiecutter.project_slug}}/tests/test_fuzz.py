"""Bad input, generated: whatever arrives, never a 5xx, never a handler, never a secret in a log.

Hypothesis throws headers, bodies, sizes and encodings at the receiver (Flask's test
client, the real private Redis). Every answer must be the API's error shape or a success,
nothing may be queued without a valid signature, and the app's last-resort handler (the
one that answers 500) must never fire.
"""

import json
import logging
import time

import pytest
import redis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from redis.backoff import NoBackoff
from redis.retry import Retry

from {{ cookiecutter.package_name }} import logs
from {{ cookiecutter.package_name }}.app import create_app
from {{ cookiecutter.package_name }}.config import ConfigError, Settings
from {{ cookiecutter.package_name }}.embedded_redis import free_port
from {{ cookiecutter.package_name }}.signature import HEADER, compute_signature, sign
from {{ cookiecutter.package_name }}.testing import TEST_SECRET, make_event, signed_headers

FUZZ = hypothesis_settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PATH = Settings().webhook_path
OTHER_SECRET = "whsec_other_rotating_secret"

# Any byte a header can carry on the wire (HTTP has no way to send CR or LF in one).
header_text = st.text(st.characters(codec="latin-1", exclude_characters="\r\n"), max_size=300)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


def stored(redis_conn) -> int:
    """Everything an accepted event leaves behind: seen markers and queued jobs."""
    return len(redis_conn.keys("tw:seen:*")) + sum(
        redis_conn.llen(f"rq:queue:{name}") for name in ("orders", "prices", "other")
    )


def assert_well_formed(response):
    assert response.status_code < 500, response.get_data(as_text=True)
    payload = response.get_json(silent=True)
    assert isinstance(payload, dict)
    if response.status_code >= 400:
        assert set(payload["error"]) == {"code", "message", "requestId"}


@pytest.fixture
def no_500(caplog):
    """Fails the test if the app's last-resort 500 handler logged anything."""
    caplog.set_level(logging.ERROR, logger="{{ cookiecutter.package_name }}.app")
    yield
    assert not [r for r in caplog.records if "unexpected error" in r.getMessage()]


@FUZZ
@given(
    headers=st.dictionaries(
        st.sampled_from([HEADER, "Content-Type", "Content-Length-X", "X-Forwarded-For"]),
        header_text,
    ),
    body=st.binary(max_size=2048),
)
def test_unsigned_or_badly_signed_requests_are_4xx_and_store_nothing(
    client, redis_conn, no_500, headers, body
):
    response = client.post(PATH, data=body, headers=headers)
    assert_well_formed(response)
    assert response.status_code in (400, 401, 413)
    assert stored(redis_conn) == 0


@FUZZ
@given(
    t=st.one_of(st.integers(-(10**15), 10**15).map(str), header_text),
    v1=st.one_of(st.text("0123456789abcdefABCDEF", min_size=0, max_size=80), header_text),
    extra=st.lists(st.tuples(header_text, header_text), max_size=3),
    body=st.binary(max_size=512),
)
def test_forged_signature_headers_never_get_in(client, redis_conn, no_500, t, v1, extra, body):
    parts = [f"t={t}", f"v1={v1}", *(f"{k}={v}" for k, v in extra)]
    response = client.post(PATH, data=body, headers={HEADER: ",".join(parts)})
    assert_well_formed(response)
    assert response.status_code in (400, 401)
    assert stored(redis_conn) == 0


@FUZZ
@given(envelope=json_values, encoding=st.sampled_from(["utf-8", "utf-16", "latin-1", "utf-8-sig"]))
def test_signed_arbitrary_json_is_accepted_or_a_4xx(client, redis_conn, no_500, envelope, encoding):
    redis_conn.flushdb()
    try:
        body = json.dumps(envelope, ensure_ascii=False).encode(encoding)
    except UnicodeEncodeError:
        body = json.dumps(envelope).encode(encoding)
    response = client.post(PATH, data=body, headers=signed_headers(body))
    assert_well_formed(response)
    assert response.status_code in (202, 400)
    assert stored(redis_conn) == (2 if response.status_code == 202 else 0)


@FUZZ
@given(
    event_id=st.text(max_size=140),
    event_type=st.text(max_size=140),
    created=st.one_of(st.integers(), st.floats(), st.text(max_size=5), st.none()),
    data=json_values,
)
def test_signed_envelopes_with_odd_fields(
    client, redis_conn, no_500, event_id, event_type, created, data
):
    redis_conn.flushdb()
    envelope = {"id": event_id, "type": event_type, "created": created, "data": data}
    body = json.dumps(envelope).encode()
    response = client.post(PATH, data=body, headers=signed_headers(body))
    assert_well_formed(response)
    assert response.status_code in (202, 400)


def test_body_limit_is_413_even_when_signed(client, redis_conn, settings):
    body = b'{"id": "evt_big", "pad": "' + b"x" * settings.max_body_bytes + b'"}'
    response = client.post(PATH, data=body, headers=signed_headers(body))
    assert response.status_code == 413
    assert stored(redis_conn) == 0


def test_a_replayed_old_signature_is_refused(client, redis_conn):
    body = json.dumps(make_event()).encode()
    stale = int(time.time()) - 301
    response = client.post(PATH, data=body, headers=signed_headers(body, timestamp=stale))
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "timestamp_out_of_tolerance"
    assert stored(redis_conn) == 0


def test_secrets_never_reach_a_log_line(settings, redis_conn, caplog, capsys):
    """Drive every path that logs (accepted, duplicate, each rejection, Redis down, a
    missing secret) with the text and JSON formats, then grep all of it for the secrets."""
    secrets = (TEST_SECRET, OTHER_SECRET)
    rotating = Settings(**{**settings.__dict__, "secrets": secrets})
    caplog.set_level(logging.DEBUG)
    for log_format in ("text", "json"):
        logs.configure(log_format, "DEBUG")
        client = create_app(rotating, connection=redis_conn).test_client()
        event = make_event()
        body = json.dumps(event).encode()
        for headers in (
            signed_headers(body),
            signed_headers(body),  # duplicate
            {HEADER: sign(body, "whsec_wrong")},
            {HEADER: f"t={int(time.time())},v1={compute_signature(OTHER_SECRET, 1, body)}"},
            {HEADER: "garbage"},
            {},
        ):
            client.post(PATH, data=body, headers=headers)
        client.post(PATH, data=b"not json", headers=signed_headers(b"not json"))
        down = redis.Redis(
            port=free_port(), socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
        )
        fresh = json.dumps(make_event()).encode()
        create_app(rotating, connection=down).test_client().post(
            PATH, data=fresh, headers=signed_headers(fresh)
        )
        with pytest.raises(ConfigError) as missing:
            create_app(Settings(redis_url=settings.redis_url), connection=redis_conn)
        logging.getLogger("probe").error("config error: %s", missing.value)
    logging.getLogger().handlers.clear()
    captured = capsys.readouterr()
    text = "\n".join(
        [captured.out, captured.err, caplog.text]
        + [repr(r.args) + repr(r.__dict__) for r in caplog.records]
    )
    assert "not stored" in text and "TW_WEBHOOK_SECRETS" in text  # the paths did log
    for secret in secrets:
        assert secret not in text


def test_a_job_naming_another_function_is_refused_by_the_worker(redis_conn, settings, tmp_path):
    """Someone with write access to Redis queues `os.system`: the worker must not call it."""
    from rq.registry import FailedJobRegistry

    from {{ cookiecutter.package_name }}.intake import open_queues
    from {{ cookiecutter.package_name }}.testing import run_worker

    marker = tmp_path / "pwned"
    queue = open_queues(redis_conn)["orders"]
    job = queue.enqueue("os.system", f"touch {marker}")
    run_worker(redis_conn, settings)
    assert not marker.exists()
    assert job.id in FailedJobRegistry(queue=queue).get_job_ids()
