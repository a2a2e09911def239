"""aioredstream: keep secondary stores in sync with your database through Redis streams."""

from __future__ import annotations

from ._keys import Keys
from ._records import Model, Registry, default_registry, register
from ._sharding import shard_of
from .errors import (
    ArgumentError,
    PayloadError,
    RecordError,
    RedstreamError,
    ReplicationError,
    ServerConnectionError,
    ServerError,
    ServerTimeoutError,
    TopologyError,
    UnsupportedError,
)
from .producer import Producer

__all__ = [
    "ArgumentError",
    "Keys",
    "Model",
    "PayloadError",
    "Producer",
    "RecordError",
    "RedstreamError",
    "Registry",
    "ReplicationError",
    "ServerConnectionError",
    "ServerError",
    "ServerTimeoutError",
    "TopologyError",
    "UnsupportedError",
    "default_registry",
    "register",
    "shard_of",
]

__version__ = "0.1.0"
