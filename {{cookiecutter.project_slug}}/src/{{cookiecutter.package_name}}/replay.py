"""Send events to a receiver the way the Tickets Wholesale sender does.

Every attempt is signed afresh with the current time; 429, 409, 5xx and network errors are
retried with exponential backoff (honouring `Retry-After`), other 4xx are final: the
project's one retry policy (`retry_policy.py`), with the sender's numbers. `--rate` paces
the sends with the project's one rate limiter (`rate_limit.py`). Events come from `.json`
files (one event, or a list of events), `.jsonl` files (one event per line), or folders of
those. Used by the `replay` command, the sandbox's webhooks and tests; standard library only.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import shlex
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .rate_limit import RateLimiter
from .retry_policy import RetryPolicy, parse_seconds
from .signature import HEADER, sign

# With `stop_when_refused`, attempts refused before the receiver ever answered that end the
# run: nothing listens there, and retrying every event for minutes would not change that.
REFUSED_ATTEMPTS = 3
EVENT_FILE_SUFFIXES = (".json", ".jsonl")


@dataclass(frozen=True)
class Delivery:
    """One event to send: the raw body, and where it came from."""

    body: bytes
    source: str

    @property
    def envelope(self) -> dict:
        """The parsed event, or {} when the body is not a JSON object (it is sent as is,
        and the receiver's answer says what is wrong with it)."""
        try:
            parsed = json.loads(self.body)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}


@dataclass
class Result:
    delivery: Delivery
    outcome: str  # accepted | duplicate | rejected:<code> | failed:<status> | network_error
    status: int | None
    attempts: int
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome in ("accepted", "duplicate")


@dataclass
class Options:
    url: str
    secrets: tuple[str, ...]
    concurrency: int = 1
    rate: float = 0.0  # requests per second across all threads; 0 = unlimited
    max_attempts: int = 6
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    timeout: float = 10.0
    # Seconds from a delivery's first attempt after which no retry starts (0: none).
    retry_window: float = 0.0
    extra_headers: dict[str, str] = field(default_factory=dict)
    stop_when_refused: bool = False  # raise `Unreachable` rather than retry a closed port


class Unreachable(Exception):
    """Nothing listens at the receiver's address: the connection was refused, and no
    answer came from there before (`Options.stop_when_refused`)."""


def read_events(paths: Iterable[str | Path]) -> list[Delivery]:
    """Load events from files and folders (sorted by name), keeping each body verbatim."""
    deliveries: list[Delivery] = []
    for path in map(Path, paths):
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix in EVENT_FILE_SUFFIXES)
        elif path.exists():
            files = [path]
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
        for file in files:
            deliveries.extend(_read_file(file))
    return deliveries


def _read_file(path: Path) -> Iterator[Delivery]:
    data = path.read_bytes()
    if path.suffix == ".jsonl":
        for number, line in enumerate(data.splitlines(), 1):
            if line.strip():
                yield Delivery(line.strip(), f"{path}:{number}")
        return
    try:
        parsed = json.loads(data)
    except ValueError as exc:
        raise ValueError(f"{path} is not JSON: {exc}") from None
    if isinstance(parsed, list):
        for number, item in enumerate(parsed):
            yield Delivery(_dumps(item), f"{path}[{number}]")
    else:
        yield Delivery(data, str(path))


def _dumps(envelope: dict) -> bytes:
    return json.dumps(envelope, separators=(",", ":")).encode("utf-8")


def with_fresh_ids(deliveries: list[Delivery]) -> list[Delivery]:
    """Give every event a new random id, so the receiver does not drop them as duplicates."""
    fresh = []
    for delivery in deliveries:
        envelope = delivery.envelope
        if not envelope:
            fresh.append(delivery)
            continue
        envelope["id"] = "evt_" + os.urandom(12).hex()
        fresh.append(Delivery(_dumps(envelope), delivery.source))
    return fresh


def plan(
    deliveries: list[Delivery],
    copies: int = 1,
    shuffle: bool = False,
    seed: int | None = None,
) -> list[Delivery]:
    """The send order: each delivery `copies` times, shuffled if asked."""
    planned = [d for d in deliveries for _ in range(copies)]
    if shuffle:
        random.Random(seed).shuffle(planned)
    return planned


def curl_command(delivery: Delivery, options: Options, timestamp: int | None = None) -> str:
    """The curl command that sends `delivery` signed now (for --dry-run)."""
    header = sign(delivery.body, options.secrets, timestamp)
    parts = ["curl", "-sS", "-X", "POST", options.url, "-H", "Content-Type: application/json"]
    parts += ["-H", f"{HEADER}: {header}", "--data-binary", delivery.body.decode("utf-8")]
    return shlex.join(parts)


def pacer(rate: float) -> RateLimiter | None:
    """The limiter that spaces calls `1/rate` seconds apart across threads: one call per
    window of that length, each window opening at the call that starts it (None: rate 0,
    no limit)."""
    return RateLimiter(1, 1.0 / rate) if rate > 0 else None


class Sender:
    """Posts deliveries over keep-alive connections, one per thread."""

    def __init__(self, options: Options, sleep: Callable[[float], None] = time.sleep):
        self.options = options
        self.sleep = sleep
        parts = urlsplit(options.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"--url must be an http(s) URL, got {options.url!r}")
        self._scheme, self._host, self._port = parts.scheme, parts.hostname, parts.port
        self._path = parts.path or "/"
        if parts.query:
            self._path += "?" + parts.query
        self._local = threading.local()
        self.limiter = pacer(options.rate)
        # The API's retry rules with this sender's numbers: waits times 80-120 %, never
        # past `backoff_max`, and a `Retry-After` in seconds taken as the wait.
        self.policy = RetryPolicy(
            base=options.backoff_base,
            cap=options.backoff_max,
            jitter=(0.8, 1.2),
            max_retries=options.max_attempts - 1,
            max_server_wait=options.backoff_max,
            server_wait_is_floor=False,
        )
        self._answered = False  # whether the receiver ever answered

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = (
                http.client.HTTPSConnection
                if self._scheme == "https"
                else http.client.HTTPConnection
            )
            conn = cls(self._host, self._port, timeout=self.options.timeout)
            self._local.conn = conn
        return conn

    def _post(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
        headers = {
            "Content-Type": "application/json",
            HEADER: sign(body, self.options.secrets),
            **self.options.extra_headers,
        }
        conn = self._connection()
        try:
            conn.request("POST", self._path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        except Exception:
            conn.close()
            self._local.conn = None
            raise

    def backoff(self, attempt: int, retry_after: str | None) -> float:
        """Seconds to wait before attempt `attempt + 1`: Retry-After, else exponential."""
        return self.policy.delay(attempt - 1, parse_seconds(retry_after))

    def send(self, delivery: Delivery) -> Result:
        attempt = 0
        window = self.options.retry_window
        deadline = time.monotonic() + window if window else None
        while True:
            attempt += 1
            if self.limiter:
                self.limiter.wait()
            retry_after = None
            try:
                status, headers, payload = self._post(delivery.body)
            except (OSError, http.client.HTTPException) as exc:
                self._stop_if_refused(exc, attempt)
                status, result = None, Result(delivery, "network_error", None, attempt, str(exc))
            else:
                self._answered = True
                result = _classify(delivery, status, payload, attempt)
                retry_after = headers.get("Retry-After")
            wait = self.policy.next_wait(
                attempt - 1, status, parse_seconds(retry_after), time.monotonic(), deadline
            )
            if wait is None:  # final, out of attempts, or past the retry window: the
                return result  # sender gives up, and the event is lost to this receiver
            self.sleep(wait)

    def _stop_if_refused(self, exc: Exception, attempt: int) -> None:
        refused = isinstance(exc, ConnectionRefusedError) and not self._answered
        if refused and self.options.stop_when_refused and attempt >= REFUSED_ATTEMPTS:
            raise Unreachable(f"nothing listens at {self.options.url} (connection refused)")


def _classify(delivery: Delivery, status: int, payload: bytes, attempts: int) -> Result:
    try:
        answer = json.loads(payload)
    except ValueError:
        answer = {}
    if not isinstance(answer, dict):
        answer = {}
    if 200 <= status < 300:
        outcome = "duplicate" if answer.get("status") == "duplicate" else "accepted"
        return Result(delivery, outcome, status, attempts)
    error = answer.get("error") if isinstance(answer.get("error"), dict) else {}
    code = error.get("code") or f"http_{status}"
    if status >= 500:
        return Result(delivery, f"failed:{code}", status, attempts, error.get("message", ""))
    return Result(delivery, f"rejected:{code}", status, attempts, error.get("message", ""))


def run(
    deliveries: list[Delivery],
    options: Options,
    on_result: Callable[[Result], None] = lambda result: None,
) -> list[Result]:
    """Send every delivery with `options.concurrency` threads; results in completion order."""
    sender = Sender(options)
    results: list[Result] = []
    with ThreadPoolExecutor(max_workers=max(1, options.concurrency)) as pool:
        try:
            for result in pool.map(sender.send, deliveries):
                results.append(result)
                on_result(result)
        except Unreachable:
            pool.shutdown(cancel_futures=True)  # the events not sent yet stay unsent
            raise
    return results


def summarize(results: list[Result]) -> Counter:
    return Counter(result.outcome for result in results)


def format_summary(results: list[Result], seconds: float) -> str:
    counts = summarize(results)
    width = max([len(k) for k in counts] + [7])
    lines = [f"{'outcome':<{width}}  count"]
    for outcome, count in sorted(counts.items()):
        lines.append(f"{outcome:<{width}}  {count:>5}")
    rate = len(results) / seconds if seconds > 0 else 0.0
    lines.append(f"{'total':<{width}}  {len(results):>5}  in {seconds:.2f} s ({rate:.0f}/s)")
    return "\n".join(lines)


class Progress:
    """A one-line progress bar on a terminal's stderr; silent elsewhere."""

    def __init__(self, total: int, stream=sys.stderr):
        self.total, self.done, self.stream = total, 0, stream
        self.enabled = total > 1 and stream.isatty()

    def update(self, result: Result | None = None) -> None:
        """Count one more done (the result itself is not needed for that)."""
        self.done += 1
        if self.enabled and (self.done == self.total or self.done % 10 == 0):
            filled = int(30 * self.done / self.total)
            bar = "#" * filled + "." * (30 - filled)
            self.stream.write(f"\r[{bar}] {self.done}/{self.total}")
            if self.done == self.total:
                self.stream.write("\n")
            self.stream.flush()
