"""aioredstream: keep secondary stores in sync with your database through Redis streams."""

from __future__ import annotations

from ._keys import Keys
from ._records import Model, Registry, default_registry, register
from ._sharding import shard_of
from ._version import __version__ as __version__
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
    ServerUnavailableError,
    TopologyError,
    UnsupportedError,
)
from .ops.runner import Runnable, run_workers
from .ops.status import ConsumerStatus, ShardGroup, Status, StreamStatus, status
from .producer import Producer
from .workers._streams import max_consumer_id, max_stream_id, stream_size
from .workers.consumer import Consumer
from .workers.delayer import Delayer
from .workers.lock import Lock
from .workers.message import Message
from .workers.retry import Retry, exponential
from .workers.trimmer import Trimmer

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
    "ServerUnavailableError",
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
