"""When the web worker hands a request to a thread: once it has all arrived, or when
waiting longer would not help (a body the receiver refuses unread, framing gunicorn's
parser refuses at once); and the `100 Continue` it answers itself. The slow clients
themselves, against real gunicorn, are in test_slow_clients.py."""

import pytest

from {{ cookiecutter.package_name }}.http_worker import Arrival, without_expect

LIMIT = 1000
HEAD = b"POST /hook HTTP/1.1\r\nHost: x\r\n"


@pytest.mark.parametrize(
    ("data", "arrived"),
    [
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n", False),  # headers not ended
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", True),
        (HEAD + b"Content-Length: 5\r\n\r\nabcd", False),
        (HEAD + b"Content-Length: 5\r\n\r\nabcde", True),
        (HEAD + b"CONTENT-LENGTH:\t5 \r\n\r\nabcde", True),
        (HEAD + b"Content-Length: 1001\r\n\r\n", True),  # over the limit: refused unread
        (HEAD + b"Content-Length: 5x\r\n\r\n", True),  # gunicorn refuses it at once
        (HEAD + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n", False),
        (HEAD + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\nabcde", True),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n", False),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", False),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n", False),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", True),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nA: b\r\n", False),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nA: b\r\n\r\n", True),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n100\r\nabc", False),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc", True),  # broken: a 400 now
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n3e9\r\n", True),  # 1001 bytes announced
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + b"f" * 2000, True),  # no size line
    ],
)
def test_arrived(data, arrived):
    assert Arrival(LIMIT).complete(data) is arrived


@pytest.mark.parametrize(
    "data",
    [
        HEAD + b"Content-Length: 5\r\n\r\nabcde",
        HEAD
        + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n10\r\n"
        + b"x" * 16
        + b"\r\n0\r\n\r\n",
        HEAD + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nA: b\r\n\r\n",
    ],
)
def test_arrived_byte_by_byte(data):
    """Each call goes on from the last: the request is complete at its last byte, not before."""
    arrival = Arrival(LIMIT)
    answers = [arrival.complete(data[:end]) for end in range(1, len(data) + 1)]
    assert answers == [False] * (len(data) - 1) + [True]


def expects_continue(data: bytes) -> bool:
    arrival = Arrival(LIMIT)
    arrival.complete(data)
    return arrival.expects_continue


def test_the_continue_it_sends_and_the_expect_it_takes_out():
    waiting = HEAD + b"EXPECT:100-Continue\r\nContent-Length: 5\r\n\r\n"
    assert expects_continue(waiting)
    assert not expects_continue(HEAD + b"Expect: 100-continue\r\n")  # headers go on
    assert not expects_continue(HEAD + b"Content-Length: 5\r\n\r\n")
    assert without_expect(waiting + b"abcde") == HEAD + b"Content-Length: 5\r\n\r\nabcde"
