"""A small pipelined Redis client for the reads on the request path.

redis-py's asyncio client spends 100-190 us of CPU on one ``GET`` on this machine: a pool
checkout and release, retry and observability layers, a timeout context, about 250 Python
calls. For a read that every similar-products request makes, that is a tenth of the
request. ``RespClient`` spends 10-20 us: it speaks RESP2 over one connection and pipelines
concurrent callers on it (Redis answers in the order the commands came, so each reply goes
to the oldest caller still waiting).

- **Replies**: ``bytes`` for bulk and simple strings, ``int``, ``list`` (nested), ``None``
  for a nil. An error reply raises redis-py's own class for it (``ResponseError``,
  ``NoScriptError``, ...), so callers catch ``RedisError`` as they do for redis-py.
- **Faults are never waited on**: a reply that does not come within ``timeout_s``, a lost
  connection or a reply that cannot be parsed fails every command in flight on that
  connection (``TimeoutError`` or ``ConnectionError`` from ``redis.exceptions``) and drops
  it; the next command opens a new one. Nothing is retried here: the caller decides.
- **One write per loop iteration**: the commands callers send in the same event-loop
  iteration go out in one system call.
- **A caller that goes away** (cancelled) leaves its reply to be read and dropped, so the
  replies after it still reach their own callers.
- **URLs**: ``redis://``, ``rediss://`` (TLS) and ``unix://``, with user, password and
  database as redis-py reads them.

It is for hot, simple commands; everything else goes through redis-py.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Iterable
from typing import Any

from redis._parsers.base import BaseParser
from redis.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

_CRLF = b"\r\n"
_INCOMPLETE: Any = object()


class ProtocolError(RedisConnectionError):
    """The server sent something that is not RESP2."""


def encode(args: tuple[Any, ...]) -> bytes:
    """One command as a RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, (int, float)) and not isinstance(arg, bool):
            data = repr(arg).encode()
        else:
            raise TypeError(f"cannot send {type(arg).__name__} to Redis")
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


def parse(buf: bytes | bytearray, pos: int = 0) -> tuple[Any, int]:
    """One reply from ``buf`` at ``pos``: (value, position after it), or (_INCOMPLETE, pos)
    when the reply has not fully arrived. An error reply is returned as its exception."""
    end = buf.find(_CRLF, pos)
    if end < 0:
        return _INCOMPLETE, pos
    kind = buf[pos]
    line = bytes(buf[pos + 1 : end])
    after = end + 2
    if kind == 36:  # $ bulk string
        n = int(line)
        if n < 0:
            return None, after
        if len(buf) < after + n + 2:
            return _INCOMPLETE, pos
        return bytes(buf[after : after + n]), after + n + 2
    if kind == 58:  # : integer
        return int(line), after
    if kind == 43:  # + simple string
        return line, after
    if kind == 45:  # - error
        return BaseParser.parse_error(line.decode(errors="replace")), after
    if kind == 42:  # * array
        n = int(line)
        if n < 0:
            return None, after
        items = []
        for _ in range(n):
            item, after = parse(buf, after)
            if item is _INCOMPLETE:
                return _INCOMPLETE, pos
            items.append(item)
        return items, after
    raise ProtocolError(f"unexpected reply type byte {kind!r}")


class _Connection(asyncio.Protocol):
    def __init__(self, name: str) -> None:
        self.name = name
        self.transport: asyncio.Transport | None = None
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.buf = bytearray()
        self.closed = False
        self.outgoing: list[bytes] = []  # commands of this loop iteration, one write

    # ---- asyncio.Protocol ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos = 0
        try:
            while pos < len(buf):
                value, nxt = parse(buf, pos)
                if value is _INCOMPLETE:
                    break
                pos = nxt
                if not self.waiting:
                    raise ProtocolError("a reply came that no command asked for")
                fut = self.waiting.popleft()
                if not fut.done():  # a caller that went away: its reply is dropped
                    if isinstance(value, ResponseError):
                        fut.set_exception(value)
                    else:
                        fut.set_result(value)
        except (ValueError, ProtocolError) as exc:
            self.fail(ProtocolError(f"unreadable reply from Redis at {self.name}: {exc}"))
            return
        del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisConnectionError(f"connection to Redis at {self.name} lost: {exc}"))

    # ---- use -----------------------------------------------------------------------------
    def fail(self, exc: Exception) -> None:
        """Drop the connection: every command still waiting on it gets ``exc``."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
        while self.waiting:
            fut = self.waiting.popleft()
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # retrieved, in case its caller has gone

    async def call(self, command: bytes, timeout_s: float) -> Any:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self.waiting.append(fut)
        if not self.outgoing:
            loop.call_soon(self._flush)
        self.outgoing.append(command)
        timer = loop.call_later(timeout_s, self._expire, fut, timeout_s)
        try:
            return await fut
        finally:
            timer.cancel()

    def _flush(self) -> None:
        """Send the commands callers queued since the last flush in one write (callers
        that run in the same loop iteration share one system call)."""
        data = b"".join(self.outgoing)
        self.outgoing.clear()
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    def _expire(self, fut: asyncio.Future[Any], timeout_s: float) -> None:
        if not fut.done():  # replies are in order: every later one is stuck behind it
            self.fail(RedisTimeoutError(f"no reply from Redis at {self.name} in {timeout_s} s"))


class RespClient:
    def __init__(self, url: str, *, timeout_s: float = 5.0, connect_timeout_s: float = 2.0):
        opts = parse_url(url)
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._path: str | None = opts.get("path")
        self._host: str = opts.get("host", "localhost")
        self._port: int = int(opts.get("port", 6379))
        self._tls = url.startswith("rediss://")
        self._hello: list[bytes] = []  # sent first on every new connection
        password, username = opts.get("password"), opts.get("username")
        if password is not None:
            auth = ("AUTH", username, password) if username else ("AUTH", password)
            self._hello.append(encode(auth))
        if int(opts.get("db") or 0):
            self._hello.append(encode(("SELECT", int(opts["db"]))))
        self.name = self._path or f"{self._host}:{self._port}"
        self._conn: _Connection | None = None
        self._opening = asyncio.Lock()

    async def execute(self, *args: Any) -> Any:
        """Send one command; its reply (see the module's docstring)."""
        conn = self._conn
        if conn is None or conn.closed:
            conn = await self._connected()
        return await conn.call(encode(args), self.timeout_s)

    async def get(self, key: str) -> str | None:
        value = await self.execute("GET", key)
        return None if value is None else value.decode()  # type: ignore[no-any-return]

    async def mget(self, keys: Iterable[str]) -> list[str | None]:
        values = await self.execute("MGET", *keys)
        return [None if v is None else v.decode() for v in values]

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            conn.fail(RedisConnectionError("client closed"))

    async def _connected(self) -> _Connection:
        async with self._opening:  # one opening at a time; the rest use what it opened
            conn = self._conn
            if conn is None or conn.closed:
                conn = self._conn = await self._open()
            return conn

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        conn = _Connection(self.name)
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                if self._path is not None:
                    await loop.create_unix_connection(lambda: conn, self._path)
                else:
                    tls = ssl.create_default_context() if self._tls else None
                    await loop.create_connection(lambda: conn, self._host, self._port, ssl=tls)
        except TimeoutError as exc:
            raise RedisTimeoutError(f"timed out connecting to Redis at {self.name}") from exc
        except OSError as exc:
            raise RedisConnectionError(f"cannot connect to Redis at {self.name}: {exc}") from exc
        try:
            for command in self._hello:
                await conn.call(command, self.connect_timeout_s)
        except BaseException:
            conn.fail(RedisConnectionError("connection setup failed"))
            raise
        return conn
