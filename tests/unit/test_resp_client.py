"""raymall.resp: RESP2 encoding and parsing at every split point, and the client's fault
handling against an in-process server (no reply, a dropped connection, a caller that
goes away, an unreadable reply)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from raymall.resp import _INCOMPLETE, ProtocolError, RespClient, encode, parse

REPLIES = [
    (b"$5\r\nhello\r\n", b"hello"),
    (b"$0\r\n\r\n", b""),
    (b"$-1\r\n", None),
    (b":-42\r\n", -42),
    (b"+OK\r\n", b"OK"),
    (b"*-1\r\n", None),
    (b"*0\r\n", []),
    (b"*3\r\n:1\r\n*2\r\n$1\r\na\r\n$-1\r\n+x\r\n", [1, [b"a", None], b"x"]),
    (b"$4\r\na\r\nb\r\n", b"a\r\nb"),  # a bulk string holding CRLF
]


def test_encode_sends_every_argument_as_a_bulk_string() -> None:
    assert encode(("SET", b"k\r\n", 7, 1.5)) == (
        b"*4\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$1\r\n7\r\n$3\r\n1.5\r\n"
    )
    with pytest.raises(TypeError):
        encode(("SET", "k", None))


@pytest.mark.parametrize(("wire", "value"), REPLIES)
def test_a_reply_parses_whole_and_is_incomplete_when_cut_anywhere(
    wire: bytes, value: object
) -> None:
    assert parse(wire + b":9\r\n") == (value, len(wire))
    for cut in range(len(wire)):
        assert parse(wire[:cut]) == (_INCOMPLETE, 0), cut


def test_an_error_reply_becomes_redis_pys_exception_for_it() -> None:
    err, end = parse(b"-NOSCRIPT No matching script.\r\n")
    assert isinstance(err, NoScriptError) and end == 31
    err, _ = parse(b"-WRONGTYPE Operation against a key\r\n")
    assert type(err) is ResponseError and "WRONGTYPE" in str(err)


def test_an_unknown_reply_type_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        parse(b"?what\r\n")


Handler = Callable[[bytes], bytes | None]
Start = Callable[[Handler], Awaitable[str]]


@pytest.fixture()
async def server() -> AsyncIterator[Start]:
    """Start a one-port server answering each command line with ``handler(command)``
    (``None``: no answer; ``b"CLOSE"``: drop the connection). Yields its URL."""
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> str:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            buf = b""
            while data := await reader.read(65536):
                buf += data
                while True:
                    value, end = parse(buf)
                    if value is _INCOMPLETE:
                        break
                    buf = buf[end:]
                    answer = handler(b" ".join(value))
                    if answer == b"CLOSE":
                        writer.close()
                        return
                    if answer is not None:
                        writer.write(answer)
            writer.close()

        srv = await asyncio.start_server(serve, "127.0.0.1", 0)
        servers.append(srv)
        return f"redis://127.0.0.1:{srv.sockets[0].getsockname()[1]}/0"

    yield start
    for srv in servers:
        srv.close()


def echo(command: bytes) -> bytes | None:
    _, _, arg = command.partition(b" ")
    return b"$%d\r\n%b\r\n" % (len(arg), arg)


async def test_concurrent_callers_share_one_connection_and_each_gets_its_reply(
    server: Start,
) -> None:
    client = RespClient(await server(echo))
    replies = await asyncio.gather(*(client.execute("ECHO", f"v{i}") for i in range(300)))
    assert replies == [f"v{i}".encode() for i in range(300)]
    await client.aclose()


async def test_callers_of_one_loop_iteration_share_one_write(server: Start) -> None:
    client = RespClient(await server(echo))
    assert await client.execute("ECHO", "open") == b"open"
    conn = client._conn
    assert conn is not None and conn.transport is not None
    writes: list[bytes] = []
    real_write = conn.transport.write

    def counting_write(data: bytes) -> None:
        writes.append(data)
        real_write(data)

    conn.transport.write = counting_write  # type: ignore[method-assign]
    replies = await asyncio.gather(*(client.execute("ECHO", f"v{i}") for i in range(50)))
    assert replies == [f"v{i}".encode() for i in range(50)]
    assert len(writes) == 1 and writes[0].count(b"ECHO") == 50
    assert await client.execute("ECHO", "next") == b"next"  # a later iteration: its own write
    assert len(writes) == 2
    await client.aclose()


async def test_no_reply_in_time_fails_the_command_and_the_next_one_reconnects(
    server: Start,
) -> None:
    connections = 0

    def sometimes(command: bytes) -> bytes | None:
        nonlocal connections
        if command.startswith(b"HANG"):
            connections += 1
            return None
        return echo(command)

    client = RespClient(await server(sometimes), timeout_s=0.2)
    stuck = asyncio.gather(client.execute("HANG"), client.execute("ECHO", "behind"))
    with pytest.raises(RedisTimeoutError):
        await stuck
    assert await client.execute("ECHO", "again") == b"again"
    await client.aclose()


async def test_a_dropped_connection_fails_what_waits_on_it_and_is_replaced(server: Start) -> None:
    def drop_on_bye(command: bytes) -> bytes | None:
        return b"CLOSE" if command == b"BYE" else echo(command)

    client = RespClient(await server(drop_on_bye), timeout_s=5)
    results = await asyncio.gather(
        client.execute("BYE"), client.execute("ECHO", "x"), return_exceptions=True
    )
    assert all(isinstance(r, RedisConnectionError) for r in results), results
    assert await client.execute("ECHO", "back") == b"back"
    await client.aclose()


async def test_a_caller_that_goes_away_does_not_shift_the_replies_of_the_others(
    server: Start,
) -> None:
    client = RespClient(await server(echo))
    assert await client.execute("ECHO", "open") == b"open"  # connected: the next waits on a reply
    first = asyncio.ensure_future(client.execute("ECHO", "first"))
    await asyncio.sleep(0)  # sent, its reply not read yet
    first.cancel()
    assert await client.execute("ECHO", "second") == b"second"
    assert first.cancelled()
    await client.aclose()


async def test_an_error_reply_raises_and_the_connection_stays_usable(server: Start) -> None:
    def refuse_evalsha(command: bytes) -> bytes | None:
        return (
            b"-NOSCRIPT No matching script.\r\n"
            if command.startswith(b"EVALSHA")
            else echo(command)
        )

    client = RespClient(await server(refuse_evalsha))
    with pytest.raises(NoScriptError):
        await client.execute("EVALSHA", "abc", 0)
    assert await client.execute("ECHO", "fine") == b"fine"
    await client.aclose()


async def test_an_unreadable_reply_fails_the_connection(server: Start) -> None:
    client = RespClient(await server(lambda command: b"?garbage\r\n"))
    with pytest.raises(RedisConnectionError):
        await client.execute("ECHO", "x")
    await client.aclose()


async def test_nothing_listening_is_a_redis_error_not_a_hang() -> None:
    client = RespClient("redis://127.0.0.1:1/0", connect_timeout_s=1)
    with pytest.raises(RedisError):
        await client.execute("GET", "k")
