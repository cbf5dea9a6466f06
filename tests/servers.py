"""Real HTTP servers for tests: hypercorn in a background thread on a loopback port.

HTTP/1.1 plain, or HTTPS with ALPN h2 + http/1.1 from a trustme CA. Each server records the
requests it served so tests can assert on what reached the server.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from crawler.benchsite import TlsFiles, bind_loopback, serve

Scope = MutableMapping[str, Any]
App = Callable[[Scope, Any, Any], Awaitable[None]]


class LiveServer:
    """A hypercorn server running ``app`` on a loopback address (127.0.0.1 by default) in its
    own thread and event loop."""

    def __init__(self, app: App, tls: TlsFiles | None = None, host: str = "127.0.0.1") -> None:
        self.app = app
        self.tls = tls
        self.host = host
        self.sock = bind_loopback(host)
        self.port = self.sock.getsockname()[1]
        self.scheme = "https" if tls else "http"
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return self.origin + path

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self.error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        await serve(self.app, self.sock, tls=self.tls, shutdown=self._stop.wait)

    def __enter__(self) -> LiveServer:
        self._thread.start()
        if not self._ready.wait(10) or self.error:
            raise RuntimeError(f"test server did not start: {self.error}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        self.sock.close()
