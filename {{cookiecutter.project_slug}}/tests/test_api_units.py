"""The API client's pure parts: retry decisions, waits, error parsing, idempotency keys,
settings. Behaviour over HTTP is in test_api_client.py, against the sandbox."""

import time

import httpx
import pytest

from {{ cookiecutter.package_name }}.api import ApiError, SharedClient, handler_run
from {{ cookiecutter.package_name }}.api.errors import error_from_exception, error_from_response
from {{ cookiecutter.package_name }}.api.idempotency import deadline, next_key
from {{ cookiecutter.package_name }}.api.retries import (
    CAP_SECONDS,
    MAX_SERVER_WAIT_SECONDS,
    POLICY,
    server_wait,
)
from {{ cookiecutter.package_name }}.config import ConfigError, settings_from_env
from {{ cookiecutter.package_name }}.retry_policy import parse_seconds, should_retry


@pytest.mark.parametrize(
    ("status", "retried"),
    [(None, True), (409, True), (429, True), (500, True), (502, True), (503, True)]
    + [(s, False) for s in (400, 401, 403, 404, 410, 422)],
)
def test_retried_statuses_follow_the_docs(status, retried):
    assert should_retry(status) is retried


def test_backoff_doubles_with_jitter_and_a_cap():
    for retry in range(8):
        full = min(0.5 * 2**retry, CAP_SECONDS)
        waits = [POLICY.backoff(retry) for _ in range(200)]
        assert all(full / 2 <= w <= full for w in waits)
        assert max(waits) - min(waits) > full / 10  # jittered, not fixed


def response(status, headers=None, **kwargs):
    return httpx.Response(status, headers=headers or {}, **kwargs)


def test_server_wait_reads_retry_after_and_the_reset():
    now = 1_000_000.0
    assert server_wait(response(503, {"Retry-After": "3"}), now) == 3
    limited = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(now) + 2)}
    assert server_wait(response(200, limited), now) == 2
    assert server_wait(response(429, {**limited, "Retry-After": "1"}), now) == 1  # the lower
    assert server_wait(response(200, {**limited, "X-RateLimit-Remaining": "5"}), now) == 0
    assert server_wait(response(503, {"Retry-After": "86400"}), now) == MAX_SERVER_WAIT_SECONDS
    assert server_wait(response(503, {"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"}), now) == 0
    assert server_wait(None, now) == 0
    # Waited at least what the server asks, at least the backoff when it asks less.
    assert POLICY.delay(0, server_wait(response(503, {"Retry-After": "3"}))) == 3
    assert 0.25 <= POLICY.delay(0, server_wait(response(503, {"Retry-After": "0"}))) <= 0.5
    assert 0.25 <= POLICY.delay(0, server_wait(response(503))) <= 0.5


def test_the_policy_gives_up_on_final_answers_spent_retries_and_the_deadline():
    assert POLICY.next_wait(0, 503) is not None
    assert POLICY.next_wait(0, 404) is None
    assert POLICY.next_wait(4, None) is not None
    assert POLICY.next_wait(5, None) is None  # five retries, then the error
    assert POLICY.next_wait(0, 503, 3.0, now=100.0, deadline=103.5) == 3.0
    assert POLICY.next_wait(0, 503, 3.0, now=100.0, deadline=103.0) is None  # ends too late


def test_retry_after_in_seconds_only():
    assert [parse_seconds(v) for v in ("3", " 7 ", "1.5", "0")] == [3.0, 7.0, 1.5, 0.0]
    for other in (None, "", "soon", "-1", "nan", "inf", "1e3", "Wed, 21 Oct 2026 07:28:00 GMT"):
        assert parse_seconds(other) is None


def test_error_shape_is_parsed():
    body = {"error": {"code": "order_not_found", "message": "No such order", "requestId": "r_1"}}
    error = error_from_response(response(404, json=body))
    assert (error.status, error.code, error.message, error.request_id) == (
        404, "order_not_found", "No such order", "r_1",
    )  # fmt: skip
    assert str(error) == "HTTP 404 order_not_found: No such order (request r_1)"


def test_an_answer_without_the_error_shape_still_gives_an_api_error():
    error = error_from_response(response(502, {"X-Request-Id": "r_2"}, text="<html>Bad</html>"))
    assert (error.status, error.code, error.message, error.request_id) == (
        502, "http_502", "Bad Gateway", "r_2",
    )  # fmt: skip


def test_no_answer_is_an_api_error_with_a_code():
    request = httpx.Request("GET", "http://127.0.0.1:9/v1/health")
    refused = error_from_exception(httpx.ConnectError("refused", request=request))
    timed_out = error_from_exception(httpx.ReadTimeout("slow", request=request))
    assert (refused.status, refused.code) == (None, "network_error")
    assert (timed_out.status, timed_out.code) == (None, "timeout")
    assert "GET http://127.0.0.1:9/v1/health" in refused.message
    assert isinstance(refused, ApiError)


def test_keys_repeat_when_the_handler_runs_again():
    def run_once(event_id="evt_1", handler="h.book"):
        with handler_run(event_id, handler, time.monotonic() + 60):
            return [next_key("POST", "/v1/orders"), next_key("POST", "/v1/orders")]

    first = run_once()
    assert run_once() == first  # a re-run sends the same keys, in the same order
    assert first[0] != first[1]  # two writes of one run are two effects
    assert run_once(event_id="evt_2")[0] not in first
    assert run_once(handler="h.other")[0] not in first
    with handler_run("evt_1", "h.book", time.monotonic() + 60):
        assert next_key("PUT", "/v1/orders") != first[0]  # another call at that place


def test_outside_a_handler_every_write_gets_a_new_key():
    keys = {next_key("POST", "/v1/orders") for _ in range(100)}
    assert len(keys) == 100


def test_a_call_in_a_handler_ends_with_the_job():
    with handler_run("evt_1", "h", time.monotonic() + 5):
        assert deadline(60) == pytest.approx(time.monotonic() + 4, abs=0.1)  # a second early
    assert deadline(60) == pytest.approx(time.monotonic() + 60, abs=0.1)


def test_api_settings_from_the_environment():
    settings = settings_from_env(
        {
            "TW_API_BASE_URL": "http://127.0.0.1:8000/",
            "TW_API_CLIENT_ID": "id",
            "TW_API_CLIENT_SECRET": "secret",
            "TW_API_SCOPES": "orders.read, orders.write",
        }
    )
    assert settings.api_base_url == "http://127.0.0.1:8000"
    assert settings.api_scopes == ("orders.read", "orders.write")
    assert settings.require_api_credentials() == ("id", "secret")
    assert settings_from_env({}).api_base_url == "https://api.sandbox.wholesaletickets.ca"
    with pytest.raises(ConfigError, match="TW_API_BASE_URL"):
        settings_from_env({"TW_API_BASE_URL": "ftp://x"})


@pytest.mark.parametrize(
    ("env", "missing"),
    [({}, "TW_API_CLIENT_ID"), ({"TW_API_CLIENT_ID": "id"}, "TW_API_CLIENT_SECRET")],
)
def test_a_missing_credential_is_named_on_first_use(monkeypatch, tmp_path, env, missing):
    monkeypatch.chdir(tmp_path)  # no .env
    for name in ("TW_API_CLIENT_ID", "TW_API_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    api = SharedClient()  # building it needs nothing
    assert api.configured is False
    with pytest.raises(ConfigError, match=f"^{missing} is not set") as caught:
        api.get_order("ord_1")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("status", "raised"), [(200, False), (201, False), (429, True)])
def test_a_budget_redis_refuses_fails_only_a_429s_settle(redis_conn, status, raised):
    """An answer the budget cannot record (here its hash is of the wrong type) leaves the
    budget as it was and the call's own result stands; only a 429, whose pause every other
    process must honour before it asks again, cannot be let go."""
    from redis.exceptions import ResponseError

    from {{ cookiecutter.package_name }}.api.budget import Budget

    budget = Budget(redis_conn, "units")
    redis_conn.set(budget.keys[0], "not a hash")
    headers = {"X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "9"}
    answer = httpx.Response(status, headers=headers)
    if raised:
        with pytest.raises(ResponseError):
            budget.settle("ticket", answer)
    else:
        budget.settle("ticket", answer)
