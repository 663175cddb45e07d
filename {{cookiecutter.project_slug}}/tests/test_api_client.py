"""The API client over real HTTP against the sandbox, with the project's private Redis."""

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from processes import PROJECT_ROOT, project_env

from {{ cookiecutter.package_name }}.api import ApiError, Client, handler_run
from {{ cookiecutter.package_name }}.dev.embedded_redis import free_port
from {{ cookiecutter.package_name }}.sandbox import Options, running

SHOW = "12345"  # the sandbox's seeded show


@pytest.fixture
def make_client(redis_conn):
    clients = []

    def make(sandbox=None, **options):
        options.setdefault("retry_base", 0.05)
        if sandbox is not None:
            options.setdefault("base_url", sandbox.url)
            options.setdefault("client_id", sandbox.client_id)
            options.setdefault("client_secret", sandbox.client_secret)
        client = Client(connection=redis_conn, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def test_one_token_serves_many_calls_and_clients(sandbox, make_client):
    first, second = make_client(sandbox), make_client(sandbox)
    for _ in range(3):
        assert first.health()
        assert second.health()
    stats = sandbox.stats()
    assert stats["tokensIssued"] == 1
    assert stats["byStatus"] == {"200": 7}  # the token request and six calls


def test_worker_processes_share_one_token(sandbox, redis_url):
    code = (
        "import sys, redis\n"
        "from {{ cookiecutter.package_name }}.api.client import Client\n"
        "url, client_id, secret, redis_url = sys.argv[1:]\n"
        "client = Client(url, client_id, secret, redis.Redis.from_url(redis_url))\n"
        "client.health()\n"
        "print(client.http.auth._local.value)\n"
    )
    args = [sandbox.url, sandbox.client_id, sandbox.client_secret, redis_url]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code, *args],
            cwd=PROJECT_ROOT,
            env=project_env(redis_url),
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    tokens = {process.communicate(timeout=60)[0].strip() for process in processes}
    assert [process.returncode for process in processes] == [0, 0]
    assert len(tokens) == 1
    assert sandbox.stats()["tokensIssued"] == 1


def test_a_token_is_renewed_before_it_expires(start_sandbox, make_client):
    sandbox = start_sandbox(token_ttl=1)  # kept 0.9 s, renewed after 0.675 s
    client = make_client(sandbox)
    client.health()
    time.sleep(0.75)
    client.health()
    assert sandbox.stats()["tokensIssued"] == 2
    time.sleep(0.95)  # past the expiry of a token nobody renewed
    client.health()
    stats = sandbox.stats()
    assert stats["tokensIssued"] == 3
    assert "401" not in stats["byStatus"]


def test_a_401_fetches_one_new_token_and_retries_once(sandbox, make_client, redis_conn):
    client = make_client(sandbox)
    client.health()
    key = client.http.auth.key
    stored = json.loads(redis_conn.get(key))
    redis_conn.set(key, json.dumps({**stored, "token": "tok_revoked"}), keepttl=True)
    fresh = make_client(sandbox)  # knows only what Redis says: a token the API rejects
    assert fresh.health()
    stats = sandbox.stats()
    assert stats["byStatus"]["401"] == 1
    assert stats["tokensIssued"] == 2


def test_wrong_credentials_fail_once_without_a_loop(sandbox, make_client):
    client = make_client(sandbox, client_secret="wrong")
    with pytest.raises(ApiError) as caught:
        client.health()
    assert (caught.value.status, caught.value.code) == (401, "invalid_client")
    assert sandbox.stats()["byStatus"] == {"401": 1}


def test_a_429_waits_for_the_reset_then_succeeds(start_sandbox, make_client):
    sandbox = start_sandbox(rate_limit=3)
    client = make_client(sandbox)
    client.health()  # a token, and the budget learns the limit
    token = client.http.auth._local.value
    while time.time() % 1 > 0.3:  # room to spend a whole window before it ends
        time.sleep(0.02)
    window = int(time.time())
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}) as other:
        # Another program with our credentials spends the window, unknown to the budget.
        statuses = [other.get(sandbox.url + "/v1/health").status_code for _ in range(4)]
    assert statuses[-1] == 429
    assert client.health()
    assert time.time() >= window + 1  # it waited for the next window
    assert sandbox.stats()["byStatus"]["429"] >= 2


def test_the_shared_budget_waits_instead_of_reaching_the_limit(start_sandbox, make_client):
    sandbox = start_sandbox(rate_limit=6)
    clients = [make_client(sandbox) for _ in range(3)]
    started = time.monotonic()
    windows = set()
    for n in range(13):
        clients[n % 3].health()
        windows.add(int(time.time()))
    assert sandbox.stats()["byStatus"] == {"200": 14}
    assert time.monotonic() - started >= 1  # 14 requests at 6 per second: three windows
    # ... and not many more: the budget spends the limit rather than throttling to a trickle.
    assert share_of_limit_used(14, windows, 6) >= 0.45


def share_of_limit_used(requests: int, windows: set[int], limit: int) -> float:
    """`requests` over what the limit allowed in the one-second windows from the first
    to the last: 14 requests in three windows of 6 use 0.78 of it, at one a second 0.17."""
    return requests / ((max(windows) - min(windows) + 1) * limit)


def test_the_budget_recovers_after_unanswered_calls_at_a_window_start(redis_conn, make_client):
    port = free_port()
    client = make_client(
        base_url=f"http://127.0.0.1:{port}",
        client_id=Options.client_id,
        client_secret=Options.client_secret,
    )
    with running(port=port, rate_limit=2):
        client.health()  # a token: the budget learns the limit
        window = int(time.time())
        while int(time.time()) == window or time.time() % 1 > 0.3:
            time.sleep(0.01)
        client.health()
        client.health()  # the window's last slot
    # The API is down when the next window starts: nothing answers the call or its retries.
    client.call_seconds = 1
    with pytest.raises(ApiError) as caught:
        client.health()
    assert caught.value.code == "network_error"
    with running(port=port, rate_limit=2) as sandbox:  # back up
        client.call_seconds = 5
        assert client.health()  # not "rate budget exhausted"
        assert sandbox.stats()["byStatus"]["200"] == 2  # a new token (after a 401), health


def test_5xx_are_retried(start_sandbox, make_client):
    sandbox = start_sandbox(fail_rate=0.5, seed=50)
    waits = []
    client = make_client(sandbox, sleep=waits.append)
    for _ in range(5):
        assert client.health()
    stats = sandbox.stats()
    assert stats["faultsInjected"] >= 2
    assert stats["byStatus"]["200"] == 6
    assert len(waits) == stats["faultsInjected"]  # one wait before each retry
    # A 503 says `Retry-After: 1`: waited that, not the 0.05 s backoff (at most 0.8 s).
    assert waits.count(1.0) == stats["byStatus"].get("503", 0)


def test_retry_after_is_waited_then_the_retries_end(start_sandbox, make_client):
    sandbox = start_sandbox(fail_rate=1.0, seed=1)  # every call 500 or 503; tokens spared
    waits = []
    client = make_client(sandbox, sleep=waits.append)
    with pytest.raises(ApiError) as caught:
        client.health()
    statuses = sandbox.stats()["byStatus"]
    assert statuses["500"] + statuses["503"] == 6  # the call and its 5 retries
    assert len(waits) == 5
    retried_503s = statuses["503"] - (caught.value.status == 503)
    assert 0 < waits.count(1.0) == retried_503s < 5  # both kinds were retried
    for retry, wait in enumerate(waits):  # 1 s as asked, or the backoff: 0.05 s doubling
        assert wait == 1.0 or 0.05 * 2**retry / 2 <= wait <= 0.05 * 2**retry


def test_network_errors_are_retried(make_client):
    port = free_port()
    waits = []
    with contextlib.ExitStack() as stack:

        def sleep(seconds):  # the API comes up while the client waits for its third try
            waits.append(seconds)
            if len(waits) == 2:
                stack.enter_context(running(port=port))

        client = make_client(
            base_url=f"http://127.0.0.1:{port}",
            client_id=Options.client_id,
            client_secret=Options.client_secret,
            retry_base=0.2,
            sleep=sleep,
        )
        assert client.health()  # refused twice, then answered
    assert len(waits) == 2
    assert 0.1 <= waits[0] <= 0.2 and 0.2 <= waits[1] <= 0.4  # the backoff, doubling


def test_a_call_in_a_handler_gives_up_before_the_job_ends(start_sandbox, make_client):
    sandbox = start_sandbox(latency_ms=1500)
    client = make_client(sandbox)
    started = time.monotonic()
    with handler_run("evt_1", "h", started + 1.5), pytest.raises(ApiError) as caught:
        client.health()  # the job has 1.5 s left; the call gives up a second before that
    assert time.monotonic() - started < 1.0
    assert (caught.value.status, caught.value.code) == (None, "timeout")


def test_no_answer_at_all_is_an_api_error(make_client):
    url = f"http://127.0.0.1:{free_port()}"
    client = make_client(base_url=url, client_id="c", client_secret="s")
    client.call_seconds = 1
    with pytest.raises(ApiError) as caught:
        client.health()
    assert (caught.value.status, caught.value.code) == (None, "network_error")


@pytest.mark.parametrize(
    ("call", "status", "code"),
    [
        (lambda c: c.get_order("ord_missing"), 404, "order_not_found"),
        (lambda c: c.create_order([{"listingId": "lst_x"}]), 422, "validation_failed"),
        (lambda c: c.get("/v1/inventory/search"), 400, None),
    ],
)
def test_other_4xx_are_not_retried(sandbox, make_client, call, status, code):
    client = make_client(sandbox)
    client.health()
    with pytest.raises(ApiError) as caught:
        call(client)
    error = caught.value
    assert error.status == status
    assert code is None or error.code == code
    assert error.message
    assert error.request_id.startswith("req_")
    assert sandbox.stats()["requests"] == 3  # token, health, the one failed call


def test_403_is_not_retried(sandbox, make_client):
    client = make_client(sandbox, scopes=("inventory.read",))
    with pytest.raises(ApiError) as caught:
        client.create_order([{"listingId": "lst_x", "quantity": 1}])
    assert (caught.value.status, caught.value.code) == (403, "insufficient_scope")
    assert sandbox.stats()["byStatus"] == {"200": 1, "403": 1}


def test_409_is_retried_until_the_first_request_answers(start_sandbox, make_client):
    sandbox = start_sandbox(latency_ms=300)
    client = make_client(sandbox)
    client.health()
    listing = first_listing(client)
    orders = []

    def create():
        with handler_run("evt_same", "handlers.book", time.monotonic() + 30):
            orders.append(client.create_order([{"listingId": listing, "quantity": 1}]))

    threads = [threading.Thread(target=create) for _ in range(2)]
    for thread in threads:
        thread.start()
        time.sleep(0.1)
    for thread in threads:
        thread.join()
    stats = sandbox.stats()
    assert stats["byStatus"].get("409", 0) >= 1
    assert [o["id"] for o in orders] == [orders[0]["id"]] * 2
    assert stats["orders"] == 1


@pytest.fixture
def listener():
    """A socket listening on 127.0.0.1 (another host for the client): its address, and a
    function that says whether anything connected to it."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(0.2)

        def connected() -> bool:
            try:
                server.accept()[0].close()
            except TimeoutError:
                return False
            return True

        yield server.getsockname()[1], connected


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/v1/health",  # absolute, another port
        "http://localhost:{port}/v1/orders",  # another host name
        "//127.0.0.1:{port}/v1/orders",  # scheme-relative
        "http:/127.0.0.1:{port}/v1/orders",  # a scheme without a host
        "https://{base}/v1/orders",  # the API's host and port, another scheme
        "/v1/orders/../../oauth/token",  # dot segments
        "/v1/orders/%2e%2e/x",
    ],
)
def test_a_url_off_the_api_is_refused_before_anything_is_sent(sandbox, make_client, listener, url):
    port, connected = listener
    client = make_client(sandbox)
    client.health()  # a token that a request elsewhere would carry
    url = url.format(port=port, base=sandbox.url.removeprefix("http://"))
    for call in (lambda: client.get(url), lambda: client.post(url, json={"items": []})):
        with pytest.raises(ValueError, match="is not a path of the API at"):
            call()
    assert not connected()
    assert sandbox.stats()["requests"] == 2  # the token and health: nothing else came


def test_paths_and_urls_on_the_api_still_go(sandbox, make_client):
    client = make_client(sandbox)
    assert client.get("/v1/health") == client.get(sandbox.url + "/v1/health")
    assert client.get("v1/health")
    with pytest.raises(ValueError):
        client.get_order("..")  # quoted, but a dot segment all the same
    assert sandbox.stats()["byStatus"] == {"200": 4}


def first_listing(client) -> str:
    return next(client.search_inventory(SHOW))["listingId"]


def test_pagination_reads_every_page(sandbox, make_client):
    client = make_client(sandbox)
    listings = list(client.search_inventory(SHOW, limit=7))
    one_page = client.get("/v1/inventory/search", {"eventId": SHOW, "limit": 100})
    assert len(listings) > 7
    assert [x["listingId"] for x in listings] == [x["listingId"] for x in one_page["items"]]
    assert sum(x.get("available", x.get("quantity", 0)) for x in listings) >= 1000
    created = [
        client.create_order([{"listingId": listings[n]["listingId"], "quantity": 1}])["id"]
        for n in range(5)
    ]
    assert sorted(o["id"] for o in client.list_orders(limit=2)) == sorted(created)


def test_a_write_that_timed_out_is_sent_again_with_its_key(start_sandbox, make_client):
    sandbox = start_sandbox(latency_ms=400)
    client, reader = make_client(sandbox, timeout=0.25), make_client(sandbox)
    listing = first_listing(reader)
    order = client.create_order([{"listingId": listing, "quantity": 1}])
    # Timed out, then 409 while the first attempt still ran, then its stored answer.
    stats = sandbox.stats()
    assert stats["orders"] == 1
    assert stats["idempotentReplays"] == 1
    assert reader.get_order(order["id"])["id"] == order["id"]


def test_writes_outside_a_handler_are_separate_effects(start_sandbox, make_client):
    sandbox = start_sandbox(fail_rate=0.5, seed=50)
    client = make_client(sandbox)
    listing = first_listing(client)
    ids = {client.create_order([{"listingId": listing, "quantity": 1}])["id"] for _ in range(4)}
    assert len(ids) == 4  # four calls, four orders, whatever their retries
    assert sandbox.stats()["orders"] == 4


def test_a_handler_calls_the_api_through_the_shared_client(
    api_sandbox, make_event, signed_post, client, run_worker, event_status
):
    from {{ cookiecutter.package_name }}.handlers import Event, api, on
    from {{ cookiecutter.package_name }}.routing import routes

    routes.clear_handlers()  # this test's handler alone (put back after the test)
    placed = []

    @on("order.created")
    def place(event: Event) -> None:
        placed.append(api.create_order([{"listingId": event.object["listingId"], "quantity": 2}]))

    event = make_event("order.created", {"listingId": "lst_7Qm2Floor"})
    assert signed_post(client, event).status_code == 202
    run_worker()
    assert event_status(event["id"]).status == "processed"
    assert api.get_order(placed[0]["id"])["items"][0]["quantity"] == 2
    assert api_sandbox.stats()["orders"] == 1
