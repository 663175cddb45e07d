"""Size limits over real HTTP, against gunicorn with the project's `gunicorn.conf.py`.

A body over `TW_MAX_BODY_BYTES` is a 413 in the API's error shape however it is framed,
chunked included. The request line and the headers are limited by gunicorn itself, which
answers before the receiver sees the request, with a small HTML page of its own (414 or
431): what `gunicorn.conf.py` and the README say. A chunked body whose framing is broken
is a 400 in the error shape, logged as the sender's fault (no traceback, no ERROR).
"""

import http.client
import json
import socket

import pytest
from processes import gunicorn, project_env, wait_for
from test_app import event_of_size

from {{ cookiecutter.package_name }}.config import Settings
from {{ cookiecutter.package_name }}.testing import signed_headers

pytestmark = pytest.mark.e2e
PATH = Settings().webhook_path
LIMIT = Settings().max_body_bytes


@pytest.fixture(scope="module")
def web_log(tmp_path_factory):
    return tmp_path_factory.mktemp("limits") / "web.log"


@pytest.fixture(scope="module")
def receiver(redis_server_url, web_log):
    """One gunicorn for the module: host and port."""
    with gunicorn(project_env(redis_server_url), web_log, workers=1) as base:
        yield base.removeprefix("http://")


def send(receiver, body=b"", headers=None, path=PATH, chunked=False):
    """POST over a fresh connection; (status, content type, body)."""
    connection = http.client.HTTPConnection(receiver, timeout=30)
    try:
        if chunked:  # in pieces, with no Content-Length: the length is known only at the end
            pieces = (body[i : i + 16384] for i in range(0, len(body), 16384))
            connection.request("POST", path, pieces, headers or {}, encode_chunked=True)
        else:
            connection.request("POST", path, body, headers or {})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        connection.close()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_the_limit_is_413_however_it_is_framed(receiver, chunked):
    for size in (LIMIT + 1, 3 * LIMIT):
        body = event_of_size(size)
        status, content_type, answer = send(receiver, body, signed_headers(body), chunked=chunked)
        assert (status, content_type) == (413, "application/json"), answer
        error = json.loads(answer)["error"]
        assert error["code"] == "payload_too_large"
        assert error["message"] == f"The body is larger than the limit of {LIMIT} bytes."
    body = event_of_size(LIMIT)
    assert send(receiver, body, signed_headers(body), chunked=chunked)[0] == 202


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        (PATH, {"X-Big": "a" * 100_000}, 431),  # one field over limit_request_field_size
        (PATH, {f"X-Many-{i}": "1" for i in range(101)}, 431),  # over limit_request_fields
        (PATH + "?" + "a" * 9000, {}, 414),  # a request line over limit_request_line
    ],
    ids=["large-field", "many-fields", "long-line"],
)
def test_gunicorn_answers_oversized_headers_itself(receiver, path, headers, status):
    answer = send(receiver, headers=headers, path=path)
    assert answer[:2] == (status, "text/html"), answer


def test_headers_within_the_limits_reach_the_receiver(receiver):
    headers = {"X-Big": "a" * 8000, **{f"X-Many-{i}": "1" for i in range(90)}}
    status, content_type, answer = send(receiver, headers=headers, path=PATH + "?" + "a" * 8000)
    assert (status, content_type) == (401, "application/json"), answer
    assert json.loads(answer)["error"]["code"] == "signature_missing"


def exchange(receiver, data: bytes) -> tuple[int, dict]:
    """Send raw bytes, close our side, read the answer to its end: (status, JSON body)."""
    host, port = receiver.split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        answer = b"".join(iter(lambda: sock.recv(65536), b""))
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


CHUNKED_HEAD = (
    f"POST {PATH} HTTP/1.1\r\nHost: receiver\r\nContent-Type: application/json\r\n"
    "Transfer-Encoding: chunked\r\n\r\n"
).encode()


@pytest.mark.parametrize(
    "chunks",
    [
        b"100\r\nabc",  # a chunk shorter than its size, then the end of the connection
        b"zz\r\nabc\r\n0\r\n\r\n",  # a chunk size that is not hex
        b"3\r\nabc\r\n",  # no terminating chunk
        b"3\r\nabcde\r\n0\r\n\r\n",  # a chunk longer than its size
    ],
    ids=["short-chunk", "size-not-hex", "no-last-chunk", "long-chunk"],
)
def test_a_broken_chunked_body_is_400_and_no_error_in_the_log(receiver, web_log, chunks):
    logged_before = web_log.stat().st_size
    status, answer = exchange(receiver, CHUNKED_HEAD + chunks)
    assert status == 400, answer
    assert answer["error"]["code"] == "malformed_body"
    assert answer["error"]["message"] == "The body ended early or its chunked framing is broken."
    assert answer["error"]["requestId"].startswith("req_")

    def logged_since() -> str:
        with open(web_log, "rb") as log:
            log.seek(logged_before)
            return log.read().decode()

    # The request's own line, at INFO, written in the next batch of log lines.
    logged = wait_for(lambda: "malformed_body" in logged_since() and logged_since())
    for worse in ("Traceback", "ERROR", "CRITICAL", " 500 "):
        assert worse not in logged, logged
