"""Log setup shared by the web app, the worker and the commands.

`TW_LOG_FORMAT=text` (default) writes readable lines; `json` writes one JSON object per
line, with any `extra={...}` fields a log call passes, for log shippers. Secrets are never
passed to a log call anywhere in this package.

The receiver writes one line per delivery, so a line's cost is a share of its throughput:
the formatters below do per line only what changes per line (see `configure`), and the
web tier writes its lines in batches (`BatchingHandler`) rather than one system call each.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import weakref

from .flush_thread import FlushThread

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


def dated(record: logging.LogRecord, when: float) -> logging.LogRecord:
    """`record`, dated `when` (a `time.time()`) rather than when it was made: for a line
    made after the event it tells of (see `answered`)."""
    record.relativeCreated += (when - record.created) * 1000
    record.created = when
    record.msecs = float(int((when - int(when)) * 1000))
    return record


class BatchingHandler(logging.StreamHandler):
    """A stream handler that writes its lines in batches: every `interval` seconds, at
    once for a record at `flush_level` or above (with the lines before it, in order), when
    `capacity` records wait, and at exit.

    Written one by one, each line is a system call on the request path, and a wakeup of
    whatever reads the pipe (journald, a container runtime). Batched, one write carries
    every line of the last `interval`, formatted in a loop off the request path. As
    `QueueHandler.prepare` does, a record's message is merged with its arguments when it
    is logged, so a line shows them as they were then. The price: a process killed with
    SIGKILL loses at most its last `interval` of lines below `flush_level`.

    After a fork the child starts empty (the parent writes what was waiting) and starts
    its own flushing thread with its first record.
    """

    def __init__(
        self,
        stream=None,
        interval: float = 0.1,
        capacity: int = 1024,
        flush_level: int = logging.WARNING,
    ) -> None:
        super().__init__(stream)
        self.capacity, self.flush_level = capacity, flush_level
        self._records: list[logging.LogRecord] = []
        self._timer = FlushThread(self, interval, "tw-log-flush")
        me = weakref.ref(self)
        os.register_at_fork(
            before=lambda: (handler := me()) and handler.flush(),
            after_in_child=lambda: (handler := me()) and handler._records.clear(),
        )

    def emit(self, record: logging.LogRecord) -> None:
        # Called by `handle` with this handler's lock held.
        try:
            record.msg, record.args = record.getMessage(), None
        except Exception:
            self.handleError(record)
            return
        self._records.append(record)
        if record.levelno >= self.flush_level or len(self._records) >= self.capacity:
            self.flush()
        else:
            self._timer.start()

    def flush(self) -> None:
        with self.lock:  # reentrant: `emit` calls this with the lock held
            records, self._records = self._records, []
            if not records or self.stream is None:
                return
            lines = []
            for record in records:
                try:
                    lines.append(self.format(record) + self.terminator)
                except Exception:
                    self.handleError(record)
            try:
                self.stream.write("".join(lines))
                self.stream.flush()
            except Exception:
                self.handleError(records[-1])

    def close(self) -> None:
        self._timer.stop()
        self.flush()
        super().close()


def configure(log_format: str = "text", level: str = "INFO", batched: bool = False) -> None:
    """Send the root logger to stderr in the chosen format (idempotent); with `batched`,
    through a `BatchingHandler` (the web tier's one line per delivery).

    Neither format prints the caller's file, line and function or the multiprocessing
    name, so no record looks them up (two of the switches the logging HOWTO documents under
    "Optimization"; the walk up the stack is most of a record's cost). Formats that still
    name them get placeholders, never an error. The thread and process ids stay: they are
    cheap, and gunicorn's own format prints `%(process)d`.
    """
    logging._srcfile = None  # no sys._getframe() walk per record
    logging.logMultiprocessing = False
    handler = BatchingHandler(sys.stderr) if batched else logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in root.handlers:
        if isinstance(old, BatchingHandler):
            old.close()
    root.handlers[:] = [handler]
    root.setLevel(level)


def configure_if_unset(
    log_format: str = "text", level: str = "INFO", batched: bool = False
) -> None:
    """`configure`, unless the process already sends the root logger somewhere."""
    if not logging.getLogger().handlers:
        configure(log_format, level, batched)
