"""The example from the README's "Testing your handlers": keep the two in step."""

import pytest


@pytest.fixture
def handler_modules():
    """The handlers these tests run: the sample in `handlers/orders.py` alone, so the
    project's other handlers neither run here nor change what the tests check. Without
    this fixture a test in this folder runs none (see `conftest.py`)."""
    return ["{{ cookiecutter.package_name }}.handlers.orders"]


def new_order(make_event):
    return make_event(
        "order.created",
        {
            "id": "ord_1",
            "status": "created",
            "items": [{"listingId": "lst_1", "section": "Floor", "quantity": 2}],
            "total": {"amount": 25000, "currency": "CAD"},
        },
    )


def test_new_order_is_handled(client, make_event, signed_post, run_worker, event_status, caplog):
    caplog.set_level("INFO")
    event = new_order(make_event)
    assert signed_post(client, event).status_code == 202
    run_worker()  # the real worker, in this process, until the queues are empty

    assert event_status(event["id"]).status == "processed"
    assert "order ord_1 is created, 2 seat(s), 25000 CAD" in caplog.text


def test_a_repeat_delivery_is_handled_once(client, make_event, signed_post, run_worker, caplog):
    caplog.set_level("INFO")
    event = new_order(make_event)
    assert signed_post(client, event).status_code == 202
    assert signed_post(client, event).status_code == 200  # duplicate
    run_worker()

    assert caplog.text.count("order ord_1 is created") == 1
