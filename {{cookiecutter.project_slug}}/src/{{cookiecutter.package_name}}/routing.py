"""Which handlers each event type routes to: the table behind `@on(...)`.

A handler is a plain function taking one `Event`. It is registered for an exact type
(`order.created`), a family (`order.*`) or everything (`*`); one type may have several
handlers, which run in the order they were registered. Handlers are found by importing
the modules `Settings.handler_modules` names, every module of a package among them: by
default the project's `handlers` package plus each module named in `TW_HANDLER_MODULES`,
so adding a file to `handlers/` is all it takes. The project's own tests name modules of
their own instead, so a handler of yours never runs in them.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from .events import Event, check_type_pattern, type_matches

HandlerFunc = Callable[[Event], Any]


@dataclass(frozen=True)
class Handler:
    pattern: str
    func: HandlerFunc
    # None, or the handler's lane (`lanes.py`): a name (keyed by `data.object.id`) or a
    # function of the event giving the key.
    lane: str | Callable[[Event], Any] | None = None

    @property
    def name(self) -> str:
        """A stable name, used to remember which handlers already ran for an event."""
        return f"{self.func.__module__}.{self.func.__qualname__}"

    def matches(self, event_type: str) -> bool:
        return type_matches(self.pattern, event_type)


def _import_fresh(name: str) -> ModuleType:
    """Import `name`, re-running it if imported before, so its `@on` calls register again
    after `Routes.clear()`."""
    if name in sys.modules:
        return importlib.reload(sys.modules[name])
    return importlib.import_module(name)


class Routes:
    def __init__(self) -> None:
        self._handlers: list[Handler] = []
        self._loaded: set[str] = set()
        self._load_ran = False

    def on(
        self, *patterns: str, lane: str | Callable[[Event], Any] | None = None
    ) -> Callable[[HandlerFunc], HandlerFunc]:
        """Register the decorated function for each of `patterns`. With `lane`, it runs one
        event at a time per order (or per `lane(event)`), in arrival order (`lanes.py`)."""
        if not patterns:
            raise ValueError("@on needs at least one event type, e.g. @on('order.created')")
        for pattern in patterns:
            check_type_pattern(pattern)
        if lane is not None and not callable(lane) and not (isinstance(lane, str) and lane):
            raise ValueError("lane= takes a name, e.g. lane='order', or a function of the event")

        def decorator(func: HandlerFunc) -> HandlerFunc:
            for pattern in patterns:
                handler = Handler(pattern, func, lane)
                if handler not in self._handlers:
                    self._handlers.append(handler)
            return func

        return decorator

    def handlers_for(self, event_type: str) -> list[Handler]:
        """Handlers for `event_type` in registration order, each function once."""
        found: dict[str, Handler] = {}
        for handler in self._handlers:
            if handler.matches(event_type):
                found.setdefault(handler.name, handler)
        return list(found.values())

    def lane_handlers(self) -> list[Handler]:
        """The registrations with a lane (`lanes.py`), in registration order."""
        return [handler for handler in self._handlers if handler.lane is not None]

    @property
    def loaded(self) -> bool:
        """True once `load()` has run in this process."""
        return self._load_ran

    def load(self, modules: Iterable[str]) -> None:
        """Import each of `modules` (`Settings.handler_modules`), and every module of those
        that are packages; once each."""
        for name in modules:
            if name in self._loaded:
                continue
            module = _import_fresh(name)
            for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
                _import_fresh(f"{name}.{info.name}")
            self._loaded.add(name)
        self._load_ran = True

    def clear_handlers(self) -> None:
        """Forget every handler, but not which modules were loaded, so that none is imported
        again: for a test that registers handlers of its own."""
        self._handlers.clear()

    def clear(self) -> None:
        """Forget every handler and every loaded module (for tests)."""
        self._handlers.clear()
        self._loaded.clear()
        self._load_ran = False


routes = Routes()
on = routes.on
