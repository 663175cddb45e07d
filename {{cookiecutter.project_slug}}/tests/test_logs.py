"""The log line: its formats write exactly what the plain ones would, and the web tier
writes its lines in batches without losing or repeating one."""

from __future__ import annotations

import io
import json
import logging
import time

import pytest
from processes import python

from {{ cookiecutter.package_name }} import logs

FIELDS = {
    "requestId": "req_0123456789abcdef",
    "method": "POST",
    "status": 202,
    "outcome": "accepted",
    "eventId": "evt_1",
    "eventType": "order.created",
    "latencyMs": 1.25,
}


def record(created: float, **extra) -> logging.LogRecord:
    args = ("POST", 202, 1.25)
    rec = logging.LogRecord("tw.app", logging.INFO, "", 0, "%s %d in %.2f ms", args, None)
    rec.created, rec.msecs = created, (created % 1) * 1000
    rec.__dict__.update(extra)
    return rec


@pytest.mark.parametrize(
    "moments",
    [
        [1_734_650_000.001, 1_734_650_000.999, 1_734_650_001.0, 1_734_650_000.5],
        [0.25, 59.75, 60.0, 3_600.125, 86_399.999],
    ],
)
def test_text_lines_match_the_standard_formatter_across_seconds(moments):
    fast, plain = logs.TextFormatter(), logging.Formatter(logs.TEXT_FORMAT)
    for created in moments:
        assert fast.format(record(created)) == plain.format(record(created))


def test_json_line_carries_the_message_and_every_extra_field():
    line = logs.JsonFormatter().format(record(1_734_650_000.123456, **FIELDS))
    assert json.loads(line) == {
        "ts": 1_734_650_000.123,
        "level": "info",
        "logger": "tw.app",
        "message": "POST 202 in 1.25 ms",
        **FIELDS,
    }


def test_json_line_turns_values_json_cannot_hold_into_text():
    line = logs.JsonFormatter().format(record(1.0, eventId=b"evt_1", seats={2}))
    assert json.loads(line)["eventId"] == "b'evt_1'"
    assert json.loads(line)["seats"] == "{2}"


def test_configure_writes_one_line_per_call_to_stderr(capsys):
    logs.configure("json", "INFO")
    try:
        logging.getLogger("tw.app").info("one %s", "line", extra={"eventId": "evt_2"})
        logging.getLogger("tw.app").debug("below the level")
    finally:
        logging.getLogger().handlers.clear()
    lines = capsys.readouterr().err.splitlines()
    assert [json.loads(line)["eventId"] for line in lines] == ["evt_2"]


@pytest.mark.parametrize(
    "fmt",
    [
        "%(asctime)s [%(process)d] [%(levelname)s] %(message)s",  # gunicorn's error log
        "%(thread)d %(threadName)s %(processName)s %(filename)s:%(lineno)d %(funcName)s",
    ],
)
def test_other_formats_in_the_process_still_format_after_configure(fmt):
    """gunicorn logs through the same logging module in the same process: whatever
    `configure` switches off must leave every record attribute formattable."""
    logs.configure("text", "INFO")
    try:
        rec = logging.getLogger("gunicorn.error").makeRecord(
            "gunicorn.error", logging.INFO, "", 0, "Worker exiting (pid: %s)", (42,), None
        )
        assert logging.Formatter(fmt).format(rec)
    finally:
        logging.getLogger().handlers.clear()


class WriteRecorder(io.StringIO):
    """A stream that remembers each write, to tell one batch from one write per line."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


@pytest.fixture
def batched():
    """A logger of its own behind a `BatchingHandler` with a plain format; closed after."""
    handlers = []

    def make(**options) -> tuple[logging.Logger, WriteRecorder]:
        stream = WriteRecorder()
        handler = logs.BatchingHandler(stream, **options)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        handlers.append(handler)
        logger = logging.getLogger(f"tw.batched.{len(handlers)}")
        logger.handlers[:], logger.propagate = [handler], False
        logger.setLevel(logging.DEBUG)
        return logger, stream

    yield make
    for handler in handlers:
        handler.close()


def test_lines_are_written_together_in_order_within_the_interval(batched):
    logger, stream = batched(interval=0.05)
    for n in range(3):
        logger.info("delivery %d", n)
    assert stream.writes == []  # nothing written on the caller's path
    deadline = time.monotonic() + 5
    while not stream.writes and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stream.writes == ["INFO delivery 0\nINFO delivery 1\nINFO delivery 2\n"]


def test_a_warning_is_written_at_once_after_the_lines_before_it(batched):
    logger, stream = batched(interval=60)
    logger.info("first")
    logger.debug("second")
    logger.warning("trouble")
    assert stream.writes == ["INFO first\nDEBUG second\nWARNING trouble\n"]


def test_a_full_batch_is_written_without_waiting(batched):
    logger, stream = batched(interval=60, capacity=3)
    for n in range(7):
        logger.info("line %d", n)
    assert stream.writes == ["INFO line 0\nINFO line 1\nINFO line 2\n",
                             "INFO line 3\nINFO line 4\nINFO line 5\n"]  # fmt: skip


def test_a_line_shows_its_arguments_as_they_were_when_logged(batched):
    logger, stream = batched(interval=60)
    seats = ["A1"]
    logger.info("seats %s", seats)
    seats.append("A2")
    logger.handlers[0].flush()
    assert stream.getvalue() == "INFO seats ['A1']\n"


FORK_AND_EXIT = """
import logging, os, sys
from {{ cookiecutter.package_name }} import logs
logs.configure("text", "INFO", batched=True)
log = logging.getLogger("tw.fork")
log.info("before the fork")
pid = os.fork()
if pid == 0:
    log.info("in the child")
    sys.exit(0)
os.waitpid(pid, 0)
log.info("in the parent, last")
"""


def test_each_line_is_written_once_across_a_fork_and_at_exit():
    """gunicorn forks its workers from a master that has logged already, and a worker's
    last lines are still waiting when it exits: none may be lost or written twice."""
    done = python(FORK_AND_EXIT)
    assert done.returncode == 0, done.stderr
    lines = [line.split(": ", 1)[1] for line in done.stderr.splitlines()]
    assert sorted(lines) == ["before the fork", "in the child", "in the parent, last"]
    assert lines[0] == "before the fork"
