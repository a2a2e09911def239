"""The trimmer: delete what every consumer of a stream has committed."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import anyio

from .. import _telemetry
from .._validate import check_name, check_seconds, parse_id
from ..errors import ArgumentError, ServerError
from ..send import command as _command
from ._loop import plural, run_forever, run_step_once
from ._streams import Client, decode, keys_for, next_id
from .lock import Lock, worker_lock_name

__all__ = ["Trimmer"]

logger = logging.getLogger("aioredstream.trimmer")

_XDEL_BATCH = 1000


class Trimmer:
    """Deletes the entries of ``stream_name`` up to the lowest offset of ``consumer_names``.

    Pass every consumer that reads the stream: one left out may lose entries it
    has not read yet ([`run`][aioredstream.Trimmer.run] warns about unlisted offsets). A
    listed consumer that has not committed yet holds trimming back, with a warning
    once per ``interval`` (the gem trims up to the others' offsets, so a consumer whose
    first batch failed found those entries gone). Runs under the lock
    ``trimmer:<stream_name>`` and sleeps ``interval`` seconds when there is nothing to
    trim. ``client`` may be a ``RedisCluster`` (the offsets
    share the stream's slot, so one MGET reads them); ``hash_tags`` as for the producer.
    """

    def __init__(
        self,
        client: Client,
        *,
        stream_name: str,
        consumer_names: Iterable[str],
        interval: float = 30.0,
        namespace: str | None = None,
        backoff: float = 5.0,
        hash_tags: bool | None = None,
    ) -> None:
        check_name(stream_name)
        if isinstance(consumer_names, str | bytes):
            raise ArgumentError(f"consumer_names must be a list of names, got {consumer_names!r}")
        names = [check_name(name, "consumer name") for name in consumer_names]
        if not names:
            raise ArgumentError("consumer_names must name at least one consumer")
        self.stream_name = stream_name
        self.consumer_names = names
        self.interval = check_seconds(interval, "interval")
        self.backoff = check_seconds(backoff, "backoff")
        keys = keys_for(client, namespace, hash_tags)
        self.keys = keys
        self._client = client
        self._stream_key = keys.stream(stream_name)
        self._offset_keys = [keys.offset(stream_name, name) for name in names]
        self._minid = True  # XTRIM MINID (Redis >= 6.2, Valkey); else XRANGE + XDEL
        self.lock = Lock(
            client,
            worker_lock_name("trimmer", stream_name),
            namespace=namespace,
            hash_tags=keys.hash_tags,
        )

    async def run(self) -> None:
        """Trim until cancelled, holding the lock; errors are logged, then ``backoff``.

        First warns (once) about offsets on the server of consumers not in
        ``consumer_names``: the trimmer does not wait for them.
        """
        await self._warn_unlisted()
        await run_forever(
            self.lock,
            self._step,
            logger=logger,
            what=f"trimmer on {self.stream_name}",
            backoff=self.backoff,
        )

    async def run_once(self) -> int:
        """Trim once under the lock and return how many entries went; sleep if none did."""
        return await run_step_once(self.lock, self._step, 0)

    async def _step(self) -> int:
        trimmed = await self.trim()
        if trimmed == 0:
            await anyio.sleep(self.interval)
        return trimmed

    async def unlisted_consumers(self) -> list[str]:
        """Consumers with an offset on this stream that are not in ``consumer_names``."""
        pattern = self.keys.offset_pattern(self.stream_name)
        prefix = pattern.removesuffix("*")
        found = {key[len(prefix) :] for key in await _command.scan(self._client, pattern, "string")}
        return sorted(found - set(self.consumer_names))

    async def _warn_unlisted(self) -> None:
        try:
            unlisted = await self.unlisted_consumers()
        except Exception as exc:  # only a warning is at stake; run() reports server errors
            logger.debug("could not look for unlisted consumers of %s: %s", self.stream_name, exc)
            return
        if unlisted:
            logger.warning(
                "consumers %s have offsets on %s but are not in this trimmer's consumer_names: "
                "it may delete entries they have not read",
                ", ".join(unlisted),
                self.stream_name,
            )

    async def min_committed_id(self) -> str | None:
        """The lowest committed offset of the named consumers (compared as ids, not strings);
        ``None`` while any of them has not committed yet."""
        # The offsets share the stream's slot (hash tags) or live on one node.
        values: Any = await _command.run(
            self._client,
            "MGET",
            *self._offset_keys,
            key=self._stream_key,
            what=f"MGET offsets of {self.stream_name}",
        )
        missing = [
            name for name, value in zip(self.consumer_names, values, strict=True) if not value
        ]
        if missing:
            logger.warning(
                "not trimming %s: consumers %s have not committed an offset yet",
                self.stream_name,
                ", ".join(missing),
            )
            return None
        return min((decode(value) for value in values), key=parse_id)

    async def trim(self) -> int:
        """Delete every entry up to and including the lowest committed offset; nothing
        while a named consumer has not committed (it is logged)."""
        with _telemetry.batch("trim", self.stream_name) as batch:
            count = await self._trim()
            batch.set_count(count)
        return count

    async def _trim(self) -> int:
        min_id = await self.min_committed_id()
        if min_id is None:
            return 0
        if self._minid:
            try:
                # MINID keeps ids >= its argument: the next id keeps everything after min_id.
                count: int = await _command.run(
                    self._client,
                    *("XTRIM", self._stream_key, "MINID", "=", next_id(min_id)),
                    key=self._stream_key,
                )
            except ServerError as exc:
                # Before 6.2, XTRIM knows only MAXLEN ("syntax error"); it may be renamed away.
                if not any(sign in str(exc).lower() for sign in ("syntax", "unknown command")):
                    raise
                logger.info("server has no XTRIM MINID (%s); using XRANGE + XDEL", exc)
                self._minid = False
            else:
                self._log(count)
                return count
        count = await self.trim_by_xdel(min_id)
        self._log(count)
        return count

    async def trim_by_xdel(self, min_id: str) -> int:
        """The gem's way, for servers before 6.2: XRANGE up to ``min_id`` and XDEL, in batches."""
        total = 0
        while True:
            key = self._stream_key
            rows: Any = await _command.run(
                self._client, "XRANGE", key, "-", min_id, "COUNT", _XDEL_BATCH, key=key
            )
            if not rows:
                return total
            total += await _command.run(self._client, "XDEL", key, *[r[0] for r in rows], key=key)

    def _log(self, count: int) -> None:
        if count:
            logger.info(
                "trimmed %s from %s",
                plural(count, "entry", "entries"),
                self.stream_name,
                extra={"stream": self.stream_name, "count": count},
            )
