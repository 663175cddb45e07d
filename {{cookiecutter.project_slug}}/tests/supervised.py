"""Entry points for the children of `supervisor.supervise` in `test_supervisor.py`. Each
child notes its pid in the folder `TEST_CHILDREN_DIR`, so the test sees how many ran."""

import os
import time
from pathlib import Path


def _started() -> int:
    """Note this child; return how many had started before it."""
    folder = Path(os.environ["TEST_CHILDREN_DIR"])
    before = sum(1 for path in folder.iterdir() if path.name.isdigit())
    (folder / str(os.getpid())).touch()
    return before


def crash_then_finish() -> int:
    """The first child has a bug (a ValueError); the next one is done at once."""
    if _started() == 0:
        raise ValueError("a bug in the first child")
    return 0


def refuse_once_else_wait() -> int:
    """One child refuses its settings (exit 2); the others work until they are stopped."""
    _started()
    try:
        os.close(os.open(Path(os.environ["TEST_CHILDREN_DIR"]) / "refused", os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        time.sleep(60)
        return 0
    return 2
