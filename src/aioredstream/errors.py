"""Every error aioredstream raises.

The tree:

    RedstreamError
    ├── RecordError          a record cannot be streamed (no stream name, no payload method)
    │   └── PayloadError     a record's payload cannot be serialised to JSON
    ├── ArgumentError        an argument is out of range or inconsistent (ids vs records, names)
    ├── EventLoopError       the client was first used in another event loop
    ├── MessageError         a stream entry has no ``payload`` field, or it is not UTF-8 JSON
    ├── ReplicationError     WAIT / WAITAOF got fewer acknowledgements than required
    ├── UnsupportedError     the server lacks a command the call needs (e.g. WAITAOF on Redis < 7.2)
    ├── MissingExtraError    an integration's optional extra is not installed (an ImportError)
    ├── ServerError          the server answered a command with an error reply
    │   └── ServerUnavailableError*  LOADING, BUSY or MASTERDOWN: not serving for now
    ├── ServerConnectionError the server cannot be reached, or the connection was lost mid-call
    │   ├── TopologyError    a cluster went down or kept redirecting, or a primary was demoted
    │   └── ServerUnavailableError*
    └── ServerTimeoutError   the server did not answer within the client's socket timeout

    * one class with both bases

``except ServerConnectionError`` catches every "Redis is unavailable for now" error:
lost connections, topology changes and a server that is loading its data, running a
long script or cut off from its primary; ``except ServerError`` still catches every
error reply, those included.

Errors of redis-py and of the socket layer are translated at one boundary
(``aioredstream.send.wire``) and chained, so ``exc.__cause__`` is the original; an
error reply gets its class in one place (``aioredstream._failures``).
Cancellation is never translated.

Where it happened is in attributes as well as in the message, so a caller can
retry one record or log the node without parsing text:

- [`ServerError`][aioredstream.errors.ServerError] (and
  [`ServerUnavailableError`][aioredstream.errors.ServerUnavailableError]),
  [`ReplicationError`][aioredstream.errors.ReplicationError] and
  [`TopologyError`][aioredstream.errors.TopologyError] carry
  ``command`` (the command the server answered, e.g. ``"XADD"``, ``"WAIT"``;
  ``None`` when it is not known, e.g. a redis-py call), ``index`` (the position
  in the call of the record whose command failed, ``None`` when it is not one
  record's) and ``node`` (the server, ``"host:port"``; ``None`` when it is not
  known). ``str(exc)`` reads ``XADD (record at index 2) on 127.0.0.1:6379:
  WRONGTYPE ...``.
- [`RecordError`][aioredstream.errors.RecordError] and
  [`PayloadError`][aioredstream.errors.PayloadError] carry ``index`` and
  ``record_type``; ``str(exc)`` reads ``record at index 2 of type app.User: ...``.
"""

from __future__ import annotations

__all__ = [
    "ArgumentError",
    "EventLoopError",
    "MessageError",
    "MissingExtraError",
    "PayloadError",
    "RecordError",
    "RedstreamError",
    "ReplicationError",
    "ServerConnectionError",
    "ServerError",
    "ServerTimeoutError",
    "ServerUnavailableError",
    "TopologyError",
    "UnsupportedError",
]


class RedstreamError(Exception):
    """Base class of every error raised by aioredstream."""


class _Located:
    """Where a server error happened: ``command``, ``index`` and ``node`` (see above).

    A mixin, not an error of its own: it goes before the error base in the bases.
    """

    def __init__(
        self,
        message: str,
        *,
        command: str | None = None,
        index: int | None = None,
        node: str | None = None,
    ) -> None:
        super().__init__(message)  # type: ignore[call-arg]  # the error base's
        self.command = command
        self.index = index
        self.node = node


class RecordError(RedstreamError, TypeError):
    """A record cannot be streamed: it names no stream or offers no payload.

    ``index`` is the record's position in the call (``None`` for single-record
    calls) and ``record_type`` its class.
    """

    def __init__(self, message: str, *, index: int | None = None, record_type: type | None = None):
        super().__init__(message)
        self.index = index
        self.record_type = record_type


class PayloadError(RecordError, ValueError):
    """A record's payload is not JSON-serialisable (including NaN and Infinity)."""


class ArgumentError(RedstreamError, ValueError):
    """An argument is invalid: a bad name, a count that does not match, a negative duration."""


class MessageError(RedstreamError, ValueError):
    """A stream entry has no ``payload`` field, or its payload is not UTF-8 JSON.

    Workers never hand such entries to a handler: they log them and move past
    them (see [`Consumer`][aioredstream.Consumer]). ``message_id`` names the entry.
    """

    def __init__(self, message: str, *, message_id: str) -> None:
        super().__init__(message)
        self.message_id = message_id


class ReplicationError(_Located, RedstreamError):
    """Fewer replicas (or AOF fsyncs) acknowledged the writes than required.

    The writes are on the primary; their durability is not proven.
    ``acknowledged`` and ``required`` are the replica counts; for WAITAOF,
    ``local_acknowledged`` / ``local_required`` give the local fsync counts.
    ``command`` is ``"WAIT"`` or ``"WAITAOF"``, ``index`` is ``None`` (the wait
    vouches for every write before it) and ``node`` the server that fell short
    (``host:port``). On a cluster, ``nodes`` names every node that fell short and
    the counts are the lowest among them; ``node`` is ``None`` when several did.
    """

    def __init__(
        self,
        message: str,
        *,
        acknowledged: int,
        required: int,
        local_acknowledged: int | None = None,
        local_required: int | None = None,
        nodes: tuple[str, ...] = (),
        command: str | None = None,
        index: int | None = None,
        node: str | None = None,
    ) -> None:
        super().__init__(message, command=command, index=index, node=node)
        self.nodes = nodes
        self.acknowledged = acknowledged
        self.required = required
        self.local_acknowledged = local_acknowledged
        self.local_required = local_required


class EventLoopError(RedstreamError):
    """The client's connections belong to another event loop (usually a closed one).

    A ``redis.asyncio`` client is bound to the loop it first connected in. Calling
    ``asyncio.run()`` twice with one module-level client, or pytest-asyncio's
    per-test loops with a client built at import time, meet this. Build the client
    (and the producer or worker on it) inside the loop that uses it: in a FastAPI
    lifespan, in ``main()``, or in a test fixture.
    """


class UnsupportedError(RedstreamError):
    """The server does not support a command the call needs."""


class MissingExtraError(RedstreamError, ModuleNotFoundError):
    """An integration was imported without its optional extra: ``import
    aioredstream.integrations.otel`` without ``opentelemetry-api``.

    The message says what to install (``pip install 'aioredstream[otel]'``); ``extra``
    names the extra and ``name`` the missing module, as for any
    ``ModuleNotFoundError``, so ``except ImportError`` still catches it.
    """

    def __init__(self, message: str, *, extra: str, name: str | None = None) -> None:
        super().__init__(message, name=name)
        self.extra = extra


class ServerError(_Located, RedstreamError):
    """The server replied to a command with an error (e.g. ``WRONGTYPE``).

    ``command`` is that command (``"XADD"``; ``None`` for an error of a redis-py
    call, such as the connection's handshake), ``index`` the position in the call
    of the record it wrote (``None`` when it was not one record's), ``node`` the
    server (``host:port``, ``None`` when unknown).
    """


class ServerConnectionError(RedstreamError, ConnectionError):
    """The connection failed or was lost, or none was had within the producer's
    ``connect_timeout_s``; replies of the call may be missing.

    Writes sent before the failure may or may not have been applied: under
    at-least-once delivery, retrying the call is safe.
    """


class TopologyError(_Located, ServerConnectionError):
    """The deployment changed under the call: a cluster node answered ``TRYAGAIN`` or
    ``CLUSTERDOWN``, kept redirecting (``MOVED``/``ASK``, which the producer otherwise
    follows), or a primary answered ``READONLY`` (it was demoted).

    Those commands were not applied; others of the call may have been. The producer
    refreshes its view (the cluster's slot map, Sentinel's primary) before its next
    call, so retrying the whole call is safe and writes at most duplicates.

    ``command``, ``index`` and ``node`` are as for
    [`ServerError`][aioredstream.errors.ServerError]: the
    refused command (``"XADD"``), the record's position in the call and the node
    that answered; for a slot that no node serves in the client's slot map,
    ``node`` is ``None``.
    """


class ServerTimeoutError(RedstreamError, TimeoutError):
    """The server did not answer within the client's ``socket_timeout``."""


class ServerUnavailableError(ServerError, ServerConnectionError):
    """The server is up but not serving commands for now, and refused the command.

    Its reply was ``LOADING`` (it is loading its data set after a restart), ``BUSY``
    (a script or function runs past ``busy-reply-threshold``) or ``MASTERDOWN`` (a
    replica with ``replica-serve-stale-data no`` lost its primary). The refused
    command was not applied; others of the call may have been, so retrying the call
    later is safe. Workers log it and retry after their backoff.

    Both a `ServerError` (``command``, ``index`` and ``node`` as there) and a
    `ServerConnectionError`, so handlers of either catch it.
    """
