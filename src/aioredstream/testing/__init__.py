"""Test helpers: throwaway servers for your own tests (extra ``testing``)."""

from __future__ import annotations

from ._server import ServerProcess, find_server_binary, free_port, valkey_binary
from ._topologies import ClusterDeployment, SentinelDeployment, SentinelProcess, wait_until

__all__ = [
    "ClusterDeployment",
    "SentinelDeployment",
    "SentinelProcess",
    "ServerProcess",
    "find_server_binary",
    "free_port",
    "valkey_binary",
    "wait_until",
]
