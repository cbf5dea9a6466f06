"""Network streams for httpcore2 on asyncio's own transports (TLS in the event loop's C code).

Owns: an ``httpcore2.AsyncNetworkBackend`` whose streams are asyncio protocol/transport pairs.
httpcore2's default backend runs TLS through anyio's ``TLSStream`` (an ``ssl.MemoryBIO`` driven
from Python, a cancel scope per read and write); with uvloop the loop's transports do TLS and
buffering in C, and a read is one future wait. Connecting races the host's addresses
(RFC 8305 style: interleaved families, a new attempt every 250 ms) since uvloop has no happy
eyeballs of its own. Errors are httpcore2's exception kinds (ConnectError, ReadTimeout...), so
httpx2 maps them as it maps its own backend's.
Must not: know about HTTP, requests or outcomes (the fetcher translates exceptions).
"""

from __future__ import annotations

import asyncio
import select
import socket
import ssl
from collections import deque
from collections.abc import Iterable
from typing import Any, cast

import anyio
import httpcore2

__all__ = ["AsyncioBackend", "AsyncioStream", "race"]

_HIGH_WATER = 256 * 1024  # buffered bytes at which reading from the socket pauses (one read)
_STAGGER_S = 0.25  # RFC 8305's "Connection Attempt Delay"

_SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)


class _Protocol(asyncio.Protocol):
    """Buffers what the transport delivers; wakes the one reader (and the one writer waiting
    for the transport to drain)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.chunks: deque[bytes] = deque()
        self.size = 0
        self.eof = False
        self.error: BaseException | None = None
        self.lost = False
        self.reading_paused = False
        self.writing_paused = False
        self.read_waiter: asyncio.Future[None] | None = None
        self.drain_waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        if self.size > _HIGH_WATER and not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake_reader()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.eof = True
        if exc is not None and self.error is None:
            self.error = exc
        self._wake_reader()
        waiter, self.drain_waiter = self.drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        waiter, self.drain_waiter = self.drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_reader(self) -> None:
        waiter, self.read_waiter = self.read_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def take(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` of what is buffered (a chunk is handed over without a copy
        when it fits)."""
        chunks = self.chunks
        first = chunks[0]
        if len(first) <= max_bytes and len(chunks) == 1:
            chunks.clear()
            data = first
        else:
            parts: list[bytes] = []
            room = max_bytes
            while chunks and room > 0:
                chunk = chunks.popleft()
                if len(chunk) > room:
                    chunks.appendleft(chunk[room:])
                    chunk = chunk[:room]
                parts.append(chunk)
                room -= len(chunk)
            data = b"".join(parts)
        self.size -= len(data)
        if self.reading_paused and self.size <= _HIGH_WATER // 4 and self.transport is not None:
            self.reading_paused = False
            self.transport.resume_reading()
        return data


async def _wait(
    loop: asyncio.AbstractEventLoop,
    waiter: asyncio.Future[None],
    timeout: float | None,  # noqa: ASYNC109 - a loop timer, cheaper than a cancel scope
    kind: type[Exception],
) -> None:
    """Wait for ``waiter``; ``kind`` (a httpcore2 timeout) when ``timeout`` passes first."""
    if timeout is None:
        await waiter
        return
    handle = loop.call_later(timeout, _expire, waiter)
    try:
        await waiter
    except TimeoutError:
        raise kind(f"timed out after {timeout:g} s") from None
    finally:
        handle.cancel()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class AsyncioStream(httpcore2.AsyncNetworkStream):
    """One connection: an asyncio transport and its buffering protocol."""

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self._loop = asyncio.get_running_loop()

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        p = self._protocol
        if not p.chunks:
            if p.eof:
                if p.error is not None:
                    raise httpcore2.ReadError(str(p.error) or type(p.error).__name__) from p.error
                return b""
            waiter = p.read_waiter = self._loop.create_future()
            try:
                await _wait(self._loop, waiter, timeout, httpcore2.ReadTimeout)
            finally:
                if p.read_waiter is waiter:
                    p.read_waiter = None
            if not p.chunks:
                if p.error is not None:
                    raise httpcore2.ReadError(str(p.error) or type(p.error).__name__) from p.error
                return b""
        return p.take(max_bytes)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        if not buffer:
            return
        p = self._protocol
        if p.lost or self._transport.is_closing():
            raise httpcore2.WriteError("connection closed") from p.error
        self._transport.write(buffer)
        if p.writing_paused:
            waiter = p.drain_waiter = self._loop.create_future()
            await _wait(self._loop, waiter, timeout, httpcore2.WriteTimeout)
            if p.lost:
                raise httpcore2.WriteError("connection closed") from p.error

    async def aclose(self) -> None:
        self._transport.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore2's interface
    ) -> httpcore2.AsyncNetworkStream:
        try:
            with anyio.fail_after(timeout):
                transport = await self._loop.start_tls(
                    self._transport,
                    self._protocol,
                    ssl_context,
                    server_side=False,
                    server_hostname=server_hostname,
                )
        except TimeoutError:
            self._transport.abort()
            raise httpcore2.ConnectTimeout("TLS handshake timed out") from None
        except (OSError, ssl.SSLError, ConnectionError) as exc:
            self._transport.abort()
            raise httpcore2.ConnectError(str(exc) or type(exc).__name__) from exc
        if transport is None:  # the peer closed during the handshake
            raise httpcore2.ConnectError("connection closed during the TLS handshake")
        self._protocol.transport = transport
        return AsyncioStream(transport, self._protocol)

    def get_extra_info(self, info: str) -> Any:
        t = self._transport
        if info == "ssl_object":
            return t.get_extra_info("ssl_object")
        if info == "client_addr":
            return t.get_extra_info("sockname")
        if info == "server_addr":
            return t.get_extra_info("peername")
        if info == "socket":
            return t.get_extra_info("socket")
        if info == "is_readable":
            p = self._protocol
            return bool(p.chunks) or p.eof or _socket_readable(t.get_extra_info("socket"))
        return None


def _socket_readable(sock: Any) -> bool:
    """Would a read return at once (data, or the end of the stream)? A socket that is gone
    counts as readable: the next read reports the end."""
    fd = -1 if sock is None else sock.fileno()
    if fd < 0:
        return True
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def _interleave(infos: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Addresses alternating between families, first family first (RFC 8305 4)."""
    by_family: dict[int, deque[tuple[Any, ...]]] = {}
    for info in infos:
        by_family.setdefault(info[0], deque()).append(info)
    queues = list(by_family.values())
    out: list[tuple[Any, ...]] = []
    while queues:
        for q in list(queues):
            out.append(q.popleft())
            if not q:
                queues.remove(q)
    return out


async def _connect_socket(host: str, port: int, local_address: str | None) -> socket.socket:
    """A connected non-blocking socket to one of ``host``'s addresses."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not infos:
        raise OSError(f"no address for {host}")
    return await race(_interleave(infos), local_address, f"{host}:{port}")


async def race(
    infos: list[tuple[Any, ...]], local_address: str | None = None, name: str = ""
) -> socket.socket:
    """Connect to the first of ``infos`` (getaddrinfo tuples) that answers: one attempt every
    250 ms while earlier ones are pending, the first connected wins and the others are
    cancelled (RFC 8305). OSError with every attempt's error when none connects."""
    loop = asyncio.get_running_loop()
    winner: socket.socket | None = None
    errors: list[OSError] = []
    failed = anyio.Event()  # an attempt failed: start the next one without waiting

    async def attempt(info: tuple[Any, ...], tg: anyio.abc.TaskGroup) -> None:
        nonlocal winner, failed
        family, type_, proto, _, address = info
        sock = socket.socket(family, type_, proto)
        try:
            sock.setblocking(False)
            if local_address is not None:
                sock.bind((local_address, 0))
            await loop.sock_connect(sock, address)
        except BaseException as exc:
            sock.close()
            if isinstance(exc, OSError):
                errors.append(exc)
                failed.set()
                return
            raise
        if winner is None:
            winner = sock
            tg.cancel_scope.cancel()
        else:
            sock.close()

    async with anyio.create_task_group() as tg:
        for i, info in enumerate(infos):
            if i:
                with anyio.move_on_after(_STAGGER_S):
                    await failed.wait()
            failed = anyio.Event()
            tg.start_soon(attempt, info, tg)
    if winner is None:
        if len(errors) == 1:
            raise errors[0]
        raise OSError(f"cannot connect to {name}: " + "; ".join(map(str, errors)))
    return winner


class AsyncioBackend(httpcore2.AsyncNetworkBackend):
    """httpcore2 network backend on the running asyncio loop's transports."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore2's interface
        local_address: str | None = None,
        socket_options: Iterable[_SocketOption] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            with anyio.fail_after(timeout):
                sock = await _connect_socket(host, port, local_address)
        except TimeoutError:
            raise httpcore2.ConnectTimeout(f"connecting to {host}:{port} timed out") from None
        except OSError as exc:
            raise httpcore2.ConnectError(str(exc) or type(exc).__name__) from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for option in socket_options or ():
                sock.setsockopt(*option)
            transport, protocol = await loop.create_connection(_Protocol, sock=sock)
        except OSError as exc:
            sock.close()
            raise httpcore2.ConnectError(str(exc) or type(exc).__name__) from exc
        return AsyncioStream(transport, protocol)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore2's interface
        socket_options: Iterable[_SocketOption] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            with anyio.fail_after(timeout):
                transport, protocol = await loop.create_unix_connection(_Protocol, path)
        except TimeoutError:
            raise httpcore2.ConnectTimeout(f"connecting to {path} timed out") from None
        except OSError as exc:
            raise httpcore2.ConnectError(str(exc) or type(exc).__name__) from exc
        return AsyncioStream(transport, protocol)

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)
