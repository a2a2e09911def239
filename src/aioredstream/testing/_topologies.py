"""Throwaway Redis Cluster and Sentinel deployments on free local ports.

Built from `ServerProcess` and plain ``CLUSTER``/``SENTINEL`` commands (no
``redis-cli``), so they work with ``redis-server`` and the embedded Valkey alike.
Setup is synchronous: these run in fixtures, before any event loop.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import redis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from ._server import ServerProcess, free_port

__all__ = ["ClusterDeployment", "SentinelDeployment", "SentinelProcess", "wait_until"]


def _admin(server: ServerProcess) -> redis.Redis:
    return redis.Redis(host=server.host, port=server.port, decode_responses=True, socket_timeout=5)


def wait_until(check: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    """Poll ``check`` (errors count as "not yet") until true, else raise naming ``what``."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (redis.RedisError, OSError) as exc:
            last = exc
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout_s}s waiting for {what} (last error: {last})")


def _call(server: ServerProcess, *args: Any) -> Any:
    with _admin(server) as conn:
        return conn.execute_command(*args)


class ClusterDeployment:
    """``primaries`` primaries with ``replicas`` replicas each, slots split evenly."""

    def __init__(
        self,
        binary: str,
        *,
        kind: str = "redis",
        primaries: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 1000,
    ) -> None:
        args = [
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(node_timeout_ms),
        ]  # fmt: skip
        count = primaries * (1 + replicas)
        self.kind = kind
        self.primary_count = primaries
        # An explicit bus port: the default (port + 10000) overflows for high free ports.
        self.bus_ports: dict[int, int] = {}
        self.nodes: list[ServerProcess] = []
        for _ in range(count):
            bus = free_port()
            node = ServerProcess(binary, kind=kind, args=[*args, "--cluster-port", str(bus)])
            self.bus_ports[node.port] = bus
            self.nodes.append(node)
        self.ids: dict[int, str] = {}

    @property
    def startup(self) -> tuple[str, int]:
        return self.nodes[0].host, self.nodes[0].port

    def start(self) -> ClusterDeployment:
        try:
            for node in self.nodes:
                node.start()
            self.ids = {node.port: _call(node, "CLUSTER", "MYID") for node in self.nodes}
            for node in self.nodes[1:]:
                _call(
                    self.nodes[0],
                    "CLUSTER",
                    "MEET",
                    node.host,
                    node.port,
                    self.bus_ports[node.port],
                )
            step = REDIS_CLUSTER_HASH_SLOTS // self.primary_count
            for i, node in enumerate(self.nodes[: self.primary_count]):
                last = (
                    REDIS_CLUSTER_HASH_SLOTS - 1
                    if i == self.primary_count - 1
                    else (i + 1) * step - 1
                )
                _call(node, "CLUSTER", "ADDSLOTSRANGE", i * step, last)
            wait_until(self._all_met, "every cluster node to know every other")
            for j, node in enumerate(self.nodes[self.primary_count :]):
                primary = self.nodes[j % self.primary_count]
                _call(node, "CLUSTER", "REPLICATE", self.ids[primary.port])
            wait_until(self.healthy, "the cluster to be ok with every replica acknowledging")
        except BaseException:
            self.cleanup()
            raise
        return self

    def _all_met(self) -> bool:
        for node in self.nodes:
            lines = str(_call(node, "CLUSTER", "NODES")).strip().splitlines()
            if len(lines) != len(self.nodes) or any("handshake" in line for line in lines):
                return False
        return True

    def live(self) -> list[ServerProcess]:
        return [node for node in self.nodes if node.process is not None]

    def primaries(self) -> list[ServerProcess]:
        """Live nodes that are primaries now (after failovers too)."""
        return [n for n in self.live() if _call(n, "ROLE")[0] == "master"]

    def node_at(self, name: str) -> ServerProcess:
        """The node behind a ``host:port`` name (as in ``ReplicationError.nodes``)."""
        port = int(name.rsplit(":", 1)[1])
        return next(node for node in self.nodes if node.port == port)

    def healthy(self) -> bool:
        """Every live node says ``cluster_state:ok`` and every primary's replicas ack writes."""
        for node in self.live():
            if "cluster_state:ok" not in str(_call(node, "CLUSTER", "INFO")):
                return False
        return all(self._acknowledged(primary) for primary in self.primaries())

    def _acknowledged(self, primary: ServerProcess) -> bool:
        replicas = [n for n in self.live() if n is not primary and self._replica_of(n, primary)]
        if not replicas:
            return True
        # A write into one of the primary's own slots, then WAIT: a fresh replica
        # acknowledges only some time after it is online.
        key = _key_on(primary)
        with _admin(primary) as conn:
            conn.set(key, "1")
            conn.delete(key)
            return int(conn.execute_command("WAIT", len(replicas), 200)) >= len(replicas)

    def _replica_of(self, node: ServerProcess, primary: ServerProcess) -> bool:
        role = _call(node, "ROLE")
        return role[0] == "slave" and int(role[2]) == primary.port and role[3] == "connected"

    def cleanup(self) -> None:
        for node in self.nodes:
            node.cleanup()

    def __enter__(self) -> ClusterDeployment:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def _key_on(primary: ServerProcess) -> str:
    """A key whose slot this primary owns."""
    owned: list[tuple[int, int]] = []
    for entry in _call(primary, "CLUSTER", "SLOTS"):
        if int(entry[2][1]) == primary.port:
            owned.append((int(entry[0]), int(entry[1])))
    for n in range(100_000):
        key = f"aioredstream:probe:{n}"
        slot = key_slot(key.encode())
        if any(low <= slot <= high for low, high in owned):
            return key
    raise RuntimeError(f"no probe key found for the node on port {primary.port}")


class SentinelProcess(ServerProcess):
    """``<server> <config> --sentinel``: the config file must be the first argument."""

    def __init__(self, binary: str, *, kind: str, monitor: ServerProcess, service: str) -> None:
        super().__init__(binary, kind=f"{kind}-sentinel")
        self.config_path = os.path.join(self.dir, "sentinel.conf")
        with open(self.config_path, "w") as config:
            config.write(
                f"sentinel monitor {service} {monitor.host} {monitor.port} 2\n"
                f"sentinel down-after-milliseconds {service} 1000\n"
                f"sentinel failover-timeout {service} 5000\n"
                f"sentinel parallel-syncs {service} 1\n"
            )

    def command(self) -> list[str]:
        return [
            self.binary, self.config_path, "--sentinel",
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", self.dir,
            "--logfile", self.log_path,
        ]  # fmt: skip


class SentinelDeployment:
    """One primary, one replica and ``sentinels`` sentinels (quorum 2) watching them."""

    def __init__(
        self, binary: str, *, kind: str = "redis", sentinels: int = 3, service: str = "mymaster"
    ) -> None:
        self.binary = binary
        self.kind = kind
        self.service = service
        self.servers = [ServerProcess(binary, kind=kind)]
        self.servers.append(
            ServerProcess(
                binary,
                kind=kind,
                args=["--replicaof", self.servers[0].host, str(self.servers[0].port)],
            )
        )
        self.sentinels = [
            SentinelProcess(binary, kind=kind, monitor=self.servers[0], service=service)
            for _ in range(sentinels)
        ]

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [(s.host, s.port) for s in self.sentinels]

    def start(self) -> SentinelDeployment:
        try:
            for server in self.servers:
                server.start()
            wait_until(lambda: self._acked(self.servers[0]), "the replica to acknowledge writes")
            for sentinel in self.sentinels:
                sentinel.start()
            wait_until(self._sentinels_ready, "the sentinels to see the replica and each other")
        except BaseException:
            self.cleanup()
            raise
        return self

    def _acked(self, primary: ServerProcess) -> bool:
        with _admin(primary) as conn:
            conn.set("aioredstream:probe", "1")
            conn.delete("aioredstream:probe")
            return int(conn.execute_command("WAIT", 1, 200)) >= 1

    def _sentinels_ready(self) -> bool:
        for sentinel in self.sentinels:
            with _admin(sentinel) as conn:
                # raw: redis-py 6.3-7.0's sentinel_master() fails in its own reply parser
                reply = conn.execute_command("SENTINEL", "MASTER", self.service)
                if not isinstance(reply, dict):  # RESP2: field, value, field, value, ...
                    reply = dict(zip(reply[::2], reply[1::2], strict=True))
                info = reply
                if int(info["num-other-sentinels"]) != len(self.sentinels) - 1:
                    return False
                if int(info["num-slaves"]) < 1:
                    return False
        return True

    def primary(self) -> ServerProcess:
        """The server the sentinels name as primary now."""
        _, port = _call(self.sentinels[0], "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
        return next(s for s in self.servers if s.port == int(port))

    def wait_for_failover(self, old: ServerProcess) -> ServerProcess:
        """Until every sentinel names a primary other than ``old`` and it accepts writes."""

        def promoted() -> bool:
            for sentinel in self.sentinels:
                _, port = _call(sentinel, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
                if int(port) == old.port:
                    return False
            return bool(_call(self.primary(), "ROLE")[0] == "master")

        wait_until(promoted, f"the sentinels to replace the primary on port {old.port}")
        return self.primary()

    def wait_for_replica(self, primary: ServerProcess) -> None:
        wait_until(lambda: self._acked(primary), f"a replica of port {primary.port} to ack")

    def cleanup(self) -> None:
        for process in [*self.sentinels, *self.servers]:
            process.cleanup()

    def __enter__(self) -> SentinelDeployment:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
