"""The API sandbox over real HTTP: tokens and scopes, pages, orders, idempotency keys, the
rate limit, injected faults, the error shape and the stats, as a client sees them."""

import base64
import json
import sys
import threading
import time

import httpx
import pytest
from clocks import FakeClock
from processes import PACKAGE, PROJECT_ROOT, project_env, running, wait_for
from processes import cli as command

from {{ cookiecutter.package_name }} import cli
from {{ cookiecutter.package_name }}.dev.embedded_redis import free_port
from {{ cookiecutter.package_name }}.sandbox import Options

ORDER = {"items": [{"listingId": "lst_7Qm2Floor", "quantity": 2}]}
# One transport for every client of these tests: building one loads the CA bundle, which
# takes longer than the requests themselves.
TRANSPORT = httpx.HTTPTransport()
HTTP = httpx.Client(transport=TRANSPORT)


def get_token(api, scope=None, client_id=None, client_secret=None):
    body = {
        "client_id": client_id or api.client_id,
        "client_secret": client_secret or api.client_secret,
        "grant_type": "client_credentials",
    }
    if scope is not None:
        body["scope"] = scope
    return HTTP.post(api.url + "/v1/oauth/token", json=body)


def connect(api, scope=None, **credentials) -> httpx.Client:
    """A client holding a fresh token of `api`."""
    answer = get_token(api, scope, **credentials)
    assert answer.status_code == 200, answer.text
    headers = {"Authorization": "Bearer " + answer.json()["access_token"]}
    return httpx.Client(base_url=api.url, headers=headers, transport=TRANSPORT)


def assert_error(answer, status, code):
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert error["requestId"] == answer.headers["X-Request-Id"]
    assert error["requestId"].startswith("req_")


# --- tokens ----------------------------------------------------------------------------


def test_token_as_the_docs_show_it(sandbox):
    answer = get_token(sandbox)
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "inventory.read orders.read orders.write"
    assert answer.headers["Cache-Control"] == "no-store"
    narrow = get_token(sandbox, scope="orders.write inventory.read").json()
    assert narrow["scope"] == "inventory.read orders.write"
    assert sandbox.stats()["tokensIssued"] == 2


def test_token_refusals(sandbox):
    assert_error(get_token(sandbox, client_secret="wrong"), 401, "invalid_client")
    assert_error(get_token(sandbox, client_id="nobody"), 401, "invalid_client")
    assert_error(get_token(sandbox, scope="orders.delete"), 400, "invalid_scope")
    assert_error(get_token(sandbox, scope=""), 400, "invalid_scope")
    grant = {"client_id": sandbox.client_id, "client_secret": sandbox.client_secret}
    url = sandbox.url + "/v1/oauth/token"
    assert_error(HTTP.post(url, json=grant), 400, "unsupported_grant_type")
    form = {**grant, "grant_type": "client_credentials"}
    assert_error(HTTP.post(url, data=form), 400, "invalid_request")  # JSON, not a form
    assert sandbox.stats()["tokensIssued"] == 0


def test_scopes_are_enforced_per_endpoint(sandbox):
    reader = connect(sandbox, scope="inventory.read")
    assert reader.get("/v1/inventory/search", params={"eventId": "12345"}).status_code == 200
    assert reader.get("/v1/health").status_code == 200  # any valid token
    assert_error(reader.post("/v1/orders", json=ORDER), 403, "insufficient_scope")
    assert_error(reader.get("/v1/orders"), 403, "insufficient_scope")
    writer = connect(sandbox, scope="orders.write")
    order = writer.post("/v1/orders", json=ORDER).json()
    assert_error(writer.get(f"/v1/orders/{order['id']}"), 403, "insufficient_scope")


def test_tokens_expire_and_unknown_ones_are_refused(start_sandbox):
    api = start_sandbox(token_ttl=1)
    api.state.tokens.clock = clock = FakeClock(time.time())
    client = connect(api)
    assert client.get("/v1/health").status_code == 200
    clock.advance(0.99)
    assert client.get("/v1/health").status_code == 200  # to the end of its second
    clock.advance(0.01)
    expired = client.get("/v1/health")
    assert_error(expired, 401, "token_expired")
    assert expired.headers["WWW-Authenticate"].startswith("Bearer")
    assert_error(HTTP.get(api.url + "/v1/health"), 401, "missing_token")
    forged = {"Authorization": "Bearer tok_forged"}
    assert_error(HTTP.get(api.url + "/v1/health", headers=forged), 401, "invalid_token")
    assert connect(api).get("/v1/health").status_code == 200  # a new token works


def test_health(sandbox):
    answer = connect(sandbox).get("/v1/health")
    assert answer.status_code == 200
    assert answer.json()["status"] == "ok"
    assert abs(answer.json()["time"] - time.time()) < 5


# --- inventory -------------------------------------------------------------------------


def test_pages_cover_every_seat_of_the_show_exactly_once(sandbox):
    client = connect(sandbox)
    seen, pages, cursor = [], 0, None
    while True:
        params = {"eventId": "12345", "limit": 7, **({"cursor": cursor} if cursor else {})}
        answer = client.get("/v1/inventory/search", params=params)
        assert answer.status_code == 200
        body = answer.json()
        assert set(body) == {"items", "nextCursor"}
        assert len(body["items"]) <= 7
        seen += body["items"]
        pages += 1
        cursor = body["nextCursor"]
        if cursor is None:
            break
        assert json.loads(base64.urlsafe_b64decode(cursor)) == {"id": seen[-1]["listingId"]}
    assert pages == 10  # 70 listings, 7 a page
    assert len({item["listingId"] for item in seen}) == len(seen) == 70
    assert {item["eventId"] for item in seen} == {"12345"}
    assert sum(item["available"] for item in seen) == 1040 == sandbox.store.seats_left("12345")
    floor = client.get("/v1/inventory/search", params={"eventId": "12345", "section": "floor"})
    assert [item["row"] for item in floor.json()["items"]] == list("ABCDEFGHIJ")
    assert floor.json()["items"][0]["price"] == {"amount": 12500, "currency": "CAD"}
    other = client.get("/v1/inventory/search", params={"eventId": "99999"}).json()
    assert other == {"items": [], "nextCursor": None}


def test_search_refuses_bad_parameters(sandbox):
    client = connect(sandbox)
    search = "/v1/inventory/search"
    assert_error(client.get(search), 400, "missing_parameter")
    for limit in ("0", "101", "ten", "-1"):
        answer = client.get(search, params={"eventId": "12345", "limit": limit})
        assert_error(answer, 400, "invalid_parameter")
    for cursor in ("not base64!", base64.b64encode(b"[1]").decode(), "eyJpZCI6ICJ4In0="):
        answer = client.get(search, params={"eventId": "12345", "cursor": cursor})
        assert_error(answer, 400, "invalid_cursor")


# --- orders ----------------------------------------------------------------------------


def test_order_create_get_and_list(sandbox):
    client = connect(sandbox)
    created = client.post("/v1/orders", json=ORDER)
    assert created.status_code == 201
    order = created.json()
    assert order["id"].startswith("ord_")
    assert order["status"] == "created"
    assert order["eventId"] == "12345"
    assert order["items"] == [{
        "listingId": "lst_7Qm2Floor", "section": "Floor", "row": "A", "quantity": 2,
        "unitPrice": {"amount": 12500, "currency": "CAD"},
    }]  # fmt: skip
    assert order["total"] == {"amount": 25000, "currency": "CAD"}
    assert order["createdAt"] == order["updatedAt"]
    assert client.get(f"/v1/orders/{order['id']}").json() == order
    assert sandbox.store.seats_left("12345") == 1038
    more = [client.post("/v1/orders", json=ORDER).json()["id"] for _ in range(4)]
    listed, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/orders", params=params).json()
        listed += [item["id"] for item in page["items"]]
        if not (cursor := page["nextCursor"]):
            break
    orders = [client.get(f"/v1/orders/{id_}").json() for id_ in [order["id"], *more]]
    newest_first = sorted(orders, key=lambda o: (o["updatedAt"], o["id"]), reverse=True)
    assert listed == [o["id"] for o in newest_first]  # newest change first, then by id
    assert sandbox.stats()["orders"] == 5
    assert_error(client.get("/v1/orders/ord_missing"), 404, "order_not_found")


def test_orders_belong_to_their_client(start_sandbox):
    api = start_sandbox(extra_clients={"other-client": "other-secret"})
    mine = connect(api).post("/v1/orders", json=ORDER).json()
    theirs = connect(api, client_id="other-client", client_secret="other-secret")
    assert_error(theirs.get(f"/v1/orders/{mine['id']}"), 404, "order_not_found")
    assert theirs.get("/v1/orders").json() == {"items": [], "nextCursor": None}


FLOOR_A, SMALL_SHOW = "lst_7Qm2Floor", "lst_34567_floor_a"  # 20 seats / 2 seats


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"not json", 400, "invalid_json"),
        (b"[]", 400, "invalid_json"),
        ({}, 422, "validation_failed"),
        ({"items": []}, 422, "validation_failed"),
        ({"items": [{"listingId": FLOOR_A, "quantity": 0}]}, 422, "validation_failed"),
        ({"items": [{"listingId": FLOOR_A, "quantity": 1.5}]}, 422, "validation_failed"),
        ({"items": [{"listingId": FLOOR_A, "quantity": True}]}, 422, "validation_failed"),
        ({"items": [{"quantity": 1}]}, 422, "validation_failed"),
        ({"items": [FLOOR_A]}, 422, "validation_failed"),
        ({"items": [{"listingId": "lst_nope", "quantity": 1}]}, 422, "unknown_listing"),
        ({"items": [{"listingId": SMALL_SHOW, "quantity": 3}]}, 422, "insufficient_seats"),
    ],
)
def test_bad_orders_are_refused_and_take_no_seat(sandbox, body, status, code):
    client = connect(sandbox)
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    answer = client.post("/v1/orders", content=raw, headers={"Content-Type": "application/json"})
    assert_error(answer, status, code)
    assert sandbox.stats()["orders"] == 0
    assert sandbox.store.seats_left("12345") == 1040
    assert sandbox.store.seats_left("34567") == 2


def test_orders_of_two_shows_or_twice_one_listing_are_refused(sandbox):
    client = connect(sandbox)
    mixed = {"items": [ORDER["items"][0], {"listingId": "lst_34567_floor_a", "quantity": 1}]}
    assert_error(client.post("/v1/orders", json=mixed), 422, "mixed_events")
    twice = {"items": ORDER["items"] * 2}
    assert_error(client.post("/v1/orders", json=twice), 422, "validation_failed")
    assert sandbox.store.seats_left("34567") == 2


def test_confirm_fulfill_and_cancel(sandbox):
    client = connect(sandbox)
    first = client.post("/v1/orders", json=ORDER).json()
    confirmed = client.post(f"/v1/orders/{first['id']}/confirm")
    assert confirmed.status_code == 200
    assert confirmed.json()["status"] == "confirmed"
    assert_error(client.post(f"/v1/orders/{first['id']}/confirm"), 422, "invalid_state")
    assert client.post(f"/v1/orders/{first['id']}/fulfill").json()["status"] == "fulfilled"
    assert_error(client.post(f"/v1/orders/{first['id']}/cancel"), 422, "invalid_state")
    second = client.post("/v1/orders", json=ORDER).json()
    assert sandbox.store.seats_left("12345") == 1036
    assert client.post(f"/v1/orders/{second['id']}/cancel").json()["status"] == "cancelled"
    assert sandbox.store.seats_left("12345") == 1038  # the cancelled seats are back
    assert client.get("/v1/orders", params={"status": "cancelled"}).json()["items"] == [
        client.get(f"/v1/orders/{second['id']}").json()
    ]
    assert_error(client.post("/v1/orders/ord_missing/cancel"), 404, "order_not_found")


def test_price_change_control(sandbox):
    url = sandbox.url + "/_sandbox/listings/lst_7Qm2Floor/price"
    answer = HTTP.put(url, json={"amount": 13000})
    assert answer.status_code == 200
    assert answer.json()["price"] == {"amount": 13000, "currency": "CAD"}
    assert answer.json()["previousPrice"] == {"amount": 12500, "currency": "CAD"}
    order = connect(sandbox).post("/v1/orders", json=ORDER).json()
    assert order["total"]["amount"] == 26000
    assert_error(HTTP.put(url, json={"amount": 0}), 422, "validation_failed")
    missing = sandbox.url + "/_sandbox/listings/lst_nope/price"
    assert_error(HTTP.put(missing, json={"amount": 100}), 404, "listing_not_found")


# --- idempotency -----------------------------------------------------------------------


def key(value):
    return {"Idempotency-Key": value}


def test_same_key_same_body_answers_the_first_response(sandbox):
    client = connect(sandbox)
    first = client.post("/v1/orders", json=ORDER, headers=key("order-1"))
    again = client.post("/v1/orders", json=ORDER, headers=key('"order-1"'))  # sf-string
    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert sandbox.stats()["orders"] == 1
    assert sandbox.stats()["idempotentReplays"] == 1
    assert sandbox.store.seats_left("12345") == 1038
    # The same data in another key order and spacing is the same request.
    reordered = b'{"items":[{"quantity":2,"listingId":"lst_7Qm2Floor"}]}'
    headers = {**key("order-1"), "Content-Type": "application/json"}
    assert client.post("/v1/orders", content=reordered, headers=headers).content == first.content
    confirm = f"/v1/orders/{first.json()['id']}/confirm"
    assert client.post(confirm, headers=key("confirm-1")).status_code == 200
    assert client.post(confirm, headers=key("confirm-1")).json()["status"] == "confirmed"


def test_same_key_other_body_is_422_and_keys_are_per_client(start_sandbox):
    api = start_sandbox(extra_clients={"other-client": "other-secret"})
    client = connect(api)
    assert client.post("/v1/orders", json=ORDER, headers=key("k")).status_code == 201
    other_body = {"items": [{"listingId": "lst_7Qm2Floor", "quantity": 3}]}
    assert_error(client.post("/v1/orders", json=other_body, headers=key("k")), 422,
                 "idempotency_key_reused")  # fmt: skip
    other_path = client.post("/v1/orders/ord_x/cancel", headers=key("k"))
    assert_error(other_path, 422, "idempotency_key_reused")
    other = connect(api, client_id="other-client", client_secret="other-secret")
    assert other.post("/v1/orders", json=ORDER, headers=key("k")).status_code == 201
    assert api.stats()["orders"] == 2
    for bad in ("", '""', "x" * 256):
        assert_error(client.post("/v1/orders", json=ORDER, headers=key(bad)), 400,
                     "invalid_idempotency_key")  # fmt: skip


def test_refused_requests_are_not_stored_under_their_key(sandbox):
    client = connect(sandbox)
    too_many = {"items": [{"listingId": "lst_34567_floor_a", "quantity": 3}]}
    assert_error(client.post("/v1/orders", json=too_many, headers=key("k")), 422,
                 "insufficient_seats")  # fmt: skip
    # The key was released: the same key now runs its (other) request.
    assert client.post("/v1/orders", json=ORDER, headers=key("k")).status_code == 201


def test_a_key_still_in_flight_is_409_then_replayed(start_sandbox):
    api = start_sandbox(latency_ms=400)
    client = connect(api)
    first = {}
    thread = threading.Thread(
        target=lambda: first.update(answer=client.post("/v1/orders", json=ORDER, headers=key("k")))
    )
    thread.start()
    time.sleep(0.15)
    assert_error(client.post("/v1/orders", json=ORDER, headers=key("k")), 409,
                 "idempotency_key_in_use")  # fmt: skip
    thread.join()
    assert first["answer"].status_code == 201
    replay = client.post("/v1/orders", json=ORDER, headers=key("k"))
    assert replay.content == first["answer"].content
    assert api.stats()["orders"] == 1


def test_idempotency_records_expire(start_sandbox):
    api = start_sandbox(idempotency_ttl=1)
    api.state.keys.clock = clock = FakeClock()
    client = connect(api)
    first = client.post("/v1/orders", json=ORDER, headers=key("k")).json()
    clock.advance(0.99)
    assert client.post("/v1/orders", json=ORDER, headers=key("k")).json() == first  # kept
    clock.advance(0.01)
    second = client.post("/v1/orders", json=ORDER, headers=key("k")).json()
    assert second["id"] != first["id"]


# --- rate limit ------------------------------------------------------------------------


def windows_on(api, clock: FakeClock) -> int:
    """Let the sandbox's rate limiter read `clock`, so that its one-second windows turn
    when the test moves it; the window it stands at the start of."""
    api.state.limiter.clock = clock
    return int(clock())


def test_rate_limit_per_client_per_second(start_sandbox):
    api = start_sandbox(rate_limit=5, extra_clients={"other-client": "other-secret"})
    client, other = (
        connect(api),
        connect(api, client_id="other-client", client_secret="other-secret"),
    )
    clock = FakeClock(1_734_650_000.0)
    window = windows_on(api, clock)
    answers = [client.get("/v1/health") for _ in range(8)]
    assert [a.status_code for a in answers] == [200] * 5 + [429] * 3
    for answer in answers:
        assert answer.headers["X-RateLimit-Limit"] == "5"
        assert answer.headers["X-RateLimit-Reset"] == str(window + 1)
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == list("43210000")
    assert_error(answers[-1], 429, "rate_limited")
    assert answers[-1].json()["error"]["message"] == "Too many requests"
    assert answers[-1].headers["Retry-After"] == "1"
    assert other.get("/v1/health").status_code == 200  # a budget of its own
    clock.advance(0.99)  # the same window to its end: still refused, until the reset
    late = client.get("/v1/health")
    assert (late.status_code, late.headers["X-RateLimit-Reset"]) == (429, str(window + 1))
    assert late.headers["Retry-After"] == "1"
    clock.advance(0.01)
    after = client.get("/v1/health")
    assert after.status_code == 200
    assert after.headers["X-RateLimit-Remaining"] == "4"
    assert after.headers["X-RateLimit-Reset"] == str(window + 2)
    assert api.stats()["byStatus"]["429"] == 4


def test_rate_limited_writes_are_not_stored(start_sandbox):
    api = start_sandbox(rate_limit=2)
    client = connect(api)
    clock = FakeClock(1_734_650_000.0)
    windows_on(api, clock)
    client.get("/v1/health"), client.get("/v1/health")
    assert_error(client.post("/v1/orders", json=ORDER, headers=key("k")), 429, "rate_limited")
    clock.advance(1.0)
    assert client.post("/v1/orders", json=ORDER, headers=key("k")).status_code == 201
    assert api.stats()["orders"] == 1


def test_the_sandbox_windows_are_the_wall_clock_seconds(sandbox):
    """The real clock's whole seconds, as `X-RateLimit-Reset` says (the tests above move a
    clock of their own)."""
    before = time.time()
    answer = connect(sandbox).get("/v1/health")
    reset = int(answer.headers["X-RateLimit-Reset"])
    assert int(before) + 1 <= reset <= int(time.time()) + 1


# --- faults and latency ----------------------------------------------------------------


def test_injected_faults_hit_the_asked_share_but_not_the_token(start_sandbox):
    api = start_sandbox(fail_rate=0.3, seed=7, rate_limit=10_000)
    tokens = [get_token(api).status_code for _ in range(10)]
    assert tokens == [200] * 10
    client = connect(api)
    statuses = [client.get("/v1/health").status_code for _ in range(200)]
    faults = [s for s in statuses if s != 200]
    assert set(faults) <= {500, 503} and {500, 503} <= set(faults)
    assert 0.2 <= len(faults) / len(statuses) <= 0.4  # 3 standard deviations
    assert api.stats()["faultsInjected"] == len(faults)
    unavailable = next(
        a for a in iter(lambda: client.get("/v1/health"), None) if a.status_code == 503
    )
    assert_error(unavailable, 503, "service_unavailable")
    assert unavailable.headers["Retry-After"] == "1"


def test_a_faulted_write_does_nothing_and_its_key_stays_free(start_sandbox):
    api = start_sandbox(fail_rate=1.0)
    client = connect(api)
    answer = client.post("/v1/orders", json=ORDER, headers=key("k"))
    assert answer.status_code in (500, 503)
    assert api.stats()["orders"] == 0
    assert api.state.keys.begin(api.client_id, "k", "any") is None  # never held


def test_faults_on_the_token_endpoint_when_asked(start_sandbox):
    api = start_sandbox(fail_rate=1.0, fail_token=True)
    assert get_token(api).status_code in (500, 503)


def test_latency_is_added(start_sandbox):
    api = start_sandbox(latency_ms=150, latency_jitter_ms=50, seed=1)
    client = connect(api)
    started = time.perf_counter()
    client.get("/v1/health")
    assert 0.15 <= time.perf_counter() - started < 1.0


# --- shape and stats -------------------------------------------------------------------


def test_every_answer_carries_a_request_id_and_the_rate_headers(sandbox):
    client = connect(sandbox)
    answers = [
        client.get("/v1/health"),
        client.get("/v1/nothing"),
        client.delete("/v1/orders"),
        client.post("/v1/orders", json=ORDER),
    ]
    for answer in answers:
        assert answer.headers["X-Request-Id"].startswith("req_")
        for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"):
            assert answer.headers[name].isdigit()
    assert len({a.headers["X-Request-Id"] for a in answers}) == 4
    assert_error(answers[1], 404, "not_found")
    assert_error(answers[2], 405, "method_not_allowed")


def test_stats_count_api_requests_by_status(sandbox):
    client = connect(sandbox)  # 200
    client.post("/v1/orders", json=ORDER)  # 201
    client.post("/v1/orders", json=ORDER)  # 201
    client.get("/v1/orders/ord_missing")  # 404
    HTTP.get(sandbox.url + "/v1/health")  # 401
    stats = HTTP.get(sandbox.url + "/_sandbox/stats")
    assert stats.status_code == 200
    body = stats.json()
    assert body["requests"] == 5
    assert body["byStatus"] == {"200": 1, "201": 2, "401": 1, "404": 1}
    assert body["orders"] == 2
    assert body["webhooks"] is None
    assert "X-RateLimit-Limit" not in stats.headers  # a control, not counted
    assert HTTP.get(sandbox.url + "/_sandbox/stats").json()["requests"] == 5


def test_options_refuse_nonsense():
    for bad in ({"rate_limit": 0}, {"fail_rate": 1.5}, {"token_ttl": 0}, {"latency_ms": -1}):
        with pytest.raises(ValueError):
            Options(**bad)
    with pytest.raises(ValueError, match="webhook_secret"):
        Options(webhook_url="http://127.0.0.1:1/webhooks")
    with pytest.raises(ValueError, match="http"):
        Options(webhook_url="127.0.0.1:1/webhooks", webhook_secret="s")


def test_sandbox_command_refuses_bad_options_in_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.delenv("TW_WEBHOOK_SECRETS", raising=False)
    with pytest.raises(SystemExit) as exited:
        cli.main(["sandbox", "--fail-rate", "1.5"])
    assert exited.value.code == 2
    assert "want a number from 0 to 1, got '1.5'" in capsys.readouterr().err
    assert cli.main(["sandbox", "--webhook-url", "http://127.0.0.1:1/webhooks"]) == 2
    assert capsys.readouterr().err.startswith("error: TW_WEBHOOK_SECRETS is not set")
    monkeypatch.setenv("TW_WEBHOOK_SECRETS", "whsec_x")
    assert cli.main(["sandbox", "--webhook-url", "127.0.0.1:1/webhooks"]) == 2
    assert "webhook URL must start with http:// or https://" in capsys.readouterr().err


def test_the_sandbox_command_holds_the_sample_orders(tmp_path, redis_url):
    """Replayed under `dev --sandbox`, a sample's order can be fetched: the `sandbox`
    command holds the orders the sample events speak of, as they speak of them."""
    samples = [
        json.loads(path.read_text())["data"]["object"]
        for path in sorted((PROJECT_ROOT / "samples" / "events").glob("*.json"))
    ]
    orders = {order["id"]: order for order in samples if order.get("id", "").startswith("ord_")}
    port = free_port()
    command = [sys.executable, "-m", PACKAGE, "sandbox", "--port", str(port)]
    log = tmp_path / "sandbox.log"
    with running(command, project_env(redis_url), log) as process:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: "API sandbox on" in log.read_text() or process.poll() is not None)
        with httpx.Client(base_url=url) as client:
            token = client.post("/v1/oauth/token", json={
                "client_id": "sandbox-client", "client_secret": "sandbox-secret",
                "grant_type": "client_credentials",
            }).json()["access_token"]  # fmt: skip
            client.headers["Authorization"] = f"Bearer {token}"
            fetched = {order_id: client.get(f"/v1/orders/{order_id}") for order_id in orders}
    assert len(orders) == 2
    for order_id, response in fetched.items():
        assert response.status_code == 200, response.text
        order, sample = response.json(), orders[order_id]
        for name in ("eventId", "items", "total", "createdAt"):
            assert order[name] == sample[name], name


def test_a_sandbox_in_tests_starts_without_orders(sandbox):
    assert sandbox.stats()["orders"] == 0


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1"])
def test_the_sandbox_command_refuses_a_public_host(host, redis_url, tmp_path):
    env = project_env(redis_url)
    env.pop("TW_API_CLIENT_SECRET", None)
    refused = command("sandbox", "--host", host, "--port", "0", env=env, cwd=tmp_path, timeout=30)
    assert refused.returncode == 2
    assert refused.stderr.startswith(f"error: the sandbox may listen on {host} only with --public")
    assert refused.stderr.count("\n") == 1
    # --public is not enough with the published default secret.
    public = command("sandbox", "--host", host, "--public", env=env, cwd=tmp_path, timeout=30)
    assert public.returncode == 2
    assert public.stderr.startswith("error: TW_API_CLIENT_SECRET is not set")
