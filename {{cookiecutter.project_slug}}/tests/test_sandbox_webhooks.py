"""The sandbox as the API's webhook sender: what it changes reaches a receiver as signed
events, in order, retried as the API's sender retries."""

from test_replay import ACCEPTED, error, receiver  # noqa: F401 (a fixture)
from test_sandbox import HTTP, ORDER, connect

from {{ cookiecutter.package_name }}.sandbox.server import serving


def test_changes_reach_the_project_receiver_signed_and_in_order(
    start_sandbox, app, settings, event_status
):
    with serving(app) as receiver_url:
        api = start_sandbox(webhook_url=receiver_url + settings.webhook_path)
        client = connect(api)
        order = client.post("/v1/orders", json=ORDER).json()
        confirmed = client.post(f"/v1/orders/{order['id']}/confirm").json()
        cancelled = client.post(f"/v1/orders/{order['id']}/cancel").json()
        price = HTTP.put(api.url + "/_sandbox/listings/lst_4Kp9Lower/price", json={"amount": 8400})
        assert api.webhooks.wait_until_idle(timeout=20)
    results = api.webhooks.results
    assert [r.outcome for r in results] == ["accepted"] * 4  # 202: signature verified, stored
    envelopes = [r.delivery.envelope for r in results]
    assert [e["type"] for e in envelopes] == [
        "order.created", "order.confirmed", "order.cancelled", "price.updated",
    ]  # fmt: skip
    objects = [e["data"]["object"] for e in envelopes]
    assert objects == [order, confirmed, cancelled, price.json()]
    for envelope in envelopes:
        assert envelope["id"].startswith("evt_")
        assert envelope["apiVersion"] == "v1"
        assert event_status(envelope["id"]).status == "queued"
    assert api.stats()["webhooks"] == {
        "delivered": 4, "failed": 0, "queued": 0, "attempts": 4, "lost": 0,
    }  # fmt: skip


def deliver_one_order(start_sandbox, start_receiver, *answers):
    """Place one order in a sandbox whose webhooks go to a receiver answering `answers`."""
    url, script = start_receiver(*answers)
    api = start_sandbox(webhook_url=url)
    connect(api).post("/v1/orders", json=ORDER)
    assert api.webhooks.wait_until_idle(timeout=20)
    [result] = api.webhooks.results
    return result, script, api


def test_a_503_is_retried_until_accepted(start_sandbox, receiver):  # noqa: F811
    answers = error(503, "storage_unavailable"), error(503, "x"), ACCEPTED
    result, script, _ = deliver_one_order(start_sandbox, receiver, *answers)
    assert (result.outcome, result.attempts) == ("accepted", 3)
    bodies = [body for _, body, _ in script.received]  # the receiver verified each signature
    assert bodies == [result.delivery.body] * 3


def test_a_409_is_retried_but_a_400_is_final(start_sandbox, receiver):  # noqa: F811
    answers = error(409, "conflict"), error(400, "invalid_event"), ACCEPTED
    result, script, api = deliver_one_order(start_sandbox, receiver, *answers)
    assert (result.outcome, result.status, result.attempts) == ("rejected:invalid_event", 400, 2)
    assert len(script.received) == 2
    assert api.stats()["webhooks"]["failed"] == 1


def test_without_a_webhook_url_nothing_is_sent(sandbox):
    connect(sandbox).post("/v1/orders", json=ORDER)
    assert sandbox.webhooks is None
    assert sandbox.stats()["webhooks"] is None
