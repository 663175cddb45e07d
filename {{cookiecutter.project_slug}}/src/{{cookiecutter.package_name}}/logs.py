"""Log setup shared by the web app, the worker and the commands.

`TW_LOG_FORMAT=text` (default) writes readable lines; `json` writes one JSON object per
line, with any `extra={...}` fields a log call passes, for log shippers. Secrets are never
passed to a log call anywhere in this package.

The receiver writes one line per delivery, so a line's cost is a share of its throughput:
the formatters below do per line only what changes per line (see `configure`).
"""

from __future__ import annotations

import json
import logging
import sys
import time

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


class TextFormatter(logging.Formatter):
    """`TEXT_FORMAT`, with the date and time formatted once a second instead of per line
    (`strftime` is a third of a plain formatter's time)."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._second: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second, stamp = self._second
        if int(record.created) != second:
            second = int(record.created)
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", self.converter(second))
            self._second = (second, stamp)  # one assignment: threads never see half of it
        return f"{stamp},{int(record.msecs):03d}"


class JsonFormatter(logging.Formatter):
    # One encoder for every line: `json.dumps(..., default=str)` builds a new one per call.
    _encode = json.JSONEncoder(default=str).encode

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = record.__dict__
        entry.update({k: fields[k] for k in fields if k not in _STANDARD_ATTRS})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return self._encode(entry)


def configure(log_format: str = "text", level: str = "INFO") -> None:
    """Send the root logger to stderr in the chosen format (idempotent).

    Neither format prints the caller's file, line and function or the multiprocessing
    name, so no record looks them up (two of the switches the logging HOWTO documents under
    "Optimization"; the walk up the stack is most of a record's cost). Formats that still
    name them get placeholders, never an error. The thread and process ids stay: they are
    cheap, and gunicorn's own format prints `%(process)d`.
    """
    logging._srcfile = None  # no sys._getframe() walk per record
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def configure_if_unset(log_format: str = "text", level: str = "INFO") -> None:
    """`configure`, unless the process already sends the root logger somewhere."""
    if not logging.getLogger().handlers:
        configure(log_format, level)
