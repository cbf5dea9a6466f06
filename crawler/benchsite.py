"""A generated site served on 127.0.0.1, for ``crawler bench`` and the tests.

Owns: a deterministic site of N linked HTML pages (every page reachable from ``/index.html``;
links spelled in varied forms: relative, ``./``, ``../``, absolute-path, absolute URL, with
tracking query strings and fragments that canonicalize to the same page; plus links that must not
be followed: other hosts, ``mailto:``, ``javascript:``), an ASGI app serving it, and a server
(hypercorn: HTTP/1.1, and HTTP/2 over TLS with a throwaway trustme CA) bound to a loopback port.
hypercorn and trustme are imported here and nowhere else in the package.
Must not: be used against anything but loopback.

Run as a program it serves until SIGTERM / SIGINT and prints one JSON line when ready:
``python -m crawler.benchsite --pages 10000 [--tls DIR]`` → ``{"url": ..., "ca": ...}``.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import posixpath
import random
import signal
import socket
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import anyio

__all__ = ["SiteApp", "TlsFiles", "bind_loopback", "make_tls", "page_path", "serve", "site_links"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_WORDS = (
    "the of and to in is that for it as was with be by on not this are or from at which but have "
    "crawler server request response header body page link index queue scheduler worker socket "
    "stream frame window buffer latency throughput protocol document section chapter example "
    "network connection keepalive handshake certificate cipher compression encoding parser token "
    "river mountain garden library market village harbor station bridge valley forest ancient"
).split()
_QUERIES = ("utm_source=nav", "utm_medium=web&utm_campaign=x", "utm_content=footer")
_FRAGS = ("top", "intro", "details", "notes")


def page_path(i: int) -> str:
    """URL path of page ``i`` (page 0 is ``/index.html``)."""
    return "/index.html" if i == 0 else f"/s{i % 20:02d}/d{(i // 20) % 5}/p{i:05d}.html"


def _parse_page(path: str) -> int | None:
    if path == "/index.html":
        return 0
    name = posixpath.basename(path)
    if not (name.startswith("p") and name.endswith(".html") and name[1:-5].isdigit()):
        return None
    i = int(name[1:-5])
    return i if i > 0 and page_path(i) == path else None


def site_links(i: int, n: int, seed: int = 1) -> list[int]:
    """Pages that page ``i`` links to: its tree children (so all are reachable) and a few others."""
    rng = random.Random(seed * 1_000_003 + i)
    branching = 10
    children = [c for c in range(i * branching + 1, i * branching + branching + 1) if c < n]
    others = [rng.randrange(n) for _ in range(5)]
    return children + others


def _href(rng: random.Random, src: str, dst: str, origin: str) -> str:
    r = rng.random()
    if r < 0.35:
        href = posixpath.relpath(dst, posixpath.dirname(src))
    elif r < 0.45:
        rel = posixpath.relpath(dst, posixpath.dirname(src))
        href = rel if rel.startswith("..") else "./" + rel
    elif r < 0.55:
        href = origin + dst
    else:
        href = dst
    r = rng.random()
    if r < 0.10:
        href += "#" + rng.choice(_FRAGS)
    elif r < 0.20:
        href += "?" + rng.choice(_QUERIES)
    return href


@lru_cache(maxsize=1)
def _filler(seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(_WORDS, k=rng.randint(40, 90))) for _ in range(400)]


def render_page(i: int, n: int, origin: str, *, seed: int = 1, paragraphs: int = 12) -> bytes:
    """The HTML of page ``i`` of an ``n``-page site served at ``origin``."""
    rng = random.Random(seed * 7_919 + i)
    src = page_path(i)
    filler = _filler(seed)
    links = "".join(
        f'<li><a href="{_href(rng, src, page_path(j), origin)}">page {j}</a></li>'
        for j in site_links(i, n, seed)
    )
    text = "".join(f"<p>{rng.choice(filler)}</p>" for _ in range(paragraphs))
    extra = (
        '<a href="http://127.0.0.2:9/elsewhere.html">elsewhere</a>'
        '<a href="mailto:bot@example.org">mail</a><a href="javascript:void(0)">js</a>'
    )
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>Page {i}</title>'
        f'<link rel="canonical" href="{origin}{src}"></head><body><h1>Page {i}</h1>'
        f"<ul>{links}</ul>{text}{extra}</body></html>"
    ).encode()


@dataclass(eq=False)
class SiteApp:
    """ASGI app serving the generated site; records what it served (for tests and bench)."""

    pages: int
    seed: int = 1
    paragraphs: int = 12
    requests: Counter[str] = field(default_factory=Counter)
    connections: set[tuple[str, int]] = field(default_factory=set)
    versions: Counter[str] = field(default_factory=Counter)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        self.requests[path] += 1
        if scope.get("client"):
            self.connections.add(tuple(scope["client"]))
        self.versions[scope.get("http_version", "?")] += 1
        i = _parse_page(path)
        if path == "/robots.txt":
            await _respond(send, 200, b"User-agent: *\nAllow: /\n", "text/plain")
        elif i is None or i >= self.pages:
            await _respond(send, 404, b"not found", "text/plain")
        else:
            host = dict(scope["headers"]).get(b"host", b"127.0.0.1").decode()
            origin = f"{scope['scheme']}://{host}"
            await _respond(
                send,
                200,
                render_page(i, self.pages, origin, seed=self.seed, paragraphs=self.paragraphs),
                "text/html; charset=utf-8",
            )

    def reachable(self, max_depth: int | None = None) -> dict[int, int]:
        """Every page reachable from page 0 with its BFS depth (at most ``max_depth``)."""
        depth = {0: 0}
        frontier = [0]
        while frontier:
            nxt = []
            for i in frontier:
                if max_depth is not None and depth[i] >= max_depth:
                    continue
                for j in site_links(i, self.pages, self.seed):
                    if j not in depth:
                        depth[j] = depth[i] + 1
                        nxt.append(j)
            frontier = nxt
        return depth


async def _respond(send: Send, status: int, body: bytes, ctype: str) -> None:
    headers = [(b"content-type", ctype.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A throwaway CA and a server certificate for 127.0.0.1 / localhost / ::1."""

    ca: Path
    cert: Path
    key: Path


def make_tls(folder: Path) -> TlsFiles:
    """Write a new CA and a loopback server certificate into ``folder``."""
    import trustme

    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost", "::1")
    folder.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    ca.cert_pem.write_to_path(str(files.ca))
    server.private_key_pem.write_to_path(str(files.key))
    with files.cert.open("wb") as f:
        for blob in server.cert_chain_pems:
            f.write(blob.bytes())
    return files


def bind_loopback(host: str = "127.0.0.1") -> socket.socket:
    """A listening TCP socket on a free loopback port (any of 127.0.0.0/8 or ::1)."""
    if host == "localhost":
        host = "127.0.0.1"
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError("test servers listen on loopback only")
    family = socket.AF_INET6 if host == "::1" else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


async def serve(
    app: Callable[[Scope, Receive, Send], Awaitable[None]],
    sock: socket.socket,
    *,
    tls: TlsFiles | None = None,
    shutdown: Callable[[], Awaitable[Any]],
) -> None:
    """Serve ``app`` on an already bound socket until ``shutdown()`` returns.

    With ``tls``, ALPN offers h2 and http/1.1; without, plain HTTP/1.1 (and h2c upgrade).
    """
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    config = Config()
    # hypercorn takes ownership of (and closes) the descriptor it is given: give it a copy.
    config.bind = [f"fd://{os.dup(sock.fileno())}"]
    config.accesslog = None
    config.errorlog = None
    config.loglevel = "ERROR"
    config.keep_alive_max_requests = 10**9  # one connection may serve a whole crawl
    config.keep_alive_timeout = 30
    config.h2_max_concurrent_streams = 256
    if tls is not None:
        config.certfile = str(tls.cert)
        config.keyfile = str(tls.key)
    await hypercorn_serve(app, config, shutdown_trigger=shutdown, mode="asgi")  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> None:
    """Serve a generated site until SIGTERM; print ``{"url", "ca"}`` as one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pages", type=int, default=10_000)
    parser.add_argument("--tls", type=Path, help="folder for a throwaway CA; serve HTTPS + h2")
    parser.add_argument("--paragraphs", type=int, default=12)
    args = parser.parse_args(argv)
    sock = bind_loopback()
    tls = make_tls(args.tls) if args.tls else None
    app = SiteApp(args.pages, paragraphs=args.paragraphs)
    scheme = "https" if tls else "http"
    port = sock.getsockname()[1]

    async def run() -> None:
        stop = anyio.Event()

        async def watch() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    stop.set()
                    return

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            print(
                json.dumps(
                    {
                        "url": f"{scheme}://127.0.0.1:{port}/index.html",
                        "ca": str(tls.ca) if tls else None,
                    }
                ),
                flush=True,
            )
            await serve(app, sock, tls=tls, shutdown=stop.wait)
            tg.cancel_scope.cancel()

    anyio.run(run)
    sys.exit(0)


if __name__ == "__main__":
    main()
