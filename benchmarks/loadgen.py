"""Load generators: wrk when it is installed, else a multi-process Python one.

Both send the same thing: POSTs of precomputed, signed bodies, each with a fresh event id,
over keep-alive connections, and both report requests/s, p50 and p99 latency. Signing
happens before the timed window, so the generator measures the server, not itself.
`rate` (requests/s over all connections) holds the load below the peak for latency runs.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass
class LoadResult:
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def signed_requests(template: dict, secret: str, count: int) -> list[tuple[str, bytes]]:
    """`count` (TW-Signature, body) pairs of `template`, each with its own event id."""
    timestamp = int(time.time())
    key = secret.encode()
    prefix = b"%d." % timestamp
    out = []
    stem = os.urandom(4).hex()
    for n in range(count):
        # evt_ + 26 characters, the length of the API's ids.
        event = dict(template, id=f"evt_{stem}{n:018d}", created=timestamp)
        body = json.dumps(event, separators=(",", ":")).encode()
        digest = hmac.new(key, prefix + body, hashlib.sha256).hexdigest()
        out.append((f"t={timestamp},v1={digest}", body))
    return out


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(
    url: str,
    requests: list[tuple[str, bytes]],
    seconds: float,
    connections: int,
    threads: int = 1,
    rate: float = 0.0,
    mean_latency_ms: float = 0.0,
) -> LoadResult:
    """Run wrk for `seconds`; with `rate`, each connection pauses to hold that total rate."""
    host_url, _, path = url.partition("://")[2].partition("/")
    with tempfile.NamedTemporaryFile("wb", suffix=".tsv", delete=False) as fh:
        for sig, body in requests:
            fh.write(sig.encode() + b"\t" + body + b"\n")
    env = dict(
        os.environ,
        WRK_REQUESTS_FILE=fh.name,
        WRK_THREADS=str(threads),
        WRK_PATH="/" + path,
    )
    if rate:
        # wrk has no fixed-rate mode; a pause per request holds each connection to its share.
        per_connection_ms = 1000.0 * connections / rate
        env["WRK_DELAY_MS"] = str(max(0, round(per_connection_ms - mean_latency_ms)))
    command = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "5s",
        "-s", str(HERE / "signed.lua"), f"http://{host_url}/{path}",
    ]  # fmt: skip
    try:
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(fh.name)
    match = re.search(r"^RESULT (.*)$", out, re.MULTILINE)
    if not match:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    fields = dict(item.split("=") for item in match.group(1).split())
    return LoadResult(
        requests=int(fields["requests"]),
        seconds=int(fields["duration_us"]) / 1e6,
        errors=int(fields["status_errors"]) + int(fields["socket_errors"]),
        p50_ms=int(fields["p50_us"]) / 1000,
        p99_ms=int(fields["p99_us"]) / 1000,
    )


def _connection_loop(host, port, path, requests, start_at, stop_at, interval, out):
    conn = http.client.HTTPConnection(host, port, timeout=5)
    latencies, errors = [], 0
    next_send = start_at
    while time.perf_counter() < start_at:
        time.sleep(0.0005)
    for sig, body in requests:
        if interval:
            # Open loop: latency counts from when the request was due, not when sent.
            pause = next_send - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            due = next_send
            next_send += interval
        else:
            due = time.perf_counter()
        if due >= stop_at:
            break
        try:
            conn.request(
                "POST", path, body, {"TW-Signature": sig, "Content-Type": "application/json"}
            )
            response = conn.getresponse()
            response.read()
            if response.status >= 300:
                errors += 1
        except (OSError, http.client.HTTPException):
            errors += 1
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=5)
        latencies.append(time.perf_counter() - due)
    conn.close()
    out.append((latencies, errors))


def _process_main(args):
    host, port, path, requests, per_process, start_at, seconds, interval = args
    # perf_counter is not comparable across processes; convert the shared wall-clock start.
    offset = time.perf_counter() - time.time()
    start_pc = start_at + offset
    stop_pc = start_pc + seconds
    out: list = []
    chunks = [requests[i::per_process] for i in range(per_process)]
    threads = [
        threading.Thread(
            target=_connection_loop,
            args=(host, port, path, chunk, start_pc, stop_pc, interval, out),
        )
        for chunk in chunks
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latencies = [x for lat, _ in out for x in lat]
    return latencies, sum(err for _, err in out)


def run_python(
    url: str,
    requests: list[tuple[str, bytes]],
    seconds: float,
    connections: int,
    processes: int | None = None,
    rate: float = 0.0,
) -> LoadResult:
    """The fallback generator: `processes` processes, `connections` keep-alive connections."""
    processes = processes or min(connections, os.cpu_count() or 1)
    hostport, _, path = url.partition("://")[2].partition("/")
    host, _, port = hostport.partition(":")
    per_process = max(1, connections // processes)
    interval = connections / rate if rate else 0.0
    start_at = time.time() + 1.0 + 0.0002 * len(requests) / processes
    jobs = [
        (host, int(port), "/" + path, requests[i::processes], per_process, start_at, seconds,
         interval)
        for i in range(processes)
    ]  # fmt: skip
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        outcomes = pool.map(_process_main, jobs)
    latencies = sorted(x for lat, _ in outcomes for x in lat)
    if not latencies:
        raise RuntimeError("the Python load generator completed no request")
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return LoadResult(
        requests=len(latencies),
        seconds=seconds,
        errors=sum(err for _, err in outcomes),
        p50_ms=statistics.median(latencies) * 1000,
        p99_ms=p99 * 1000,
    )
