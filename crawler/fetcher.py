"""The HTTP side: the one ``AsyncClient``, streaming a response into a sink, outcome kinds.

Owns: the process's single httpx2 ``AsyncClient`` (HTTP/2 on by default, pool limits sized from
the job's concurrency, granular timeouts, headers, auth, proxy, TLS); streaming a response's
decoded body into a :class:`~crawler.models.BodySink` with a byte cap (httpx2 decodes gzip,
deflate, brotli and zstd in bounded pieces, so a decompression bomb stops at the cap without the
decoded bytes ever being held whole) and a total deadline per request (httpx's read timeout is
per read, so a slow-drip server is stopped by ``anyio.fail_after``); and translating every httpx2
exception into an :class:`~crawler.models.Outcome`. httpx2 is imported here and nowhere else,
and its exceptions never leave this module.
Must not: follow redirects (the engine sends each hop back through scope and the frontier),
decide what to store, or touch the frontier.
"""

from __future__ import annotations

import os
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Self

import anyio
import httpcore2._async.http11
import httpx2

from crawler.config import HttpConfig, JobConfig
from crawler.errors import ConfigError
from crawler.models import BodySink, FetchResult, Outcome
from crawler.netio import AsyncioBackend

__all__ = ["Fetcher", "build_client", "is_credential_header", "use_asyncio_streams"]

_CREDENTIAL_WORDS = ("auth", "token", "key", "secret", "session", "cookie", "password")


def is_credential_header(name: str) -> bool:
    """Does a configured header carry credentials (``Authorization``, ``Cookie``,
    ``X-Api-Key``, ``X-Auth-Token``...)? Those go only where auth goes: to the scope's hosts,
    and never to another host after a redirect."""
    lowered = name.lower()
    return any(word in lowered for word in _CREDENTIAL_WORDS)


# httpcore2 reads 64 KiB per socket read while the asyncio transport hands over up to 256 KiB
# at a time (which anyio then slices, copying, into 64 KiB pieces). Reading 256 KiB per call
# cuts the per-chunk work of h11 / httpcore / httpx / the sink by four on large bodies: about
# +30 % MB/s and -22 % CPU on bulk HTTP/1.1 downloads (bench/fetch_bench.sh, RAM-backed). A
# class constant, not an API: left alone if a later httpcore2 drops it.
_READ_BYTES = 256 * 1024
if getattr(httpcore2._async.http11.AsyncHTTP11Connection, "READ_NUM_BYTES", None) == 64 * 1024:
    httpcore2._async.http11.AsyncHTTP11Connection.READ_NUM_BYTES = _READ_BYTES


def _ssl_context(http: HttpConfig) -> ssl.SSLContext | bool:
    if not http.verify:
        return False
    ctx = httpx2.create_ssl_context()  # the system's CAs (or SSL_CERT_FILE / SSL_CERT_DIR)
    if http.ca_bundle is not None:
        try:
            ctx.load_verify_locations(cafile=http.ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"http.ca_bundle: cannot load {http.ca_bundle}: {exc}") from None
    return ctx


def build_client(job: JobConfig) -> httpx2.AsyncClient:
    """The crawl's one client, configured from the job (not yet entered)."""
    http, limits = job.http, job.limits
    t = http.timeouts
    plain = {k: v for k, v in http.headers.items() if not is_credential_header(k)}
    headers = {"User-Agent": http.user_agent, **plain}
    try:
        client = httpx2.AsyncClient(
            http2=http.http2,
            verify=_ssl_context(http),
            proxy=http.proxy,
            headers=headers,
            follow_redirects=False,
            timeout=httpx2.Timeout(
                connect=t.connect_s, read=t.read_s, write=t.write_s, pool=t.pool_s
            ),
            limits=httpx2.Limits(
                max_connections=limits.concurrency,
                max_keepalive_connections=limits.concurrency,
                keepalive_expiry=30.0,
            ),
        )
    except (ValueError, TypeError, httpx2.InvalidURL) as exc:
        raise ConfigError(f"http: {exc}") from None
    use_asyncio_streams(client)
    return client


def use_asyncio_streams(client: httpx2.AsyncClient) -> bool:
    """Give the client's direct connection pool the asyncio-native network backend (TLS and
    buffering in the event loop's C code instead of anyio's Python TLS stream: about 20 % less
    CPU per request, see ``netio``). Returns whether it was installed.

    Only the direct pool: proxied connections (configured or from the environment) keep
    httpcore2's own backend, which also does TLS to an HTTPS proxy and TLS inside it. httpx2
    builds its pools itself and takes no backend, so it is set on the pool before any
    connection exists; a later httpx2 whose pool looks different keeps its own backend.
    """
    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    if type(pool).__name__ != "AsyncConnectionPool":  # a proxy pool is a subclass
        return False
    if type(getattr(pool, "_network_backend", None)).__name__ != "AutoBackend":
        return False
    pool._network_backend = AsyncioBackend()  # type: ignore[union-attr]
    return True


def _auth_headers(job: JobConfig, environ: Mapping[str, str]) -> dict[str, str]:
    """Credentials: the job's auth and its credential-like custom headers."""
    secret = {k: v for k, v in job.http.headers.items() if is_credential_header(k)}
    auth = job.http.auth
    if auth is None:
        return secret
    if auth.type == "bearer":
        assert auth.token_env is not None
        return {**secret, "Authorization": f"Bearer {environ[auth.token_env]}"}
    assert auth.username_env is not None
    assert auth.password_env is not None
    basic = httpx2.BasicAuth(environ[auth.username_env], environ[auth.password_env])
    request = basic.sync_auth_flow(httpx2.Request("GET", "http://auth.invalid/")).__next__()
    return {**secret, "Authorization": request.headers["Authorization"]}


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def classify(exc: Exception) -> tuple[Outcome, str]:
    """The outcome kind and a one-line message for an exception raised while fetching."""
    chain = _chain(exc)
    message = next((str(e) for e in chain if str(e)), type(exc).__name__)
    message = " ".join(message.split())[:300]
    if isinstance(exc, httpx2.TimeoutException | TimeoutError):
        return Outcome.TIMEOUT, message or "timed out"
    if isinstance(exc, httpx2.InvalidURL | httpx2.UnsupportedProtocol):
        return Outcome.INVALID_URL, message
    if any(isinstance(e, socket.gaierror) for e in chain) or "name resolution" in message.lower():
        return Outcome.DNS, message
    if any(isinstance(e, ssl.SSLError | ssl.CertificateError) for e in chain):
        return Outcome.TLS, message
    if isinstance(exc, httpx2.ConnectError | httpx2.ProxyError):
        return Outcome.CONNECT, message
    if isinstance(exc, httpx2.ProtocolError | httpx2.DecodingError):
        return Outcome.PROTOCOL, message
    if isinstance(exc, httpx2.TransportError | OSError):
        return Outcome.NETWORK, message
    return Outcome.PROTOCOL, message


class Fetcher:
    """Owns the crawl's AsyncClient. Use as ``async with Fetcher(job) as fetcher``.

    ``download=True`` applies the job's ``download`` limits (no size cap or total deadline by
    default; an idle timeout per stream) instead of the page limits.
    """

    def __init__(
        self,
        job: JobConfig,
        *,
        environ: Mapping[str, str] | None = None,
        client: httpx2.AsyncClient | None = None,
        download: bool = False,
    ) -> None:
        self._client = client if client is not None else build_client(job)
        self._auth = _auth_headers(job, os.environ if environ is None else environ)
        self._max_bytes: int | None = job.limits.max_bytes
        self._deadline: float | None = job.limits.request_timeout_s
        self._idle: float | None = None
        if download:
            # A file is not a page: no cap and no total deadline unless asked, but a stream
            # that goes quiet is cut (per stream, so it also works on a busy HTTP/2 connection).
            self._max_bytes = job.download.max_bytes
            self._deadline = job.download.max_time_s
            self._idle = job.download.idle_timeout_s
        self.requests = 0

    def __repr__(self) -> str:
        return f"<Fetcher requests={self.requests} max_bytes={self._max_bytes}>"  # None: no cap

    async def __aenter__(self) -> Self:
        await self._client.__aenter__()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await self._client.__aexit__(et, e, tb)

    async def fetch(
        self,
        url: str,
        open_sink: Callable[[], BodySink],
        *,
        send_auth: bool = False,
        headers: Mapping[str, str] | None = None,
        max_bytes: int | None = None,
        on_response: Callable[[int, Mapping[str, str]], bool] | None = None,
    ) -> FetchResult:
        """GET ``url``; a 2xx body is streamed into ``open_sink()`` (called at most once).

        ``headers`` are added to this request only (e.g. ``Range`` / ``If-Range``).
        ``max_bytes`` caps this body instead of the fetcher's cap (robots.txt).
        ``on_response(status, headers)`` is called for a 2xx response before its body is read
        (header names lower-case); when it returns False the body is not read, ``open_sink``
        is not called and the outcome is OK (the caller knows why it declined).
        Never raises for anything the network or server does: the result's outcome says what
        happened. When the outcome is not OK, whatever went into the sink must not be kept.
        """
        self.requests += 1
        request_headers = dict(headers or {})
        if send_auth:
            request_headers.update(self._auth)
        started = time.perf_counter()
        status: int | None = None
        version: str | None = None
        ctype: str | None = None
        try:
            with anyio.fail_after(self._deadline):
                async with self._client.stream("GET", url, headers=request_headers) as response:
                    status = response.status_code
                    version = response.http_version
                    ctype = response.headers.get("content-type")
                    cap = self._max_bytes if max_bytes is None else max_bytes
                    result = await self._read(response, open_sink, started, cap, on_response)
        except Exception as exc:  # noqa: BLE001 - every failure becomes an outcome value
            outcome, message = classify(exc)
            return FetchResult(
                outcome,
                status=status,
                http_version=version,
                content_type=ctype,
                error=message,
                elapsed_s=time.perf_counter() - started,
            )
        return result

    async def _read(
        self,
        response: httpx2.Response,
        open_sink: Callable[[], BodySink],
        started: float,
        cap: int | None,
        on_response: Callable[[int, Mapping[str, str]], bool] | None = None,
    ) -> FetchResult:
        status = response.status_code

        def result(outcome: Outcome, **kw: str | None) -> FetchResult:
            return FetchResult(
                outcome,
                status=status,
                http_version=response.http_version,
                content_type=response.headers.get("content-type"),
                elapsed_s=time.perf_counter() - started,
                headers=tuple(response.headers.multi_items()),
                **kw,
            )

        if 300 <= status < 400 and "location" in response.headers:
            try:
                location = str(response.url.join(response.headers["location"]))
            except (httpx2.InvalidURL, ValueError) as exc:
                return result(Outcome.INVALID_URL, error=f"bad Location header: {exc}")
            return result(Outcome.REDIRECT, location=location)
        if not 200 <= status < 300:
            return result(Outcome.HTTP_ERROR, error=f"HTTP {status}")
        declared = response.headers.get("content-length", "")
        identity = "content-encoding" not in response.headers
        if cap is not None and identity and declared.isdigit() and int(declared) > cap:
            return result(Outcome.TOO_LARGE, error=f"Content-Length {declared} > max_bytes {cap}")
        if on_response is not None and not on_response(status, response.headers):
            return result(Outcome.OK)
        sink = open_sink()
        idle = self._idle
        if idle is None:
            return await self._copy_body(response, sink, result, cap)
        # A download: one cancel scope whose deadline moves with the chunks (cheaper than a
        # timeout per chunk), cut when the stream goes quiet for ``idle`` seconds.
        with anyio.CancelScope(deadline=anyio.current_time() + idle) as quiet:
            return await self._copy_body(response, sink, result, cap, quiet, idle)
        return result(Outcome.TIMEOUT, error=f"no data for {idle:g} s")  # the scope's cut

    @staticmethod
    async def _copy_body(
        response: httpx2.Response,
        sink: BodySink,
        result: Callable[..., FetchResult],
        cap: int | None,
        quiet: anyio.CancelScope | None = None,
        idle: float = 0.0,
    ) -> FetchResult:
        """The body loop: each decoded piece into ``sink`` under ``cap``; with ``quiet``, its
        deadline is moved ``idle`` seconds ahead as data comes."""
        size = 0
        # Moving a deadline reschedules a timer: do it at most every idle/8 s, so the cut
        # comes after between 7/8 and 1 times ``idle`` without data.
        # (time.monotonic is the cheap check; the deadline itself is in the loop's clock.)
        step = idle / 8
        moved = time.monotonic()
        # httpx2's decoders yield at most 1 MiB per piece, so the cap is checked before a
        # piece is written and memory stays at one piece whatever the compression ratio.
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if cap is not None and size > cap:
                return result(Outcome.TOO_LARGE, error=f"body exceeds max_bytes {cap}")
            try:
                sink.write(chunk)
            except OSError as exc:  # the disk, not the network: disk full, permissions
                return result(Outcome.STORAGE, error=f"cannot write the body: {exc}")
            if quiet is not None and time.monotonic() - moved > step:
                quiet.deadline = anyio.current_time() + idle
                moved = time.monotonic()
        return result(Outcome.OK)
