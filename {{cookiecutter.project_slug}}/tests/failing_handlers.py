"""A handler for the monitoring test: it raises on every attempt for an order whose
`data.object.fail` is true, so that event ends in the failed registry.

Loaded into a real worker process with `TW_HANDLER_MODULES=failing_handlers`.
"""

from {{ cookiecutter.package_name }}.handlers import Event, on


@on("order.*")
def fail_marked_orders(event: Event) -> None:
    if event.data.get("object", {}).get("fail"):
        raise RuntimeError(f"order event {event.id} is marked to fail")
