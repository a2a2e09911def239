"""Test helpers: throwaway servers for your own tests (extra ``testing``)."""

from __future__ import annotations

from ._server import ServerProcess, find_server_binary, free_port, valkey_binary

__all__ = ["ServerProcess", "find_server_binary", "free_port", "valkey_binary"]
