"""What `connection.py` relies on of redis-py below its command API, checked against the
installed version (the kit runs this file on the lowest allowed redis-py and the newest).

`ScriptRunner`, the intake's hot path, keeps one connection per thread made by the
client's pool and talks to it directly; `_Parser` reads NOREPLICAS as `NoReplicas`. A
redis-py release that renames or reshapes any of these fails here, not in production.
"""

from __future__ import annotations

import inspect

import hiredis
import pytest
import redis
from redis.connection import AbstractConnection, ConnectionPool, DefaultParser

from {{ cookiecutter.package_name }}.connection import NoReplicas, _Parser

# (owner, method, the parameters `connection.py` passes or relies on, in order)
USED = [
    (ConnectionPool, "make_connection", ["self"]),
    (AbstractConnection, "connect", ["self"]),
    (AbstractConnection, "disconnect", ["self"]),
    (AbstractConnection, "send_packed_command", ["self", "command", "check_health"]),
    (AbstractConnection, "read_response", ["self"]),
]


@pytest.mark.parametrize(("owner", "name", "parameters"), USED, ids=[u[1] for u in USED])
def test_redis_py_has_the_connection_methods_the_script_runner_uses(owner, name, parameters):
    signature = inspect.signature(getattr(owner, name))
    assert list(signature.parameters)[: len(parameters)] == parameters
    # Whatever follows has a default: the runner passes nothing more.
    for extra in list(signature.parameters.values())[len(parameters) :]:
        assert extra.default is not inspect.Parameter.empty or extra.kind in (
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
        ), f"{owner.__name__}.{name} now requires {extra.name}"


def test_a_pool_connection_answers_a_packed_command(redis_conn):
    """The runner's round trip: a connection from the pool, a command packed by hiredis,
    the reply read back as redis-py parses it."""
    connection = redis_conn.connection_pool.make_connection()
    try:
        connection.connect()
        packed = hiredis.pack_command(("ECHO", "framed"))
        connection.send_packed_command([packed], check_health=False)
        assert connection.read_response() == b"framed"
    finally:
        connection.disconnect()


def test_the_parser_hook_reads_noreplicas_as_no_replicas():
    """`parse_error` is the classmethod redis-py calls for each error reply."""
    assert isinstance(inspect.getattr_static(DefaultParser, "parse_error"), classmethod)
    assert isinstance(_Parser.parse_error("NOREPLICAS Not enough good replicas"), NoReplicas)
    wrapped = "ERR Error running script (call to f_x): -NOREPLICAS Not enough good replicas"
    assert isinstance(_Parser.parse_error(wrapped), NoReplicas)
    assert type(_Parser.parse_error("ERR unknown command")) is redis.ResponseError
