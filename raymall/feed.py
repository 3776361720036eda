"""The replica's Redis pub/sub feed: one connection, many channels, resync on reconnect.

Read models pushed to replicas (revocations, availability, catalog invalidations) arrive
here. A consumer ``subscribe``s a channel with a message handler and a resync callback;
``start()`` runs one background task per replica process that holds one pub/sub
connection for every channel. Guarantees:

- **Nothing published after a resync is missed.** After every (re)subscription, once Redis
  has confirmed every channel, each consumer's ``on_resync`` runs (in subscription order)
  and reloads its snapshot. Messages that arrive meanwhile wait in the socket and are
  delivered after it, so a consumer's handlers should carry state (idempotent sets, "at
  least version v"), never deltas.
- **In order**: ``on_message`` runs on the event loop for each message of its channel, in
  the order Redis sent them.
- **Never killed by a consumer**: an exception in a handler is logged and counted
  (``raymall_feed_handler_errors_total``); one in ``on_resync`` counts as a failed
  connection, so the feed reconnects (with ``raymall.retry.Backoff``) and resyncs again.
- **A silent connection is a lost one**: when idle the feed sends ``PING`` every
  ``ping_s``; a connection that answers nothing for ``dead_after_s`` is dropped and
  reopened, so a network partition is noticed like a killed server.
- ``connected`` is true only while subscribed *and* resynced; ``down_since_ms()`` says
  since when it is not (wall clock ms, counted from construction before the first
  connection). The gauge ``raymall_feed_connected{feed}`` shows the same.

``RedisHealth`` turns the feed's state (and the connection faults callers report) into
one answer to "use Redis now?", which the degraded modes ask instead of waiting for a
connect timeout per request.

Redis pub/sub channels are global to a server, not per database index: several apps (or
test sessions) on one server must use distinct channel names. ``scoped_channel`` gives
each database index its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from redis.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from raymall.errors import Unavailable
from raymall.logs import get_logger
from raymall.metrics import FEED_CONNECTED, FEED_HANDLER_ERRORS, FEED_RESYNCS
from raymall.resp import _INCOMPLETE, encode, parse
from raymall.retry import Backoff
from raymall.tasks import stop_tasks

log = get_logger("feed")

STORE_RETRY_AFTER_S = 2  # Retry-After of what refuses while Redis is unreachable
REDIS_FAULTS = (RedisConnectionError, RedisTimeoutError)
MessageHandler = Callable[[bytes], None]
ResyncHandler = Callable[[], Awaitable[None]]


def scoped_channel(redis_url: str, name: str) -> str:
    """``name`` made private to the database index of ``redis_url`` (pub/sub channels are
    server-wide; keys are per index)."""
    db = int(parse_url(redis_url).get("db") or 0)
    return f"raymall:{db}:{name}"


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class _Channel:
    name: str
    handlers: list[MessageHandler] = field(default_factory=list)


class _Lost(Exception):
    """The connection must be dropped and reopened."""


class Feed:
    """One pub/sub connection per replica process; see the module docstring."""

    def __init__(
        self,
        redis_url: str,
        *,
        name: str = "feed",
        ping_s: float = 1.0,
        dead_after_s: float = 3.0,
        connect_timeout_s: float = 2.0,
        resync_timeout_s: float = 10.0,
        reconnect_max_s: float = 0.5,
    ) -> None:
        opts = parse_url(redis_url)
        self.name = name
        self.ping_s = ping_s
        self.dead_after_s = dead_after_s
        self.connect_timeout_s = connect_timeout_s
        self.resync_timeout_s = resync_timeout_s
        self.reconnect_max_s = reconnect_max_s
        self._path: str | None = opts.get("path")
        self._host: str = opts.get("host", "localhost")
        self._port: int = int(opts.get("port", 6379))
        self._tls = redis_url.startswith("rediss://")
        password, username = opts.get("password"), opts.get("username")
        self._auth: tuple[str, ...] | None = None
        if password is not None:
            self._auth = ("AUTH", username, password) if username else ("AUTH", password)
        self.address = self._path or f"{self._host}:{self._port}"
        self._channels: dict[str, _Channel] = {}
        self._resyncs: list[ResyncHandler] = []
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._connected = False
        self._warned = False  # this outage was logged
        self._down_since: int | None = now_ms()
        self._connected_event: asyncio.Event | None = None
        self.resyncs = 0  # completed (re)subscriptions, for tests and status
        FEED_CONNECTED.labels(feed=name).set(0)

    # ---- consumers ----------------------------------------------------------------------
    def subscribe(
        self,
        channel: str,
        on_message: MessageHandler,
        on_resync: ResyncHandler | None = None,
    ) -> None:
        """Deliver every message of ``channel`` to ``on_message``; run ``on_resync`` after
        each (re)subscription. Allowed before and after ``start()``; after it, the feed
        reconnects so that the new channel is subscribed and every consumer resyncs."""
        self._channels.setdefault(channel, _Channel(channel)).handlers.append(on_message)
        if on_resync is not None:
            self._resyncs.append(on_resync)
        if self._writer is not None:  # running: resubscribe everything on a new connection
            self._writer.transport.abort()

    @property
    def channels(self) -> list[str]:
        return list(self._channels)

    @property
    def connected(self) -> bool:
        """Subscribed to every channel now, and every consumer resynced since."""
        return self._connected

    def down_since_ms(self) -> int | None:
        """Wall-clock ms since which the feed is not connected; None while connected."""
        return None if self._connected else self._down_since

    async def wait_connected(self, timeout_s: float) -> bool:
        """Wait until connected (True) or ``timeout_s`` passed (False)."""
        if self._connected:
            return True
        if self._connected_event is None:
            self._connected_event = asyncio.Event()
        try:
            async with asyncio.timeout(timeout_s):
                await self._connected_event.wait()
        except TimeoutError:
            return False
        return True

    # ---- life -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the background task (idempotent); it connects and reconnects for ever."""
        if self._task is None or self._task.done():
            if self._connected_event is None:
                self._connected_event = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"feed-{self.name}"
            )

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await stop_tasks([task], timeout_s=10)
        self._close()
        self._set_down()

    # ---- the loop -------------------------------------------------------------------------
    async def _run(self) -> None:
        backoff = Backoff(first_s=0.05, max_s=self.reconnect_max_s)
        while True:
            try:
                await self._session(backoff)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # logged once per outage; the loop goes on
                if not self._warned:
                    self._warned = True
                    expected = isinstance(exc, (OSError, RedisError, _Lost, TimeoutError))
                    log.warning(
                        "feed %s: Redis at %s unusable (%s: %s); reconnecting",
                        self.name,
                        self.address,
                        type(exc).__name__,
                        exc,
                        exc_info=not expected,
                    )
            finally:
                self._close()
                self._set_down()
            await backoff.wait()

    async def _session(self, backoff: Backoff) -> None:
        reader, writer = await self._open()
        self._writer = writer
        buf = bytearray()
        channels = list(self._channels)
        if channels:
            writer.write(encode(("SUBSCRIBE", *channels)))
        else:
            writer.write(encode(("PING",)))
        await writer.drain()
        pending = set(channels)
        # confirmations first; messages of channels confirmed earlier wait in `early`
        early: list[tuple[str, bytes]] = []
        while pending or not channels:
            reply = await self._read(reader, buf, self.connect_timeout_s)
            kind = _kind(reply)
            if kind == "subscribe":
                pending.discard(_text(reply[1]))
            elif kind == "message":
                early.append((_text(reply[1]), reply[2]))
            elif not channels:
                break  # the PING's answer: connected with nothing to listen to
        async with asyncio.timeout(self.resync_timeout_s):
            for resync in list(self._resyncs):
                await resync()
        self._set_up()
        backoff.delay = 0.05  # a later loss starts its waits from the shortest again
        for channel, data in early:
            self._deliver(channel, data)
        last_heard = time.monotonic()
        while True:
            try:
                reply = await self._read(reader, buf, self.ping_s)
            except TimeoutError:
                if time.monotonic() - last_heard > self.dead_after_s:
                    raise _Lost(f"no answer from Redis in {self.dead_after_s} s") from None
                writer.write(encode(("PING",)))
                continue
            last_heard = time.monotonic()
            if _kind(reply) == "message":
                self._deliver(_text(reply[1]), reply[2])

    async def _read(self, reader: asyncio.StreamReader, buf: bytearray, timeout_s: float) -> Any:
        """The next reply; ``TimeoutError`` when none completes within ``timeout_s``."""
        while True:
            value, end = parse(buf, 0)
            if value is not _INCOMPLETE:
                del buf[:end]
                if isinstance(value, ResponseError):
                    raise value
                return value
            async with asyncio.timeout(timeout_s):
                data = await reader.read(65536)
            if not data:
                raise RedisConnectionError(f"Redis at {self.address} closed the connection")
            buf += data

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                if self._path is not None:
                    reader, writer = await asyncio.open_unix_connection(self._path)
                else:
                    tls = ssl.create_default_context() if self._tls else None
                    reader, writer = await asyncio.open_connection(self._host, self._port, ssl=tls)
                if self._auth is not None:
                    writer.write(encode(self._auth))
                    await self._read(reader, bytearray(), self.connect_timeout_s)
        except TimeoutError as exc:
            raise RedisTimeoutError(f"timed out connecting to Redis at {self.address}") from exc
        return reader, writer

    def _deliver(self, channel: str, data: bytes) -> None:
        entry = self._channels.get(channel)
        if entry is None:
            return
        for handler in entry.handlers:
            try:
                handler(data)
            except Exception:
                FEED_HANDLER_ERRORS.labels(feed=self.name, channel=channel).inc()
                log.exception("feed %s: handler of %s failed", self.name, channel)

    def _close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.transport.abort()

    def _set_up(self) -> None:
        self._connected = True
        self._warned = False
        self._down_since = None
        self.resyncs += 1
        FEED_CONNECTED.labels(feed=self.name).set(1)
        FEED_RESYNCS.labels(feed=self.name).inc()
        if self._connected_event is not None:
            self._connected_event.set()
        log.info("feed %s subscribed to %d channel(s)", self.name, len(self._channels))

    def _set_down(self) -> None:
        if self._connected or self._down_since is None:
            self._down_since = now_ms()
        self._connected = False
        FEED_CONNECTED.labels(feed=self.name).set(0)
        if self._connected_event is not None and self._connected_event.is_set():
            self._connected_event = asyncio.Event()


def _kind(reply: Any) -> str:
    if isinstance(reply, list) and reply and isinstance(reply[0], bytes):
        return reply[0].decode()
    return ""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisHealth:
    """Whether this replica should use Redis right now: its feed is connected, and no
    command failed on a connection fault in the last ``cool_down_s``.

    What degrades while it says no (the rate limits go replica-local, the cart and the
    auth writes answer 503 at once) asks it instead of waiting for a connect timeout per
    request; a caller whose command failed says so with ``failed()``. Without a feed
    (tools, tests) only failures count."""

    def __init__(self, feed: Feed | None, *, cool_down_s: float = 1.0) -> None:
        self.feed = feed
        self.cool_down_s = cool_down_s
        self._failed_at = -1e18  # monotonic seconds of the last failure
        self._failed_ms: int | None = None

    def usable(self) -> bool:
        if self.feed is not None and not self.feed.connected:
            return False
        return time.monotonic() - self._failed_at >= self.cool_down_s

    def require(self, what: str) -> None:
        """Refuse ``what`` at once (503, ``Retry-After``) while Redis is unusable."""
        if not self.usable():
            raise store_down(what)

    @contextlib.contextmanager
    def faults(self, what: str) -> Iterator[None]:
        """A Redis connection fault in the block: noted, and answered as ``require``."""
        try:
            yield
        except REDIS_FAULTS as exc:
            self.failed()
            raise store_down(what) from exc

    def failed(self) -> None:
        """A command failed on a connection fault (not an error reply)."""
        if self.usable():
            self._failed_ms = now_ms()
        self._failed_at = time.monotonic()

    def down_since_ms(self) -> int | None:
        """Since when Redis is unusable (wall-clock ms), None while usable."""
        if self.usable():
            return None
        down = self.feed.down_since_ms() if self.feed is not None else None
        failed = self._failed_ms if time.monotonic() - self._failed_at < self.cool_down_s else None
        known = [t for t in (down, failed) if t is not None]
        return min(known) if known else now_ms()


def store_down(what: str) -> Unavailable:
    """The refusal of something that needs Redis while it is unreachable."""
    return Unavailable(
        f"{what} is unavailable while Redis is unreachable; retry",
        details={"retry_after": STORE_RETRY_AFTER_S},
    )
