"""Notice changed Python files, for `dev` to restart its worker with the new code.

It polls modification times: the standard library alone, the same on every OS, and cheap
for a project's few dozen files (gunicorn's `--reload` polls the same way by default).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable
from pathlib import Path

# The receiver's package, this one's parent: all of it is watched, `dev/` included.
PACKAGE_DIR = Path(__file__).resolve().parent.parent


def watched_roots(handler_modules: Iterable[str] = ()) -> list[Path]:
    """This package (its `handlers/` included) and where each `TW_HANDLER_MODULES` module
    lives: its package's folder, or its own file."""
    roots = [PACKAGE_DIR]
    for name in handler_modules:
        top = name.partition(".")[0]
        try:
            spec = importlib.util.find_spec(top)  # a top-level name: nothing is imported
        except (ImportError, ValueError):
            continue  # the worker says what is wrong with it
        if spec is None or not spec.origin or not spec.has_location:
            continue
        origin = Path(spec.origin).resolve()
        root = origin.parent if spec.submodule_search_locations else origin
        if not any(root == r or r in root.parents for r in roots):
            roots.append(root)
    return roots


def snapshot(roots: Iterable[Path]) -> dict[str, tuple[int, int]]:
    """Path -> (modification time, size) of every `.py` file under `roots`."""
    found = {}
    for root in roots:
        files = [root] if root.is_file() else root.rglob("*.py")
        for path in files:
            try:
                stat = os.stat(path)
            except OSError:
                continue  # removed meanwhile: absent from this snapshot
            found[str(path)] = (stat.st_mtime_ns, stat.st_size)
    return found


class Watcher:
    """Remembers a snapshot; `changed()` names the files added, edited or removed since."""

    def __init__(self, roots: Iterable[Path]):
        self.roots = list(roots)
        self._last = snapshot(self.roots)

    def changed(self) -> list[str]:
        now = snapshot(self.roots)
        paths = sorted(p for p in now.keys() | self._last.keys() if now.get(p) != self._last.get(p))
        self._last = now
        return paths
