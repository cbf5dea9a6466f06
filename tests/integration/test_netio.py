"""The asyncio-native network backend under httpcore2: connecting (address racing), reading,
timeouts and the end of a stream, against real sockets on 127.0.0.1 / 127.0.0.2. (Every HTTP
test in the suite also goes through it: the fetcher installs it on the client's pool.)"""

from __future__ import annotations

import socket
import time
from typing import Any

import anyio
import anyio.abc
import httpcore2
import httpx2
import pytest

from crawler.config import job_from_mapping
from crawler.fetcher import build_client
from crawler.netio import AsyncioBackend, AsyncioStream, race

pytestmark = pytest.mark.anyio


def _closed_port(host: str) -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _info(host: str, port: int) -> tuple[Any, ...]:
    return (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port))


async def test_race_moves_past_a_refusing_address_at_once() -> None:
    """The first address refuses: the next is tried at once (not after the 250 ms stagger,
    nor after a connect timeout) and the connected socket is the second address's."""

    async def serve(client: anyio.abc.SocketStream) -> None:
        await client.aclose()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        started = time.perf_counter()
        refusing = _info("127.0.0.2", _closed_port("127.0.0.2"))
        sock = await race([refusing, _info("127.0.0.1", port)])
        elapsed = time.perf_counter() - started
        try:
            assert sock.getpeername() == ("127.0.0.1", port)
        finally:
            sock.close()
        assert elapsed < 0.2
        tg.cancel_scope.cancel()
    await listener.aclose()


async def test_race_reports_every_failed_address() -> None:
    """No address connects: one OSError naming each attempt's error."""
    infos = [
        _info("127.0.0.2", _closed_port("127.0.0.2")),
        _info("127.0.0.1", _closed_port("127.0.0.1")),
    ]
    with pytest.raises(OSError, match=r"cannot connect to x: .*;"):
        await race(infos, name="x")


async def test_connect_failure_is_httpcore_connect_error() -> None:
    """A refused connection surfaces as httpcore2.ConnectError (which httpx2 maps)."""
    with pytest.raises(httpcore2.ConnectError):
        await AsyncioBackend().connect_tcp("127.0.0.1", _closed_port("127.0.0.1"), timeout=5)


async def test_read_returns_data_then_end_of_stream() -> None:
    """Bytes the server sent are read (never more than asked per read), then b"" once it
    has closed."""

    async def serve(client: anyio.abc.SocketStream) -> None:
        async with client:
            await client.send(b"hello world")

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
        got = b""
        with anyio.fail_after(5):
            while chunk := await stream.read(4, timeout=5):
                assert len(chunk) <= 4
                got += chunk
        assert got == b"hello world"
        assert await stream.read(4, timeout=5) == b""
        await stream.aclose()
        tg.cancel_scope.cancel()
    await listener.aclose()


async def test_read_timeout_is_httpcore_read_timeout() -> None:
    """A server that accepts and stays silent: the read times out as httpcore2.ReadTimeout
    after about the timeout, and the stream can still be closed."""

    async def silent(client: anyio.abc.SocketStream) -> None:
        async with client:
            await anyio.sleep(30)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, silent)
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
        started = time.perf_counter()
        with pytest.raises(httpcore2.ReadTimeout):
            await stream.read(1024, timeout=0.2)
        assert 0.15 < time.perf_counter() - started < 3
        await stream.aclose()
        tg.cancel_scope.cancel()
    await listener.aclose()


def test_the_fetcher_client_uses_the_asyncio_backend(tmp_path: Any) -> None:
    """build_client puts the asyncio backend on the client's connection pool."""
    job = job_from_mapping({"seeds": ["http://127.0.0.1/"], "output": {"dir": str(tmp_path)}})
    client = build_client(job)
    pool = client._transport._pool  # type: ignore[attr-defined]
    assert isinstance(pool._network_backend, AsyncioBackend)


def test_proxied_clients_keep_httpcore_backend(tmp_path: Any) -> None:
    """With a proxy the client's pool keeps httpcore2's own backend (TLS to and through an
    HTTPS proxy is that backend's job)."""
    job = job_from_mapping(
        {
            "seeds": ["http://127.0.0.1/"],
            "http": {"proxy": "http://127.0.0.1:3128"},
            "output": {"dir": str(tmp_path)},
        }
    )
    client = build_client(job)
    proxied = client._transport_for_url(httpx2.URL("https://example.org/"))
    assert type(proxied._pool).__name__ == "AsyncHTTPProxy"  # type: ignore[attr-defined]
    assert not isinstance(proxied._pool._network_backend, AsyncioBackend)  # type: ignore[attr-defined]


async def test_a_slow_reader_pauses_the_socket_and_loses_nothing() -> None:
    """A server sends 4 MiB at once to a reader that has not read yet: the stream stops
    reading from the socket once its buffer is full (memory bounded), resumes as it is read,
    and every byte arrives in order."""
    payload = bytes(range(256)) * (4 * 4096)

    async def serve(client: anyio.abc.SocketStream) -> None:
        async with client:
            await client.send(payload)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
        assert isinstance(stream, AsyncioStream)
        protocol = stream._protocol
        for _ in range(1000):  # at most 10 s for the server's bytes to arrive
            if protocol.reading_paused:
                break
            await anyio.sleep(0.01)
        assert protocol.reading_paused
        assert protocol.size <= 1024 * 1024  # the high-water mark plus at most one socket read
        got = bytearray()
        with anyio.fail_after(10):
            while chunk := await stream.read(65536, timeout=5):
                got += chunk
        assert bytes(got) == payload
        await stream.aclose()
        tg.cancel_scope.cancel()
    await listener.aclose()
