"""The pytest plugin's helpers are called as the README's "Testing your handlers" says."""

import inspect
import json
import re

from processes import PROJECT_ROOT

from {{ cookiecutter.package_name }}.testing import make_event


def documented_call(name: str) -> str:
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(rf"^\| `({name}\(.*?\))` \|", readme, re.MULTILINE)
    assert found, f"no row for {name} in the README's fixture table"
    return found.group(1)


def call_of(func) -> str:
    """`name(a, b=default, ...)` as the function is really defined."""
    parameters = []
    for parameter in inspect.signature(func).parameters.values():
        if parameter.default is inspect.Parameter.empty:
            parameters.append(parameter.name)
        else:
            parameters.append(f"{parameter.name}={json.dumps(parameter.default)}")
    return f"{func.__name__}({', '.join(parameters)})".replace("=null", "=None")


def test_make_event_is_documented_as_it_is_defined():
    assert documented_call("make_event") == call_of(make_event)


def test_make_event_takes_its_documented_arguments_by_position_and_by_name():
    by_position = make_event("price.updated", {"listingId": "lst_1"}, "evt_1", 1)
    by_name = make_event(
        event_type="price.updated", obj={"listingId": "lst_1"}, event_id="evt_1", created=1
    )
    assert (
        by_position
        == by_name
        == {
            "id": "evt_1",
            "type": "price.updated",
            "created": 1,
            "apiVersion": "v1",
            "data": {"object": {"listingId": "lst_1"}},
        }
    )
