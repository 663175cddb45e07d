"""The sandbox's side of reconciliation: orders listed by their last change
(`updatedSince`), refunds, and webhooks that never arrive (`webhook_loss`, a sender that
gives up after its retry window)."""

import time

from clocks import FakeClock
from test_sandbox import ORDER, assert_error, connect

from {{ cookiecutter.package_name }} import cli
from {{ cookiecutter.package_name }}.dev.embedded_redis import free_port


def walk(client, **params) -> list[dict]:
    """Every order the list gives for `params`, page after page of 2."""
    listed, cursor = [], None
    while True:
        page = client.get(
            "/v1/orders", params={"limit": 2, **params, **({"cursor": cursor} if cursor else {})}
        )
        assert page.status_code == 200, page.text
        listed += page.json()["items"]
        if not (cursor := page.json()["nextCursor"]):
            return listed


def test_updated_since_lists_changes_oldest_first_and_newest_first_without(sandbox):
    client = connect(sandbox)
    sandbox.store.clock = clock = FakeClock(time.time())
    ids = [client.post("/v1/orders", json=ORDER).json()["id"] for _ in range(3)]
    clock.advance(1.0)  # the next change lands in a later second
    changed = client.post(f"/v1/orders/{ids[0]}/confirm").json()
    assert changed["updatedAt"] > changed["createdAt"]
    since = walk(client, updatedSince=0)
    assert [o["id"] for o in since] == [*sorted(ids[1:]), ids[0]]  # updatedAt, then id
    assert [o["id"] for o in walk(client, updatedSince=changed["updatedAt"])] == [ids[0]]
    assert [o["id"] for o in walk(client)] == [ids[0], *sorted(ids[1:], reverse=True)]
    assert_error(
        client.get("/v1/orders", params={"updatedSince": "yesterday"}), 400, "invalid_parameter"
    )


def test_an_order_changed_during_a_walk_is_met_again_at_its_end(sandbox):
    client = connect(sandbox)
    sandbox.store.clock = clock = FakeClock(time.time())
    ids = sorted(client.post("/v1/orders", json=ORDER).json()["id"] for _ in range(3))
    first = client.get("/v1/orders", params={"updatedSince": 0, "limit": 2}).json()
    assert [o["id"] for o in first["items"]] == ids[:2]
    clock.advance(1.0)  # the confirmation lands in a later second
    client.post(f"/v1/orders/{ids[0]}/confirm")  # already read: it moves to the end
    rest = client.get("/v1/orders", params={"updatedSince": 0, "cursor": first["nextCursor"]})
    assert [(o["id"], o["status"]) for o in rest.json()["items"]] == [
        (ids[2], "created"), (ids[0], "confirmed"),
    ]  # fmt: skip


def test_a_fulfilled_order_can_be_refunded(sandbox):
    client = connect(sandbox)
    order = client.post("/v1/orders", json=ORDER).json()
    assert_error(client.post(f"/v1/orders/{order['id']}/refund"), 422, "invalid_state")
    client.post(f"/v1/orders/{order['id']}/confirm")
    client.post(f"/v1/orders/{order['id']}/fulfill")
    assert client.post(f"/v1/orders/{order['id']}/refund").json()["status"] == "refunded"


def test_webhook_loss_drops_its_share_of_events_repeatably(start_sandbox):
    lost = []
    for _ in range(2):
        # Nothing listens on the URL: only the lost ones are certain never to be tried.
        api = start_sandbox(
            webhook_url=f"http://127.0.0.1:{free_port()}/hook", webhook_loss=0.3, seed=7,
            webhook_max_attempts=1,
        )  # fmt: skip
        client = connect(api)
        for _ in range(10):  # 10 orders of 2 seats take Floor A's 20; 3 events each
            order = client.post("/v1/orders", json=ORDER).json()
            client.post(f"/v1/orders/{order['id']}/confirm")
            client.post(f"/v1/orders/{order['id']}/fulfill")
        assert api.webhooks.wait_until_idle(timeout=20)
        counts = api.webhooks.counts()
        assert counts["lost"] + counts["failed"] == 30
        assert counts["lost"] == len(api.webhooks.lost)
        lost.append([envelope["type"] for envelope in api.webhooks.lost])
    assert lost[0] == lost[1]  # one seed, one draw
    assert 3 <= len(lost[0]) <= 16  # about 30 % of 30


def test_the_sender_gives_up_after_its_retry_window(start_sandbox):
    api = start_sandbox(
        webhook_url=f"http://127.0.0.1:{free_port()}/hook", webhook_max_attempts=100,
        webhook_backoff=0.1, webhook_retry_window=0.5,
    )  # fmt: skip
    connect(api).post("/v1/orders", json=ORDER)
    assert api.webhooks.wait_until_idle(timeout=10)
    [result] = api.webhooks.results
    assert result.outcome == "network_error"
    assert 2 <= result.attempts < 10  # retried, then given up long before 100 attempts


def test_the_command_refuses_a_loss_outside_0_to_1(capsys):
    try:
        cli.main(["sandbox", "--webhook-loss", "1.5"])
    except SystemExit as exc:
        assert exc.code == 2
    assert "want a number from 0 to 1" in capsys.readouterr().err
