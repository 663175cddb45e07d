"""Fixtures: a private Redis, test settings, the app and a client come from the project's
own pytest plugin, the same one partners use for their handler tests.

These tests are about the receiver, not about your handlers: they run with no handler
but those a test registers itself (or, in worker processes, `recording_handlers` and
`slow_handlers`), and never import the `handlers` package, whose code may call a real
API. A test of your handlers names the modules it runs by overriding `handler_modules`
in its module, as `test_example_handler.py`, the example for your own tests, does.
"""

import pytest

pytest_plugins = ["{{ cookiecutter.package_name }}.testing"]


@pytest.fixture
def handler_modules() -> tuple[str, ...]:
    """None: see above."""
    return ()
