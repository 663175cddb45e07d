"""A replicated Redis for failover tests: a primary, a replica and three Sentinels.

Real `redis-server` processes on free local ports, configured as the deploy example
(`deploy/redis-sentinel/`) configures them, with Sentinel's timings shortened so that a
failover takes about two seconds. The test drives the faults: a replica paused and cut off
from its primary, a primary killed, the old primary brought back as a replica.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import redis
from processes import project_env, running, wait_for

from {{ cookiecutter.package_name }}.dev.embedded_redis import find_redis_server, free_port

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEPLOY = PROJECT_ROOT / "deploy" / "redis-sentinel"
MASTER = "tw-master"
# Faster than production's, so that a test's failover is over in a couple of seconds.
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000


class Topology:
    """Start with `with Topology(tmp_path) as redis_nodes:`; every process is stopped at
    the end of the block, whatever state the test left it in."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.stack = contextlib.ExitStack()
        self.nodes: dict[int, subprocess.Popen] = {}  # data nodes' processes by port
        self.primary_port = free_port()
        self.replica_port = free_port()
        self.sentinel_ports = [free_port() for _ in range(3)]

    def __enter__(self) -> Topology:
        self.stack.__enter__()
        try:
            self.start_node(self.primary_port)
            self.start_node(self.replica_port, replica_of=self.primary_port)
            wait_for(lambda: self.link_up(self.replica_port), timeout=10)
            for port in self.sentinel_ports:
                self.start_sentinel(port)
            wait_for(self.sentinels_agree, timeout=20)
        except BaseException:
            self.stack.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stack.__exit__(*exc_info)

    # --- starting ----------------------------------------------------------------------

    def start_node(self, port: int, replica_of: int | None = None) -> None:
        """A data node from the deploy example's config (persistence as there)."""
        work = self.directory / f"redis-{port}"
        work.mkdir(exist_ok=True)
        config = work / "redis.conf"  # Sentinel has a node rewrite its own file
        config.write_text((DEPLOY / "redis.conf").read_text())
        command = [
            find_redis_server(), str(config),
            "--port", str(port), "--bind", "127.0.0.1", "--dir", str(work),
            "--save", "", "--appendonly", "no",  # tests need no files left behind
            # What WAIT alone does is under test: the deploy example's refusal of writes
            # while no replica is in sync would hide it (docs/reliability.md).
            "--min-replicas-to-write", "0",
        ]  # fmt: skip
        if replica_of is not None:
            command += ["--replicaof", "127.0.0.1", str(replica_of)]
        log = self.directory / f"redis-{port}.log"
        process = self.stack.enter_context(running(command, project_env("redis://unused"), log))
        self.nodes[port] = process
        wait_for(lambda: _pings(port), timeout=10)

    def start_sentinel(self, port: int) -> None:
        template = (DEPLOY / "sentinel.conf").read_text()
        config = self.directory / f"sentinel-{port}.conf"  # Sentinel rewrites its file
        config.write_text(
            template.replace("tw-master redis 6379", f"{MASTER} 127.0.0.1 {self.primary_port}")
            + f"\nport {port}\nbind 127.0.0.1\ndir {self.directory}\n"
            f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}\n"
        )
        command = [find_redis_server(), str(config), "--sentinel"]
        log = self.directory / f"sentinel-{port}.log"
        self.stack.enter_context(running(command, project_env("redis://unused"), log))

    # --- looking -----------------------------------------------------------------------

    @property
    def sentinels(self) -> str:
        """`TW_REDIS_SENTINELS` for these Sentinels."""
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    def env(self, **extra: str) -> dict[str, str]:
        """A deployed process's environment, reaching Redis through the Sentinels only."""
        return project_env(
            "redis://unused:1/0",  # host and port are Sentinel's to name
            TW_REDIS_SENTINELS=self.sentinels,
            TW_REDIS_SENTINEL_MASTER=MASTER,
            **extra,
        )

    def master_port(self) -> int | None:
        """The master's port as the Sentinels' majority names it (None while they differ)."""
        named = []
        for port in self.sentinel_ports:
            with contextlib.suppress(redis.RedisError):
                address = redis.Redis(port=port).sentinel_get_master_addr_by_name(MASTER)
                named.append(int(address[1]))
        best = max(set(named), key=named.count, default=None)
        return best if named.count(best) >= 2 else None

    def sentinel(self, number: int) -> redis.Redis:
        return redis.Redis(port=self.sentinel_ports[number])

    def master(self) -> redis.Redis:
        return redis.Redis(port=self.master_port())

    def sentinels_agree(self) -> bool:
        """Every Sentinel knows the master, its replica and the two other Sentinels."""
        for port in self.sentinel_ports:
            try:
                client = redis.Redis(port=port)
                if len(client.sentinel_slaves(MASTER)) < 1:
                    return False
                if len(client.sentinel_sentinels(MASTER)) < 2:
                    return False
            except redis.RedisError:
                return False
        return True

    def link_up(self, replica_port: int) -> bool:
        with contextlib.suppress(redis.RedisError):
            info = redis.Redis(port=replica_port).info("replication")
            return info.get("master_link_status") == "up"
        return False

    # --- faults ------------------------------------------------------------------------

    def pause(self, port: int) -> None:
        os.kill(self.nodes[port].pid, signal.SIGSTOP)

    def resume(self, port: int) -> None:
        os.kill(self.nodes[port].pid, signal.SIGCONT)

    def cut_off_replicas(self, primary_port: int) -> None:
        """Close the primary's links to its replicas (paused, they cannot come back): what
        the primary writes from now on reaches no replica, as in a network partition."""
        redis.Redis(port=primary_port).client_kill_filter(_type="replica")

    def kill(self, port: int) -> None:
        os.kill(self.nodes[port].pid, signal.SIGKILL)
        self.nodes[port].wait()

    def wait_for_failover(self, old_port: int, timeout: float = 20) -> int:
        """Wait until the Sentinels name another master and it takes writes; its port."""
        new = wait_for(lambda: (self.master_port() or old_port) != old_port and self.master_port())
        wait_for(lambda: _role(new) == "master", timeout=timeout)
        return new

    def rejoin_as_replica(self, port: int, primary_port: int) -> None:
        """Start the node on `port` again, empty, as a replica of `primary_port` (what an
        operator does with a dead primary); wait until it is in sync."""
        self.start_node(port, replica_of=primary_port)
        wait_for(lambda: self.link_up(port), timeout=20)


def _pings(port: int) -> bool:
    with contextlib.suppress(redis.RedisError):
        return redis.Redis(port=port, socket_timeout=1).ping()
    return False


def _role(port: int) -> str | None:
    with contextlib.suppress(redis.RedisError):
        return redis.Redis(port=port, socket_timeout=1).info("replication")["role"]
    return None


@contextlib.contextmanager
def topology(directory: Path) -> Iterator[Topology]:
    with Topology(directory) as nodes:
        yield nodes
