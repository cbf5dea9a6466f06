"""An ASGI file server for download tests: Range / If-Range done right, and done wrong on purpose.

Paths (``NAME`` is a key of ``files``):
- ``/f/NAME``: single byte ranges (``bytes=N-`` / ``bytes=N-M``), a strong ETag and a
  Last-Modified per content, ``If-Range`` honoured, 416 with ``bytes */SIZE``.
- ``/norange/NAME``: ignores Range (always 200 with the whole file).
- ``/wrongoffset/NAME``: answers a Range with a 206 that starts at 0.
- ``/weak/NAME``: only a weak ETag and no Last-Modified (nothing to resume safely with).
- ``/liar/NAME``: declares the file's length, sends half of it, then dies.
- ``/redirect/NAME``: 302 to ``/f/NAME``.
- ``/cd/NAME``: like ``/f/`` plus ``Content-Disposition: attachment; filename="../NAME"``.

``cut[NAME] = n`` makes the next responses for NAME stop after ``n`` body bytes (the app
raises: hypercorn drops an HTTP/1.1 connection, and leaves an HTTP/2 stream open, which the
client's idle timeout ends); ``cuts_left[NAME]`` counts how many responses are cut (default 1).
``stall[NAME] = n``: send ``n`` bytes then wait (bounded) instead of dying.
``busy[NAME] = n``: the next ``n`` requests for NAME get 503 with ``Retry-After: busy_s``.
Every request is logged as a :class:`Hit`.
"""

from __future__ import annotations

import email.utils
import hashlib
import time
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

import anyio

CHUNK = 64 * 1024


@dataclass(frozen=True)
class Hit:
    path: str
    range: str | None
    if_range: str | None
    status: int
    http_version: str
    at: float = field(default_factory=time.monotonic)


@dataclass(eq=False)
class FileApp:
    files: dict[str, bytes] = field(default_factory=dict)
    cut: dict[str, int] = field(default_factory=dict)
    cuts_left: dict[str, int] = field(default_factory=dict)
    stall: dict[str, int] = field(default_factory=dict)
    stall_s: float = 20.0
    busy: dict[str, int] = field(default_factory=dict)
    busy_s: int = 1
    hits: list[Hit] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=dict)

    def set(self, name: str, body: bytes) -> None:
        """Put (or change) a file; a change gives it a new ETag and Last-Modified."""
        self.files[name] = body
        self.versions[name] = self.versions.get(name, 0) + 1

    def etag(self, name: str) -> str:
        return '"' + hashlib.sha256(self.files[name]).hexdigest()[:16] + '"'

    def last_modified(self, name: str) -> str:
        return email.utils.formatdate(1_600_000_000 + self.versions[name], usegmt=True)

    def hits_for(self, name: str) -> list[Hit]:
        return [h for h in self.hits if h.path.endswith("/" + name)]

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        path: str = scope["path"]
        kind, _, name = path.strip("/").partition("/")
        status = 200

        async def start(status: int, hs: list[tuple[str, str]]) -> None:
            self.hits.append(
                Hit(
                    path,
                    headers.get("range"),
                    headers.get("if-range"),
                    status,
                    scope.get("http_version", "?"),
                )
            )
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [(k.encode(), v.encode()) for k, v in hs],
                }
            )

        if name not in self.files:
            await start(404, [("content-length", "0")])
            await send({"type": "http.response.body", "body": b""})
            return
        if self.busy.get(name, 0) > 0:
            self.busy[name] -= 1
            await start(503, [("retry-after", str(self.busy_s)), ("content-length", "0")])
            await send({"type": "http.response.body", "body": b""})
            return
        if kind == "redirect":
            await start(302, [("location", f"/f/{name}"), ("content-length", "0")])
            await send({"type": "http.response.body", "body": b""})
            return
        body = self.files[name]
        size = len(body)
        hs = [("content-type", "application/octet-stream"), ("accept-ranges", "bytes")]
        if kind == "weak":
            hs.append(("etag", 'W/"weak"'))
        else:
            hs += [("etag", self.etag(name)), ("last-modified", self.last_modified(name))]
        if kind == "cd":
            hs.append(("content-disposition", f'attachment; filename="../{name}"'))
        start_at, end_at = 0, size - 1
        wanted = headers.get("range")
        if_range = headers.get("if-range")
        fresh = if_range is None or if_range in (self.etag(name), self.last_modified(name))
        if wanted and kind in ("f", "wrongoffset", "cd", "weak") and fresh:
            spec = wanted.removeprefix("bytes=")
            first, _, last = spec.partition("-")
            if int(first) >= size:
                hs.append(("content-range", f"bytes */{size}"))
                await start(416, [*hs, ("content-length", "0")])
                await send({"type": "http.response.body", "body": b""})
                return
            start_at = 0 if kind == "wrongoffset" else int(first)
            end_at = min(size - 1, int(last)) if last else size - 1
            status = 206
            hs.append(("content-range", f"bytes {start_at}-{end_at}/{size}"))
        part = body[start_at : end_at + 1]
        hs.append(("content-length", str(len(part))))
        limit = len(part)
        dies = False
        if kind == "liar":
            limit, dies = len(part) // 2, True
        elif name in self.cut and self.cuts_left.get(name, 1) > 0:
            self.cuts_left[name] = self.cuts_left.get(name, 1) - 1
            limit, dies = min(limit, self.cut[name]), True
        stall = self.stall.get(name)
        await start(status, hs)
        sent = 0
        while sent < limit:
            n = min(CHUNK, limit - sent)
            if stall is not None and sent + n > stall:
                n = stall - sent
                if n > 0:
                    await send(
                        {
                            "type": "http.response.body",
                            "body": part[sent : sent + n],
                            "more_body": True,
                        }
                    )
                await anyio.sleep(self.stall_s)  # bounded: the client is killed meanwhile
                raise RuntimeError("stalled response ends")
            await send(
                {"type": "http.response.body", "body": part[sent : sent + n], "more_body": True}
            )
            sent += n
        if dies:
            raise RuntimeError("the server dies mid-body")
        await send({"type": "http.response.body", "body": b""})
