"""aioredstream: keep secondary stores in sync with your database through Redis streams."""

from __future__ import annotations

from ._keys import Keys
from ._records import Model, Registry, default_registry, register
from ._runner import Runnable, run_workers
from ._sharding import shard_of
from ._status import ConsumerStatus, ShardGroup, Status, StreamStatus, status
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
from .retry import Retry, exponential
from .trimmer import Trimmer

__all__ = [
    "ArgumentError",
    "Consumer",
    "ConsumerStatus",
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
    "Retry",
    "Runnable",
    "ServerConnectionError",
    "ServerError",
    "ServerTimeoutError",
    "ShardGroup",
    "Status",
    "StreamStatus",
    "TopologyError",
    "Trimmer",
    "UnsupportedError",
    "default_registry",
    "exponential",
    "max_consumer_id",
    "max_stream_id",
    "register",
    "run_workers",
    "shard_of",
    "status",
    "stream_size",
]

__version__ = "0.1.0"
