"""`background.FlushThread`: the timer behind the web tier's batches."""

import threading

from processes import wait_for

from {{ cookiecutter.package_name }}.flush_thread import FlushThread


class Owner:
    def __init__(self) -> None:
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1


def test_the_thread_flushes_its_owner_every_interval_until_stopped():
    owner = Owner()
    timer = FlushThread(owner, 0.01, "tw-test-flush")
    timer.start()
    timer.start()  # once running, a call is a no-op
    assert timer.running
    wait_for(lambda: owner.flushes >= 3, timeout=5)
    timer.stop()


def test_a_thread_refused_at_interpreter_shutdown_is_not_an_error(monkeypatch):
    """At exit, an owner's last flush may log, and the log handler asks for its thread:
    Python 3.12+ refuses new threads then, and that must not cost the line or the flush
    (the owners' exit hooks write what waits)."""

    def refuse(self):
        raise RuntimeError("can't create new thread at interpreter shutdown")

    owner = Owner()
    timer = FlushThread(owner, 0.01, "tw-test-flush")
    with monkeypatch.context() as patched:
        patched.setattr(threading.Thread, "start", refuse)
        timer.start()
    assert not timer.running
    timer.start()  # threads allowed again: the next call starts it
    assert timer.running
    wait_for(lambda: owner.flushes >= 1, timeout=5)
    timer.stop()
