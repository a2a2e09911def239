"""Fixtures for the fault, load and security suite."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from aioredstream.testing import ServerProcess, free_port

from .tls import Certs, make_certs


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("tls"))


class TLSServer(ServerProcess):
    """A server that listens with TLS only (the plain port is off)."""

    def __init__(self, binary: str, certs: Certs, args: list[str] | None = None) -> None:
        tls_port = free_port()
        super().__init__(
            binary,
            kind="redis-tls",
            port=tls_port,
            args=[
                "--tls-port", str(tls_port),
                "--tls-cert-file", str(certs.cert),
                "--tls-key-file", str(certs.key),
                "--tls-ca-cert-file", str(certs.ca),
                "--tls-auth-clients", "no",
                "--tls-replication", "yes",
                *(args or []),
            ],
        )  # fmt: skip
        self.certs = certs

    def command(self) -> list[str]:
        command = super().command()
        command[command.index("--port") + 1] = "0"  # no plain-text listener
        return command

    @property
    def url(self) -> str:
        return f"rediss://{self.host}:{self.port}/0"

    def ping(self, timeout_s: float = 0.5) -> bool:
        import socket
        import ssl

        context = ssl.create_default_context(cafile=str(self.certs.ca))
        try:
            with (
                socket.create_connection((self.host, self.port), timeout=timeout_s) as raw,
                context.wrap_socket(raw, server_hostname=self.host) as sock,
            ):
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False


@pytest.fixture
def tls_pair(certs: Certs) -> Iterator[tuple[TLSServer, TLSServer]]:
    """A TLS primary and a replica replicating over TLS (Redis only: the embedded
    Valkey is built without TLS)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no redis-server on PATH (the embedded Valkey has no TLS)")
    primary = TLSServer(binary, certs).start()
    replica = TLSServer(binary, certs, ["--replicaof", primary.host, str(primary.port)]).start()
    try:
        yield primary, replica
    finally:
        replica.cleanup()
        primary.cleanup()


def tls_kwargs(ca: Path) -> dict[str, object]:
    return {"ssl_ca_certs": str(ca)}
