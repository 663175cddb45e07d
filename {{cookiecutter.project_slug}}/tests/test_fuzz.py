"""Bad input, generated: whatever arrives, the exact answer, never a 5xx, never a secret in a log.

Hypothesis throws headers, bodies, sizes and encodings at the receiver (Flask's test
client, the real private Redis). For every input the test works out, from the sender's
contract and the envelope's rules alone (the oracles below, not the receiver's code),
which answer is right, and checks that it is the one given: the status and error code,
what is stored, and for an accepted event, an RQ job under its id. The app's last-resort
handler (the one that answers 500) must never fire.
"""

import json
import logging
import re
import string
import time

import pytest
import redis
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq.job import Job, validate_job_id
from rq.serializers import JSONSerializer

from {{ cookiecutter.package_name }} import logs
from {{ cookiecutter.package_name }}.app import create_app
from {{ cookiecutter.package_name }}.config import ConfigError, Settings
from {{ cookiecutter.package_name }}.dev.embedded_redis import free_port
from {{ cookiecutter.package_name }}.events import MAX_CREATED_AHEAD_SECONDS
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
TOLERANCE = Settings().tolerance_seconds

# Any byte a header can carry on the wire (HTTP has no way to send CR or LF in one).
header_text = st.text(st.characters(codec="latin-1", exclude_characters="\r\n"), max_size=300)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)

# --- the oracles: the right answer, from the contract ---------------------------------

ID_CHARS = frozenset(string.ascii_letters + string.digits + "_-")  # RQ's job id alphabet
TYPE_CHARS = ID_CHARS | {"."}


def expected_signature_failure(header: str | None, now: float) -> str:
    """The error code for a `TW-Signature` header that carries no valid signature: missing,
    malformed (entries are `key=value`, exactly one `t=` of whole seconds, at least one
    `v1=` and each 64 hex digits; other keys ignored), out of tolerance, or no match."""
    if header is None or not header.strip():
        return "signature_missing"
    if not header.isascii():
        return "signature_malformed"
    entries = [item.partition("=") for item in header.split(",")]
    if any(not sep or not key.strip() for key, sep, _ in entries):
        return "signature_malformed"
    stamps = [value.strip() for key, _, value in entries if key.strip() == "t"]
    signatures = [value.strip() for key, _, value in entries if key.strip() == "v1"]
    if len(stamps) != 1 or not re.fullmatch(r"[0-9]{1,12}", stamps[0]):
        return "signature_malformed"
    if not signatures or not all(re.fullmatch(r"[0-9a-fA-F]{64}", v) for v in signatures):
        return "signature_malformed"
    if abs(now - int(stamps[0])) >= TOLERANCE:
        return "timestamp_out_of_tolerance"
    return "signature_mismatch"


def is_envelope(value) -> bool:
    """An id of 1 to 128 of RQ's job id characters, a type of 1 to 128 of those or '.', a
    non-negative whole `created` at most MAX_CREATED_AHEAD_SECONDS ahead of the clock,
    and a `data` object."""
    if not isinstance(value, dict):
        return False
    event_id, event_type, created = value.get("id"), value.get("type"), value.get("created")
    return (
        isinstance(event_id, str)
        and 1 <= len(event_id) <= 128
        and set(event_id) <= ID_CHARS
        and isinstance(event_type, str)
        and 1 <= len(event_type) <= 128
        and set(event_type) <= TYPE_CHARS
        and type(created) is int
        and created >= 0
        and created - int(time.time()) <= MAX_CREATED_AHEAD_SECONDS
        and isinstance(value.get("data"), dict)
    )


def expected_for_signed(body: bytes) -> tuple[int, str | None]:
    """(status, error code) for a correctly signed body of at most the size limit."""
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return 400, "invalid_json"
    return (202, None) if is_envelope(value) else (400, "invalid_event")


# --- checks ----------------------------------------------------------------------------


def stored(redis_conn) -> int:
    """Everything an accepted event leaves behind: seen markers and queued jobs."""
    return len(redis_conn.keys("tw:seen:*")) + sum(
        redis_conn.llen(f"rq:queue:{name}") for name in ("orders", "prices", "other")
    )


def assert_answer(response, status, code):
    """The response is `status`, with error `code` in the API's shape (None: a success)."""
    assert response.status_code == status, response.get_data(as_text=True)
    payload = response.get_json(silent=True)
    assert isinstance(payload, dict)
    if code is None:
        assert "error" not in payload
    else:
        assert set(payload["error"]) == {"code", "message", "requestId"}
        assert payload["error"]["code"] == code


def assert_stored_as_answered(redis_conn, response, envelope):
    if response.status_code != 202:
        assert stored(redis_conn) == 0
        return
    assert stored(redis_conn) == 2  # the seen marker and the queued job
    validate_job_id(envelope["id"])  # an id RQ accepts, so a worker can run it
    job = Job.fetch(envelope["id"], connection=redis_conn, serializer=JSONSerializer)
    assert list(job.args) == [envelope]


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
def test_unsigned_or_badly_signed_requests_are_refused_with_the_right_code(
    client, redis_conn, no_500, headers, body
):
    response = client.post(PATH, data=body, headers=headers)
    assert_answer(response, 401, expected_signature_failure(headers.get(HEADER), time.time()))
    assert stored(redis_conn) == 0


# Timestamps near now, but never within 2 s of the tolerance's edge, where the moment the
# receiver reads its clock could decide: ("now", offset) is made into unix seconds late.
near_now = st.integers(-2 * TOLERANCE, 2 * TOLERANCE).filter(lambda d: abs(abs(d) - TOLERANCE) > 2)


@FUZZ
@given(
    t=st.one_of(
        near_now.map(lambda d: ("now", d)),
        near_now.map(lambda d: ("now", d)),
        st.integers(-(10**15), 10**15).map(str),
        header_text,
    ),
    v1=st.one_of(
        st.text("0123456789abcdefABCDEF", min_size=64, max_size=64),
        st.text("0123456789abcdefABCDEF", min_size=64, max_size=64),
        st.text("0123456789abcdefABCDEF", min_size=0, max_size=80),
        header_text,
    ),
    extra=st.lists(
        st.one_of(
            st.tuples(st.sampled_from(["v0", "scheme2"]), st.text("0123456789abcdef=; ")),
            st.tuples(st.sampled_from(["t", "v1", " v1 ", ""]), header_text),
            st.tuples(header_text, header_text),
        ),
        max_size=2,
    ),
    body=st.binary(max_size=512),
)
@example(t=("now", 0), v1="a" * 64, extra=[("v0", "x")], body=b"{}")  # a plain mismatch
@example(t=("now", -2 * TOLERANCE), v1="a" * 64, extra=[], body=b"{}")  # old
@example(t=("now", 2 * TOLERANCE), v1="a" * 64, extra=[], body=b"{}")  # in the future
@example(t=("now", 0), v1="a" * 64, extra=[("t", "1")], body=b"{}")  # two t=
def test_forged_signature_headers_never_get_in(client, redis_conn, no_500, t, v1, extra, body):
    if isinstance(t, tuple):
        t = str(int(time.time()) + t[1])
    header = ",".join([f"t={t}", f"v1={v1}", *(f"{k}={v}" for k, v in extra)])
    response = client.post(PATH, data=body, headers={HEADER: header})
    assert_answer(response, 401, expected_signature_failure(header, time.time()))
    assert stored(redis_conn) == 0


@FUZZ
@given(envelope=json_values, encoding=st.sampled_from(["utf-8", "utf-16", "latin-1", "utf-8-sig"]))
def test_signed_arbitrary_json_gets_the_right_answer(
    client, redis_conn, no_500, envelope, encoding
):
    redis_conn.flushdb()
    try:
        body = json.dumps(envelope, ensure_ascii=False).encode(encoding)
    except UnicodeEncodeError:
        body = json.dumps(envelope).encode(encoding)
    response = client.post(PATH, data=body, headers=signed_headers(body))
    assert_answer(response, *expected_for_signed(body))
    if response.status_code == 202:
        assert_stored_as_answered(redis_conn, response, json.loads(body))
    else:
        assert stored(redis_conn) == 0


def field(alphabet: frozenset, bad: str) -> st.SearchStrategy[str]:
    """Mostly strings of `alphabet` (of any length from 0 to past the limit of 128), some
    with one character of `bad` slipped in, some anything at all."""
    good = st.text(st.sampled_from(sorted(alphabet)), min_size=1, max_size=130)
    spoiled = st.tuples(good, st.sampled_from(bad), st.integers(0, 130)).map(
        lambda parts: parts[0][: parts[2]] + parts[1] + parts[0][parts[2] :]
    )
    return st.one_of(good, good, spoiled, st.text(max_size=140))  # and "" by the examples


@FUZZ
@given(
    event_id=field(ID_CHARS, ":./ *\u00e9\x00"),
    event_type=field(TYPE_CHARS, ":/ *\u00e9\x00"),
    created=st.one_of(
        st.integers(min_value=0),
        st.integers(min_value=0),
        # ("now", seconds from now): on either side of the bound on `created`, never within
        # 5 s of it, which the clock could cross between the oracle and the receiver.
        st.tuples(
            st.just("now"),
            st.integers(-MAX_CREATED_AHEAD_SECONDS, 3 * MAX_CREATED_AHEAD_SECONDS).filter(
                lambda ahead: abs(ahead - MAX_CREATED_AHEAD_SECONDS) > 5
            ),
        ),
        st.integers(),
        st.booleans(),
        st.floats(),
        st.text(max_size=5),
        st.none(),
    ),
    data=st.one_of(
        st.dictionaries(st.text(max_size=10), json_values, max_size=3),
        st.dictionaries(st.text(max_size=10), json_values, max_size=3),
        json_values,
    ),
)
@example(event_id="evt:1", event_type="order.created", created=1, data={})
@example(event_id="", event_type="order.created", created=1, data={})
@example(event_id="evt_1", event_type="", created=1, data={})
@example(event_id="e" * 128, event_type="t" * 128, created=0, data={})
@example(event_id="e" * 129, event_type="order.created", created=1, data={})
@example(event_id="evt_1", event_type="t" * 129, created=1, data={})
@example(event_id="evt_1", event_type="t", created=("now", MAX_CREATED_AHEAD_SECONDS - 60), data={})
@example(event_id="evt_1", event_type="t", created=("now", MAX_CREATED_AHEAD_SECONDS + 60), data={})
@example(event_id="evt_1", event_type="t", created=1_734_650_000_000, data={})  # milliseconds
@example(event_id="evt_1", event_type="t", created=10**300, data={})
def test_signed_envelopes_with_odd_fields_get_the_right_answer(
    client, redis_conn, no_500, event_id, event_type, created, data
):
    redis_conn.flushdb()
    if isinstance(created, tuple):
        created = int(time.time()) + created[1]
    envelope = {"id": event_id, "type": event_type, "created": created, "data": data}
    body = json.dumps(envelope).encode()
    response = client.post(PATH, data=body, headers=signed_headers(body))
    assert_answer(response, *expected_for_signed(body))
    assert_stored_as_answered(redis_conn, response, json.loads(body))


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
