"""`supervisor.supervise` with entry points of the test's own: a child that raises (a bug)
is started again, one that exits 2 stops the others and the command, and an entry point
is a callable or a "module:function" name. The supervisor imports neither the commands
nor the worker. Each runs in a fresh interpreter, which the children are forked from."""

import subprocess
import sys
from pathlib import Path

from processes import PACKAGE, project_env


def supervise(entry: str, processes: int, burst: bool, folder: Path, timeout: float = 30):
    """Run `supervise(processes, entry, burst)` in a fresh interpreter; `entry` is Python
    source for the entry point. Returns the finished process."""
    code = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.INFO, format='%(message)s')\n"
        f"from {PACKAGE} import supervisor\n"
        f"sys.exit(supervisor.supervise({processes}, {entry}, burst={burst}))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        env=project_env("redis://unused", TEST_CHILDREN_DIR=str(folder)),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def started(folder: Path) -> list[int]:
    return [int(path.name) for path in folder.iterdir() if path.name.isdigit()]


def test_a_child_that_raises_is_started_again(tmp_path):
    ran = supervise("'supervised:crash_then_finish'", 1, True, tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert len(started(tmp_path)) == 2
    assert "ValueError: a bug in the first child" in ran.stderr  # the child's traceback
    assert "exited (status 1); starting another in 1 s" in ran.stderr


def test_a_child_that_exits_2_stops_the_others(tmp_path):
    ran = supervise("'supervised:refuse_once_else_wait'", 3, False, tmp_path)
    assert ran.returncode == 2, ran.stderr
    assert "a worker process refused the settings; stopping" in ran.stderr
    children = started(tmp_path)
    assert len(children) == 3  # none started again
    for pid in children:  # the two that waited were stopped (else: a 60 s timeout)
        assert not Path(f"/proc/{pid}").exists(), pid


def test_an_entry_point_may_be_a_callable(tmp_path):
    ran = supervise("lambda: print('child ran', flush=True)", 2, True, tmp_path)
    assert (ran.returncode, ran.stdout.count("child ran")) == (0, 2), ran.stderr


def test_the_supervisor_imports_neither_the_commands_nor_the_worker():
    code = (
        f"import sys; import {PACKAGE}.supervisor\n"
        f"print(sorted(m for m in sys.modules if m.startswith('{PACKAGE}.')))\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", code], env=project_env("redis://unused"),
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    for module in ("cli", "worker"):
        assert f"'{PACKAGE}.{module}'" not in ran.stdout
