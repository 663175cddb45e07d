"""Slow clients against real gunicorn with the project's `gunicorn.conf.py` (slowloris).

Many more connections than the receiver has threads send the start of a request and then
nothing: headers that never end, a `Content-Length` body never sent (after `100 Continue`
too), a chunked body with no last chunk. Meanwhile signed deliveries and `/healthz` are
answered as usual, and after gunicorn's `timeout` each slow connection gets a 408 in the
API's error shape and is closed, with nothing worse than INFO in the log; connections that
send nothing at all are closed after gunicorn's `keepalive`.
"""

import http.client
import json
import signal
import socket
import sys
import time

import pytest
from processes import PACKAGE, gunicorn, project_env, running, wait_until_up

from {{ cookiecutter.package_name }}.config import Settings
from {{ cookiecutter.package_name }}.dev.embedded_redis import free_port
from {{ cookiecutter.package_name }}.testing import make_event, signed_headers

pytestmark = pytest.mark.e2e
PATH = Settings().webhook_path
WORKERS = 2  # with the shipped one thread each
TIMEOUT = 5  # GUNICORN_TIMEOUT: how long a request may take to arrive
# Generous: a delivery is answered in milliseconds; these stuck behind a slow client wait
# for as long as it stays.
ANSWERED_WITHIN = 3.0

SLOW_STARTS = {
    "body-never-sent": (
        f"POST {PATH} HTTP/1.1\r\nHost: receiver\r\nContent-Type: application/json\r\n"
        'Content-Length: 1000\r\n\r\n{"id": '
    ),
    "body-never-sent-after-continue": (
        f"POST {PATH} HTTP/1.1\r\nHost: receiver\r\nExpect: 100-continue\r\n"
        "Content-Length: 1000\r\n\r\n"
    ),
    "headers-never-end": f"POST {PATH} HTTP/1.1\r\nHost: receiver\r\nX-Slow: 1\r\n",
    "no-last-chunk": (
        f"POST {PATH} HTTP/1.1\r\nHost: receiver\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
    ),
}


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def open_slow(host: str, port: int, start: str) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=30)
    sock.sendall(start.encode())
    return sock


def timed(receiver: str, method: str, path: str, body=None, headers=None):
    """(status, seconds) of one request on a fresh connection."""
    started = time.monotonic()
    connection = http.client.HTTPConnection(receiver, timeout=30)
    try:
        connection.request(method, path, body, headers or {})
        response = connection.getresponse()
        response.read()
        return response.status, time.monotonic() - started
    finally:
        connection.close()


def answer_and_close(sock: socket.socket) -> tuple[bytes, float]:
    """What the server sends until it closes the connection, and when it closed it."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    closed_at = time.monotonic()
    sock.close()
    return received, closed_at


def test_slow_clients_hold_no_thread_and_are_closed_with_408(redis_server_url, tmp_path):
    log = tmp_path / "web.log"
    env = project_env(redis_server_url, GUNICORN_TIMEOUT=str(TIMEOUT))
    with gunicorn(env, log, workers=WORKERS) as base:
        host, port = base.removeprefix("http://").split(":")
        receiver = f"{host}:{port}"
        opened_at = time.monotonic()
        # Each kind alone is more connections than there are threads.
        slow = [
            open_slow(host, int(port), start)
            for start in SLOW_STARTS.values()
            for _ in range(2 * WORKERS)
        ]
        silent = [open_slow(host, int(port), "") for _ in range(2 * WORKERS)]
        time.sleep(0.5)  # accepted, and (before the fix) each holding a thread

        for _ in range(5):
            status, took = timed(receiver, "GET", "/healthz")
            assert (status, took < ANSWERED_WITHIN) == (200, True), took
            body = json.dumps(make_event()).encode()
            status, took = timed(receiver, "POST", PATH, body, signed_headers(body))
            assert (status, took < ANSWERED_WITHIN) == (202, True), took

        for sock in slow:
            answer, closed_at = answer_and_close(sock)
            assert closed_at - opened_at < TIMEOUT + 3
            head, _, body = answer.removeprefix(CONTINUE).partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 408 "), answer
            error = json.loads(body)["error"]
            assert error["code"] == "request_timeout"
            assert error["requestId"].startswith("req_")
        for sock in silent:  # idle: closed without a word, as a kept-alive connection is
            answer, closed_at = answer_and_close(sock)
            assert (answer, closed_at - opened_at < TIMEOUT + 3) == (b"", True)

    logged = log.read_text()
    assert logged.count("408 request_timeout") == len(slow)
    for worse in ("Traceback", "ERROR", "CRITICAL", " 500 "):
        assert worse not in logged, logged


def test_a_sender_waiting_for_100_continue_gets_it_once(redis_server_url, tmp_path):
    body = json.dumps(make_event()).encode()
    headers = {**signed_headers(body), "Content-Length": str(len(body))}
    head = f"POST {PATH} HTTP/1.1\r\nHost: receiver\r\nExpect: 100-continue\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
    with gunicorn(project_env(redis_server_url), tmp_path / "web.log", workers=1) as base:
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(head.encode())
            assert sock.recv(len(CONTINUE)) == CONTINUE
            sock.sendall(body)
            answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 202 "), answer


def test_clients_that_never_close_their_side_do_not_stall_the_receiver(redis_server_url, tmp_path):
    """gunicorn closes a connection after an answer that says `Connection: close`, then
    waits for the client to close its side: in the poller, not in the worker's main loop,
    where ten such clients held every other connection of the process for 2 s each."""
    with gunicorn(project_env(redis_server_url), tmp_path / "web.log", workers=1) as base:
        host, port = base.removeprefix("http://").split(":")
        request = b"GET /healthz HTTP/1.1\r\nHost: receiver\r\nConnection: close\r\n\r\n"
        held = [open_slow(host, int(port), request.decode()) for _ in range(10)]
        time.sleep(0.2)
        for _ in range(3):
            status, took = timed(f"{host}:{port}", "GET", "/healthz")
            assert (status, took < ANSWERED_WITHIN) == (200, True), took
        for sock in held:
            answer, _ = answer_and_close(sock)
            assert answer.startswith(b"HTTP/1.1 200 "), answer


def test_a_stopping_receiver_does_not_wait_for_connections_that_sent_nothing(
    redis_server_url, tmp_path
):
    """Like kept-alive connections, they are closed when gunicorn stops: a deploy does not
    wait `GUNICORN_TIMEOUT` (30 s) for them."""
    port = free_port()
    command = [
        sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
        "--bind", f"127.0.0.1:{port}", "--workers", "1", f"{PACKAGE}.app:create_app()",
    ]  # fmt: skip
    log = tmp_path / "web.log"
    with running(command, project_env(redis_server_url), log) as server:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", server, log)
        silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        time.sleep(0.5)
        stopped_at = time.monotonic()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=40)
        took = time.monotonic() - stopped_at
    for sock in silent:
        sock.close()
    assert server.returncode == 0
    assert took < 10, took
