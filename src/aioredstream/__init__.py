"""aioredstream: keep secondary stores in sync with your database through Redis streams."""

from __future__ import annotations

from ._keys import Keys
from ._records import Model, Registry, default_registry, register
from ._sharding import shard_of
from ._streams import max_consumer_id, max_stream_id, stream_size
from .consumer import Consumer
from .delayer import Delayer
from .errors import (
    ArgumentError,
    EventLoopError,
    MessageError,
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
from .lock import Lock
from .message import Message
from .producer import Producer
from .trimmer import Trimmer

__all__ = [
    "ArgumentError",
    "Consumer",
    "Delayer",
    "EventLoopError",
    "Keys",
    "Lock",
    "Message",
    "MessageError",
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
    "Trimmer",
    "UnsupportedError",
    "default_registry",
    "max_consumer_id",
    "max_stream_id",
    "register",
    "shard_of",
    "stream_size",
]

__version__ = "0.1.0"
