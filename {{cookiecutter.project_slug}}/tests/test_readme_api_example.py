"""The README's example of calling the API, run as it is written against the sandbox,
whose webhooks reach a real receiver: what it buys must not set it off again (an example
that bought seats on every `order.created` bought on the `order.created` of its own
purchase, for ever)."""

import re

import pytest
from processes import PROJECT_ROOT

from {{ cookiecutter.package_name }}.app import create_app
from {{ cookiecutter.package_name }}.routing import routes
from {{ cookiecutter.package_name }}.sandbox.server import serving

ROUNDS = 4


def readme_example() -> str:
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Calling the API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    return code.replace("from . import", "from {{ cookiecutter.package_name }}.handlers import")


@pytest.fixture
def example_handlers():
    routes.clear_handlers()  # the README's alone (put back after the test)
    exec(compile(readme_example(), "README.md", "exec"), {"__name__": "readme_example"})
    assert routes.handlers_for("price.updated") or routes.handlers_for("order.created")


def test_the_readme_api_example_does_not_feed_itself(
    example_handlers, settings, redis_conn, redis_url, start_sandbox, run_worker, monkeypatch
):
    from {{ cookiecutter.package_name }}.api import api

    with serving(create_app(settings, connection=redis_conn)) as receiver:
        sandbox = start_sandbox(webhook_url=receiver + settings.webhook_path)
        for name, value in {
            "TW_API_BASE_URL": sandbox.url,
            "TW_API_CLIENT_ID": sandbox.client_id,
            "TW_API_CLIENT_SECRET": sandbox.client_secret,
            "REDIS_URL": redis_url,
        }.items():
            monkeypatch.setenv(name, value)
        api.reset()
        try:
            # What the example may react to: a new order, and a price that goes down.
            api.create_order([{"listingId": "lst_4Kp9Lower", "quantity": 1}])
            sandbox.store.set_price("lst_7Qm2Floor", 11000)
            orders = []
            for _ in range(ROUNDS):
                assert sandbox.webhooks.wait_until_idle(timeout=10)
                run_worker()  # the events delivered so far, through the example
                orders.append(sandbox.stats()["orders"])
        finally:
            api.reset()
    assert orders[-1] == orders[-2] == 2, orders  # one bought by the example, then quiet
    assert sandbox.webhooks.counts()["delivered"] == 3  # order, price, the example's order
