"""The one way this project opens Redis: a URL (`redis://`, `rediss://` for TLS,
`unix://`) or, when `TW_REDIS_SENTINELS` is set, the master that Sentinel names.

Timeouts are short on purpose: a receiver that waits a long time on a sick Redis ties up
its web workers, while a quick 503 makes the sender retry later, which is what we want.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

import hiredis
import redis
from redis.backoff import ExponentialBackoff
from redis.commands.core import Script
from redis.connection import DefaultParser
from redis.retry import Retry
from redis.sentinel import Sentinel

from .config import Settings

SOCKET_TIMEOUT_SECONDS = 5
CONNECT_TIMEOUT_SECONDS = 2
# One quick reconnect covers a connection Redis closed while idle; more would only delay
# the 503 that sends the sender away to retry later. A command retried after its reply was
# lost is harmless here: the intake script finds its own marker and answers "duplicate".
RETRY = Retry(ExponentialBackoff(cap=0.25, base=0.025), retries=1)


class NoReplicas(redis.ConnectionError):
    """The primary refused a write for want of replicas in sync (its
    `min-replicas-to-write`). Like a Redis out of reach it passes, and it is met the same
    way: the receiver answers 503, a worker waits and tries again, and redis-py's one
    retry applies. redis-py does the same with a demoted primary's READONLY."""


class _Parser(DefaultParser):
    """redis-py's parser, with NOREPLICAS read as `NoReplicas`: as Redis 7 answers it, and
    as Redis 6 wraps it in the error of a script that tried to write (RQ's, the intake's)."""

    @classmethod
    def parse_error(cls, response: str) -> redis.RedisError:
        if response.startswith("NOREPLICAS ") or (
            response.startswith("ERR Error running script") and "-NOREPLICAS " in response
        ):
            return NoReplicas(response)
        return super().parse_error(response)


def connect(settings: Settings) -> redis.Redis:
    """Return a client for the configured Redis (a pool is created, no I/O yet)."""
    options = {
        "socket_timeout": SOCKET_TIMEOUT_SECONDS,
        "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "health_check_interval": 30,
        "retry": RETRY,
        "parser_class": _Parser,
    }
    if settings.redis_sentinels:
        # REDIS_URL still carries the password, database and TLS choice for the master.
        url_options = redis.connection.parse_url(settings.redis_url)
        url_options.pop("host", None)
        url_options.pop("port", None)
        if url_options.pop("connection_class", None) is redis.SSLConnection:
            url_options["ssl"] = True
        sentinel = Sentinel(
            list(settings.redis_sentinels),
            sentinel_kwargs={"socket_timeout": SOCKET_TIMEOUT_SECONDS},
            **options,
        )
        return sentinel.master_for(settings.redis_sentinel_master, **url_options)
    return redis.Redis.from_url(settings.redis_url, **options)


def describe(settings: Settings) -> str:
    """Which Redis `connect` opens, for people: host and port (or socket), database, TLS;
    never a user name or password."""
    options = redis.connection.parse_url(settings.redis_url)
    database = f"db {options.get('db', 0)}"
    tls = " over TLS" if options.get("connection_class") is redis.SSLConnection else ""
    if settings.redis_sentinels:
        sentinels = ", ".join(f"{host}:{port}" for host, port in settings.redis_sentinels)
        master = settings.redis_sentinel_master
        return f"master {master!r} of the Sentinels {sentinels}, {database}{tls}"
    if "path" in options:
        return f"unix socket {options['path']}, {database}"
    return f"{options.get('host', 'localhost')}:{options.get('port', 6379)}, {database}{tls}"


class ScriptRunner:
    """Runs Lua scripts over one Redis connection per thread: the web tier's hot path.

    Every accepted event costs one script call, and redis-py's general command path (pool
    checkout with a readiness poll, argument encoding, instrumentation) spends about as
    much CPU again as the round trip itself. Here each thread keeps a connection of its
    own, made by the client's pool, so TLS, AUTH, the database number and Sentinel's choice
    of master stay redis-py's; hiredis packs the command in one call. A connection lost on
    the way is replaced and the call sent again once (`RETRY`), whatever client it came
    from: the pool's own check of idle connections is one of the steps skipped.
    """

    def __init__(self, client: redis.Redis):
        self.client = client
        self._local = threading.local()

    def run(self, script: Script, keys: Sequence, args: Sequence) -> object:
        """EVALSHA `script` (loading it again if Redis lost it); return its reply."""
        command = hiredis.pack_command(("EVALSHA", script.sha, len(keys), *keys, *args))
        try:
            return self._call(command)
        except redis.exceptions.NoScriptError:
            self.client.script_load(script.script)
            return self._call(command)

    def run_and_wait(
        self, script: Script, keys: Sequence, args: Sequence, wait: Sequence
    ) -> tuple[object, int]:
        """EVALSHA `script`, then `wait` (`WAIT replicas timeout`) on the same connection
        in the same send (`replication.py`); return the script's reply and the replicas
        that confirmed."""
        evalsha = ("EVALSHA", script.sha, len(keys), *keys, *args)
        commands = hiredis.pack_command(evalsha) + hiredis.pack_command(tuple(wait))
        try:
            return self._call(commands, replies=2)
        except redis.exceptions.NoScriptError:
            self.client.script_load(script.script)
            return self._call(commands, replies=2)

    def _call(self, command: bytes, replies: int = 1) -> object:
        connection = self._connection()
        # Connect (through Sentinel when configured) outside the command's retries, as
        # redis-py's client does: a Redis that cannot be reached fails after the
        # connection's own connect retries, not twice that.
        connection.connect()
        send = _send if replies == 1 else _send_two
        return RETRY.call_with_retry(
            lambda: send(connection, command), lambda error: connection.disconnect()
        )

    def _connection(self) -> redis.connection.AbstractConnection:
        local = self._local
        if getattr(local, "pid", None) != os.getpid():  # new thread, or a forked child
            local.connection = self.client.connection_pool.make_connection()
            local.pid = os.getpid()
        return local.connection


def _send(connection: redis.connection.AbstractConnection, command: bytes) -> object:
    # redis-py drops the connection on any error while sending or reading, so a reply
    # still on its way after a timeout is never read as the next command's.
    connection.connect()  # a no-op unless a failed try dropped the connection
    connection.send_packed_command([command], check_health=False)
    return connection.read_response()


def _send_two(connection: redis.connection.AbstractConnection, commands: bytes) -> tuple:
    """Send two packed commands, read both replies; an error reply to the first (a script
    Redis lost) is raised once the second's reply is read, so none is left behind."""
    connection.connect()
    connection.send_packed_command([commands], check_health=False)
    try:
        first = connection.read_response()
    except redis.exceptions.ResponseError:
        connection.read_response()
        raise
    return first, connection.read_response()
