"""The log line's formats: the fast formatters write exactly what the plain ones would."""

from __future__ import annotations

import json
import logging

import pytest

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
