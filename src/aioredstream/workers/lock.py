"""The gem's Redis lock: one holder per name, kept alive while held, waking waiters on release.

Protocol (shared with the Ruby gem, so Python and Ruby workers exclude each other):

- the lock key ``[<ns>:]redstream:lock:<name>`` holds the holder's random hex token;
- acquiring is one Lua script: set the key with a 5 s expiry when it is free, or
  refresh the expiry when it already holds our token; anything else means "taken";
- while held, a background task repeats that script every 3 s;
- releasing deletes the key only if it still holds our token, then replaces the list
  ``<lock key>.notify`` with a single element, so a waiter blocked on it (``BRPOP``)
  wakes at once.

Where this differs from the gem: the keep-alive re-runs the get-or-refresh script
rather than a bare ``EXPIRE`` (the gem's refresh would also extend a lock that
expired and was taken by someone else); when that script finds the lock held by
another token, the body is cancelled at once instead of running on unprotected; and
the body is cancelled before the key can expire, whatever the keep-alive is doing
(see `Lock`). Writes that must only happen under the lock (a consumer's
offset commit) can check the token on the server in the same script: `fenced`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from .._cluster import is_cluster
from .._tasks import completed
from .._validate import check_lock_name, check_name, check_seconds
from ..errors import ArgumentError
from ..send import command as _command
from ..send.command import Script
from ._keepalive import KeepAlive
from ._streams import Client, keys_for

__all__ = ["Lock"]

logger = logging.getLogger("aioredstream.lock")

# {1} when we hold the lock now; {0, pttl_ms} when someone else does.
_GET_OR_REFRESH = Script("""
local cur = redis.call('get', KEYS[1])
if not cur then
  redis.call('set', KEYS[1], ARGV[1], 'px', ARGV[2])
  return {1}
elseif cur == ARGV[1] then
  redis.call('pexpire', KEYS[1], ARGV[2])
  return {1}
end
return {0, redis.call('pttl', KEYS[1])}
""")

# Single-key scripts, so they run anywhere: in the Ruby layout the lock key and its
# notify list live in different cluster slots (the hash-tag layout joins them).
_RELEASE = Script("""
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
""")

# Exactly one element, so one waiter wakes per release (the gem's MULTI of DEL + RPUSH).
_NOTIFY = Script("""
redis.call('del', KEYS[1])
return redis.call('rpush', KEYS[1], '1')
""")

_RELEASE_TIMEOUT_S = 1.0

#: The holder stops its work this fraction of the expiry before its key can expire
#: (0.5 s of the gem's 5 s); see `Lock` for what it covers.
MARGIN = 0.1


def fenced(body: str) -> Script:
    """A script that runs ``body`` only while ``KEYS[1]`` holds the token ``ARGV[1]``.

    It returns ``{1}`` when ``body`` ran, and ``{0, pttl}`` when the lock is no longer
    ours; ``body`` sees its own keys from ``KEYS[2]`` and arguments from ``ARGV[2]``
    on. Run it with `Lock.run_fenced`.
    """
    check = "if redis.call('get', KEYS[1]) ~= ARGV[1] then\n"
    return Script(
        f"{check}  return {{0, redis.call('pttl', KEYS[1])}}\nend\n{body}\nreturn {{1}}\n"
    )


class Lock:
    """A named lock compatible with the gem's ``Redstream::Lock``.

    ``expiry`` and ``refresh`` are seconds (the gem's 5 and 3). Use
    [`acquire`][aioredstream.Lock.acquire] to run a body under the lock and
    [`wait`][aioredstream.Lock.wait] to block until a holder releases it.
    ``client`` may be a ``RedisCluster``; ``hash_tags`` picks the key layout as for the
    producer.

    The body runs only while the key is surely ours on the server. Each successful
    get-or-refresh sets the key's expiry on the server *after* it was sent, so the key
    lives at least until the moment it was sent plus ``expiry``. The body is cancelled
    at that moment less a safety margin of a tenth of the expiry (`MARGIN`: 0.5 s
    of the gem's 5 s), by a deadline of its own that only a successful refresh moves
    on, whatever the refresh is doing meanwhile. The margin covers a command of the
    body still in flight at the deadline (half a round trip: well under a millisecond
    on a LAN, tens on a loaded link), the event loop's lateness in delivering the
    cancellation (a handler that computes 0.1 s between awaits delays it that much),
    and the two clocks running at slightly different rates (redlock allows 1 % of the
    validity: 50 ms of 5 s). A refresh that fails is retried at once, then after
    short waits, each attempt bounded by the time left; with the gem's timings it has
    from 3 s to 4.5 s after the last success to get through (a restart of the server
    with its data on disk takes less). ``refresh`` must therefore be shorter than
    ``expiry`` less the margin.
    """

    def __init__(
        self,
        client: Client,
        name: str,
        *,
        namespace: str | None = None,
        expiry: float = 5.0,
        refresh: float = 3.0,
        hash_tags: bool | None = None,
    ) -> None:
        # Lock names are composite (``consumer:<stream>:<name>``): their parts are
        # checked by the workers; here only emptiness and control characters matter.
        check_lock_name(name)
        expiry = check_seconds(expiry, "expiry", positive=True)
        refresh = check_seconds(refresh, "refresh", positive=True)
        expiry_ms = max(1, round(expiry * 1000))
        #: how long after sending a successful get-or-refresh the body may work
        validity_s = expiry_ms / 1000 * (1 - MARGIN)
        if not refresh < validity_s:
            raise ArgumentError(
                f"refresh must be seconds < expiry less its {MARGIN:.0%} safety margin "
                f"({validity_s:g}), got {refresh!r}"
            )
        keys = keys_for(client, namespace, hash_tags)
        self.name = name
        self.key = keys.lock(name)
        self.notify_key = keys.lock_notify(name)
        self.token = secrets.token_hex(16)  # the gem's SecureRandom.hex: 32 hex digits
        self._client = client
        self._expiry_ms = expiry_ms
        self._refresh_s = float(refresh)
        self._validity_s = validity_s
        #: the task group of the current take while the body runs: a fenced write that
        #: finds the lock gone ends the take through it
        self._take: anyio.CancelScope | None = None
        #: fenced writes need the lock key and the written keys on one server: not so
        #: on a cluster, where they hash to different slots
        self.fencing = not is_cluster(client)
        #: milliseconds the current holder's key has left (-1: no expiry), set when
        #: `acquire` found the lock taken or a fenced write found it lost.
        self.holder_ttl_ms: int | None = None
        #: the last release woke a standby: a ``run_once`` loop lets it have the next turn
        self.turn_given = False
        #: how many times `acquire` took the lock: a holder's state (such as a
        #: consumer's offset) is only valid within one take.
        self.takes = 0
        self._standing_by = False

    async def try_acquire(self) -> bool:
        """Take or refresh the lock once; ``False`` when another token holds it."""
        reply: Any = await _command.script(
            self._client,
            _GET_OR_REFRESH,
            [self.key],
            [self.token, self._expiry_ms],
            what=f"acquire lock {self.key}",
        )
        if int(reply[0]) == 1:
            self.holder_ttl_ms = None
            return True
        self.holder_ttl_ms = int(reply[1])
        return False

    async def acquire(self, body: Callable[[], Awaitable[object]]) -> bool:
        """Run ``body`` while holding the lock, then release it.

        Returns ``False`` without running ``body`` when the lock is taken, and also
        when the lock was lost while ``body`` ran (``body`` is then cancelled: another
        token holds the key, or no refresh got through before the key could expire).
        An exception of ``body`` propagates after the release.
        """
        sent = await self._take_lock()
        if sent is None:
            return False
        self.takes += 1
        self._standing_by = False
        logger.info("lock %s acquired", self.key, extra={"lock": self.key, "token": self.token})
        try:
            completed, error = await self._hold(body, sent + self._validity_s)
        finally:
            self._take = None
            await self.release()
        if error is not None:
            raise error
        return completed

    async def _take_lock(self) -> float | None:
        """Take or refresh the lock: when the successful attempt was sent (the key lives at
        least ``expiry`` from then), ``None`` when another token holds it.

        A reply slower than a refresh interval (a new connection riding out an outage
        on the client's retries) is followed by one more attempt, so that the body
        starts with most of its validity left.
        """
        for _ in range(2):
            sent = anyio.current_time()
            try:
                if not await self.try_acquire():
                    return None
            except asyncio.CancelledError:
                # The script may have taken the lock before its reply was read.
                await self.release()
                raise
            if anyio.current_time() - sent < self._refresh_s:
                break
        return sent

    async def _hold(
        self, body: Callable[[], Awaitable[object]], deadline: float
    ) -> tuple[bool, Exception | None]:
        """``body`` under a deadline that each successful refresh moves on; whether it
        completed, and its exception."""
        completed = False
        error: Exception | None = None
        keeper = KeepAlive(
            self.key, self.try_acquire, validity_s=self._validity_s, refresh_s=self._refresh_s
        )
        async with anyio.create_task_group() as tg:
            self._take = tg.cancel_scope
            with anyio.CancelScope(deadline=deadline) as valid:
                tg.start_soon(keeper.keep, tg.cancel_scope, valid)
                try:
                    await body()
                    completed = True
                except Exception as exc:  # re-raised by acquire, after the release
                    error = exc
            tg.cancel_scope.cancel()
        if valid.cancelled_caught:
            logger.error(
                "lock %s not refreshed within its expiry, stopping: %s (the work stops "
                "%.2fs after the last refresh was sent: the %.2fs expiry less a margin)",
                *(self.key, keeper.why_not_refreshed(), self._validity_s, self._expiry_ms / 1000),
                extra={"lock": self.key},
            )
        return completed, error

    async def run_fenced(
        self, script: Script, keys: list[str], args: list[Any], *, what: str
    ) -> None:
        """Run ``script`` (made by `fenced`) with the lock key and our token first.

        Call it from the body of `acquire`, where `fencing` is true (on a
        cluster the keys would span slots). When the key no longer holds our
        token, nothing was written: the take ends as when a refresh finds the lock
        lost (the body is cancelled here, and `acquire` returns ``False``).
        """
        if self._take is None:
            raise ArgumentError(f"run_fenced({what!r}) outside the body of acquire()")
        reply: Any = await _command.script(
            self._client, script, [self.key, *keys], [self.token, *args], what=what
        )
        if int(reply[0]) == 1:
            return
        pttl = int(reply[1])
        self.holder_ttl_ms = 0 if pttl == -2 else pttl  # -2: no key, take it at once
        logger.warning(
            "lock %s is no longer ours (%s found another token or none); stopping the work",
            *(self.key, what),
            extra={"lock": self.key},
        )
        self._take.cancel()
        await anyio.lowlevel.checkpoint()  # the cancellation lands here

    async def release(self) -> None:
        """Delete the key if it still holds our token and wake one waiter (bounded, shielded).

        A cancellation that arrives meanwhile waits until the release is done (at most
        1 s), a plain ``Task.cancel()`` included (`aioredstream._tasks.completed`).
        """
        await completed(self._release())

    async def _release(self) -> None:
        with anyio.move_on_after(_RELEASE_TIMEOUT_S) as scope:
            try:
                what = f"release lock {self.key}"
                await _command.script(self._client, _RELEASE, [self.key], [self.token], what=what)
                await _command.script(self._client, _NOTIFY, [self.notify_key], [], what=what)
            except Exception as exc:
                # It expires on its own; the body's outcome matters more than this.
                logger.warning("could not release lock %s: %s", self.key, exc)
        if scope.cancelled_caught:
            logger.warning("releasing lock %s timed out; it expires on its own", self.key)

    async def woke_a_standby(self) -> bool:
        """After `release`: whether a standby blocked on the notify list took its
        element (the server hands it to a blocked ``BRPOP`` before it runs our next
        command), i.e. someone is about to try the lock. ``False`` if the server cannot
        say: only the order of turns is at stake."""
        try:
            length: Any = await _command.run(
                self._client, "LLEN", self.notify_key, key=self.notify_key
            )
        except Exception as exc:
            logger.debug("could not look for standbys of lock %s: %s", self.key, exc)
            return False
        return int(length) == 0

    async def standby(self, max_wait: float = 5.0) -> None:
        """After a failed `acquire`: wait for a release, or until the holder's key expires.

        A holder that vanished without releasing leaves a key that expires on its
        own, so a standby tries again by then rather than after the full ``max_wait``.
        """
        check_seconds(max_wait, "max_wait")
        ttl_ms = self.holder_ttl_ms
        wait_s = max_wait if ttl_ms is None or ttl_ms < 0 else min(max_wait, ttl_ms / 1000)
        if not self._standing_by:  # once per stretch of standing by, not every wait
            self._standing_by = True
            logger.info(
                "standing by for lock %s (the holder's key expires in %s)",
                self.key,
                "-" if ttl_ms is None else f"{ttl_ms / 1000:.1f}s",
                extra={"lock": self.key, "holder_ttl_ms": ttl_ms},
            )
        await self.wait(wait_s + 0.01)

    async def wait(self, max_wait: float) -> bool:
        """Block until a holder releases the lock, at most ``max_wait`` s; ``True`` if woken."""
        if check_seconds(max_wait, "max_wait") == 0:
            return False
        # The read waits for the socket timeout on top of the block: no timeout when idle.
        reply: Any = await _command.run(
            self._client,
            "BRPOP",
            self.notify_key,
            f"{max(max_wait, 0.01):.3f}",
            key=self.notify_key,
            block_s=max_wait,
        )
        return reply is not None


def worker_lock_name(kind: str, stream_name: str, worker_name: str | None = None) -> str:
    """The gem's lock names: ``consumer:<stream>:<name>`` and ``trimmer:<stream>``."""
    check_name(stream_name)
    if worker_name is None:
        return f"{kind}:{stream_name}"
    return f"{kind}:{stream_name}:{check_name(worker_name, 'consumer name')}"
