"""The web tier's gunicorn worker: gthread, but a connection gets a thread only once its
request has arrived.

gunicorn's gthread worker hands a connection to a thread as soon as it is readable, and the
thread then blocks until the rest of the request comes. A client that sends the start of a
request and then nothing (headers that never end, a `Content-Length` body never sent) holds
that thread for as long as it keeps the connection open, and `workers x threads` such
connections stop the receiver ("slowloris"). Here a thread reads what has come (waiting a
moment, `REST_WAIT_SECONDS`, once per request, for a body written apart from its headers)
and serves the request if that is all of it; if not, the connection goes back to the
worker's main loop, which already watches every idle kept-alive connection, and which
reads the rest as it trickles in and submits the connection again once the whole request
is in memory. A request that has not arrived within gunicorn's `timeout` is answered 408
and closed; one whose headers pass `MAX_HEAD_BYTES` before they end, 431. And a
connection gunicorn closes after its answer lingers in the main loop's poller, not in a
blocking read of the main loop itself (gunicorn 27 waits there up to 2 s for the client to
close its side, all other connections of the process waiting with it).

A sender that waits for `100 Continue` before its body gets it from the main loop, and
the thread sees the request without its `Expect`. Handed over early, with a deadline on
each read the thread makes (`DeadlineReads`): a body the receiver refuses anyway (over
`TW_MAX_BODY_BYTES`). TLS connections (gunicorn's `certfile`) are served as gthread does:
terminate TLS at a proxy instead.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import select
import selectors
import socket
import time
from functools import partial

from gunicorn.workers.gthread import ThreadWorker

from .config import settings_from_env

# Headers longer than this, before their blank line, are refused: a request's head is read
# into memory, for each of up to `worker_connections` connections.
MAX_HEAD_BYTES = 64 * 1024
RECV_BYTES = 64 * 1024
# How long a closed connection waits for the client to close its side (gunicorn's own).
LINGER_SECONDS = 2.0
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# What a thread gives back for a request that has not all come: the main loop waits for it.
WAIT = object()
# How long a thread waits for the rest of a request it found unfinished, once per request:
# enough for a sender that writes its headers and its body separately (Python's
# http.client does), whose body is a moment behind; a slow client holds the thread no
# longer, and only once for each request it starts.
REST_WAIT_SECONDS = 0.05


class Arrival:
    """Follows one request as it comes in, to tell when a thread can take it without
    waiting for the sender: it is all there, or its body will be refused unread (announced
    over `body_limit`, or past it as it came). Framing this cannot follow (a chunk size that
    is not hex, a doubtful `Content-Length`) is handed over too: gunicorn's parser and the
    receiver answer it at once.

    `data` only grows between calls of `complete`, which goes on where the last call
    stopped: a body sent in many small pieces is not scanned again from its start.
    """

    def __init__(self, body_limit: int):
        self.body_limit = body_limit
        self.body_start = -1  # where the body starts, once the head has ended
        self.length = -1  # the Content-Length; -1 for a chunked body
        self.chunk_at = -1  # chunked: where the next chunk's size line starts
        self.received = 0  # chunked: the body's bytes so far
        self.expects_continue = False  # the sender waits for `100 Continue` to send its body

    def complete(self, data: bytes) -> bool:
        if self.body_start < 0:
            head_end = data.find(b"\r\n\r\n")
            if head_end < 0:
                return False
            head = data[:head_end].lower()
            self.body_start = head_end + 4
            self.expects_continue = header_value(head, b"expect") == b"100-continue"
            if b"\r\ntransfer-encoding:" in head:
                self.chunk_at = self.body_start
            else:
                length = header_value(head, b"content-length") or b"0"
                if not length.isdigit() or int(length) > self.body_limit:
                    return True
                self.length = int(length)
        if self.chunk_at < 0:
            return len(data) - self.body_start >= self.length
        return self.chunks_complete(data)

    def chunks_complete(self, data: bytes) -> bool:
        """Whether the chunked body has its last chunk and trailers, or has come past the
        limit, or broke its framing."""
        while True:
            line_end = data.find(b"\r\n", self.chunk_at)
            if line_end < 0:
                return len(data) - self.chunk_at > 1024  # a size line this long is broken
            try:
                size = int(data[self.chunk_at : line_end].split(b";", 1)[0].strip(), 16)
            except ValueError:
                return True
            if size == 0:  # the last chunk: the trailers end with a blank line
                trailers = line_end + 2
                return data.startswith(b"\r\n", trailers) or data.find(b"\r\n\r\n", trailers) >= 0
            if self.received + size > self.body_limit:
                return True
            if line_end + 2 + size + 2 > len(data):
                return False
            self.received += size
            self.chunk_at = line_end + 2 + size + 2


def without_expect(data: bytes) -> bytes:
    """The request without its `Expect` field, once the main loop has sent `100 Continue`:
    gunicorn would send a second one."""
    start = data[: data.find(b"\r\n\r\n")].lower().find(b"\r\nexpect:")
    end = data.find(b"\r\n", start + 2)
    return data[:start] + data[end:]


def header_value(head: bytes, name: bytes) -> bytes | None:
    """The value of the first `name:` field of a lowercased head, stripped."""
    start = head.find(b"\r\n" + name + b":")
    if start < 0:
        return None
    start += len(name) + 3
    end = head.find(b"\r\n", start)
    return head[start : end if end >= 0 else len(head)].strip()


def read_some(conn) -> bool:
    """Add what the connection's socket holds to `conn.arrived`, without waiting; whether
    the sender has closed its side."""
    try:
        data = conn.sock.recv(RECV_BYTES, socket.MSG_DONTWAIT)
    except BlockingIOError:
        return False
    except OSError:
        return True
    conn.arrived += data
    return not data


class DeadlineReads:
    """A socket whose `recv` gives up (`TimeoutError`) at `deadline`, for a request handed
    to a thread before all of it arrived. A shorter timeout already set (gunicorn's, when
    it drains a body the app left unread) still applies. Everything else is the socket's
    own."""

    def __init__(self, sock: socket.socket, deadline: float):
        self.sock, self.deadline = sock, deadline

    def recv(self, size: int) -> bytes:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request did not arrive in time")
        before = self.sock.gettimeout()
        self.sock.settimeout(remaining if before is None else min(before, remaining))
        try:
            return self.sock.recv(size)
        finally:
            self.sock.settimeout(before)

    def __getattr__(self, name):
        return getattr(self.sock, name)


def error_answer(status: str, code: str, message: str) -> bytes:
    """A whole HTTP answer in the API's error shape, closing the connection."""
    request_id = "req_" + os.urandom(8).hex()
    error = {"code": code, "message": message, "requestId": request_id}
    body = json.dumps({"error": error}, separators=(",", ":")).encode()
    head = (
        f"HTTP/1.1 {status}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nX-Request-Id: {request_id}\r\n\r\n"
    )
    return head.encode() + body


class BufferingWorker(ThreadWorker):
    """gthread, with a request served by a thread only once all of it has come.

    The thread that takes a readable connection reads what is there, and waits a moment
    (`REST_WAIT_SECONDS`) for the rest if need be. Most requests are then whole, and served
    at once; the others go back to the main loop, which reads the rest as it comes and
    submits the connection again when it is all in.
    (Reading first in the main loop would cost every request: each socket call there lets
    the GIL go, and the main loop then waits for it behind the other threads.)
    """

    def init_process(self):
        self.body_limit = settings_from_env().max_body_bytes
        self.reading = {}  # connection -> deadline
        self.lingering = collections.OrderedDict()  # closed, waiting for the client's FIN
        super().init_process()

    def handle(self, conn):
        """In the thread: serve the request if it has all come, else hand the connection
        back to the main loop (`WAIT`) without waiting."""
        if self.cfg.is_ssl:
            return super().handle(conn)
        if getattr(conn, "arrival", None) is None:
            self.start_request(conn)
        if not conn.whole:
            ended = self.read_what_came(conn)
            if ended and not conn.arrived:  # closed between requests
                return False
            if not (ended or conn.arrival.complete(conn.arrived)):
                return WAIT
        arrived = conn.arrived
        if conn.continued:
            arrived = without_expect(arrived)
        conn.arrival = None  # the next request starts afresh
        conn.init()
        conn.parser.unreader.unread(arrived)
        # A request all there never reads the socket; the rest of a body handed over early
        # (one the receiver refuses unread) must come by the deadline.
        conn.parser.unreader.sock = DeadlineReads(conn.sock, conn.deadline)
        return super().handle(conn)

    def read_what_came(self, conn) -> bool:
        """In the thread: read what has come of the request, and, the first time, wait
        `REST_WAIT_SECONDS` at most for the rest; whether the sender closed its side."""
        ended = read_some(conn)
        wait_until = time.monotonic() + REST_WAIT_SECONDS if conn.first_read else 0
        conn.first_read = False
        waiting = None
        while not (ended or conn.arrival.complete(conn.arrived)):
            remaining = wait_until - time.monotonic()
            if remaining <= 0:
                return False
            if waiting is None:
                waiting = select.poll()
                waiting.register(conn.sock, select.POLLIN)
            if not waiting.poll(remaining * 1000):
                return False
            ended = read_some(conn)
        return ended

    def start_request(self, conn) -> None:
        """A request begins on `conn`: with what gunicorn read ahead, if anything."""
        conn.close = partial(self.close_connection, conn)
        held = b""
        if conn.parser is not None:
            held = conn.parser.unreader.buf.getvalue()
            conn.parser.unreader.buf.seek(0)
            conn.parser.unreader.buf.truncate()
        conn.arrived, conn.arrival = bytearray(held), Arrival(self.body_limit)
        conn.whole = conn.continued = False
        conn.first_read = True
        conn.deadline = time.monotonic() + self.cfg.timeout

    def finish_request(self, conn, fs):
        """In the main loop, after the thread: a request that has not all come waits in the
        poller; anything else is gthread's."""
        if not fs.cancelled() and fs.exception() is None and fs.result() is WAIT:
            self.wait_for_more(conn)
        else:
            super().finish_request(conn, fs)

    def wait_for_more(self, conn) -> None:
        if not conn.arrived:  # nothing sent yet: idle, as a kept-alive connection can be
            conn.deadline = time.monotonic() + max(self.cfg.keepalive, 2)
        conn.sock.setblocking(False)
        self.reading[conn] = conn.deadline
        if self.still_waiting(conn):
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_readable, conn))

    def on_readable(self, conn, _fileobj=None):
        """Read what a waiting connection holds; submit it once the request is all in."""
        idle = not conn.arrived
        ended = read_some(conn)
        if idle and conn.arrived:  # a request begins: it has `timeout` to come
            conn.deadline = self.reading[conn] = time.monotonic() + self.cfg.timeout
        if not (ended or conn.arrival.complete(conn.arrived)):
            self.still_waiting(conn)
            return
        if ended and not conn.arrived:  # closed before it sent anything
            self.drop(conn)
            return
        del self.reading[conn]
        self.poller.unregister(conn.sock)
        conn.whole = True
        self.enqueue_req(conn)

    def still_waiting(self, conn) -> bool:
        """Whether `conn` may wait for more: not when its headers have gone on too long
        (431). Sends `100 Continue` when the sender waits for it to send its body."""
        arrival = conn.arrival
        if arrival.body_start < 0 and len(conn.arrived) > MAX_HEAD_BYTES:
            message = f"The request's headers are over {MAX_HEAD_BYTES} bytes."
            self.refuse(conn, "431 Request Header Fields Too Large", "headers_too_large", message)
            return False
        if arrival.expects_continue and not conn.continued:
            conn.continued = True
            with contextlib.suppress(OSError):
                conn.sock.send(CONTINUE)
        return True

    def refuse(self, conn, status: str, code: str, message: str) -> None:
        """Answer a request that will not be read and close its connection."""
        with contextlib.suppress(OSError):
            conn.sock.send(error_answer(status, code, message))
        peer = conn.client[0] if isinstance(conn.client, tuple) else conn.client
        self.log.info("%s %s from %s", status.split()[0], code, peer)
        self.drop(conn, graceful=True)

    def drop(self, conn, graceful: bool = False) -> None:
        self.reading.pop(conn, None)
        with contextlib.suppress(KeyError, ValueError):
            self.poller.unregister(conn.sock)
        self.nr_conns -= 1
        conn.close(graceful=graceful)

    def close_connection(self, conn, graceful: bool = False) -> None:
        """The connection's `close`. A graceful close (after an answer that closes the
        connection) sends FIN and then reads until the client closes too, so that data the
        client still sends does not make the kernel reset the answer; it waits for that in
        the poller, for `LINGER_SECONDS` at most."""
        if graceful:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_WR)
                conn.sock.setblocking(False)
                self.lingering[conn] = time.monotonic() + LINGER_SECONDS
                self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.linger, conn))
                return
        with contextlib.suppress(OSError):
            conn.sock.close()

    def linger(self, conn, _fileobj=None) -> None:
        """Read and drop what a closed connection still sends; close it at its end."""
        try:
            if conn.sock.recv(RECV_BYTES):
                return
        except BlockingIOError:
            return
        except OSError:
            pass
        self.end_linger(conn)

    def end_linger(self, conn) -> None:
        del self.lingering[conn]
        with contextlib.suppress(KeyError, ValueError):
            self.poller.unregister(conn.sock)
        with contextlib.suppress(OSError):
            conn.sock.close()

    def murder_keepalived(self, *args, **kwargs):
        """gthread's own pass over idle connections (each turn of the main loop), and ours
        over the requests still arriving: 408 past their deadline. A connection that has
        sent nothing is closed after `keepalive`, or at once when the worker stops."""
        super().murder_keepalived(*args, **kwargs)
        now = time.monotonic()
        while self.lingering:
            conn, deadline = next(iter(self.lingering.items()))
            if deadline > now and not kwargs.get("force"):
                break
            self.end_linger(conn)
        for conn, deadline in list(self.reading.items()):
            if conn.arrived and (deadline <= now or kwargs.get("force")):
                message = f"The request did not arrive whole within {self.cfg.timeout} s."
                self.refuse(conn, "408 Request Timeout", "request_timeout", message)
            elif not conn.arrived and (deadline <= now or not self.alive):
                self.drop(conn)  # idle: closed as gthread closes its kept-alive connections
