"""Hostile and broken servers: every case ends as a recorded outcome, nothing partial kept."""

from __future__ import annotations

import gzip
import json
import time
from collections import Counter
from collections.abc import Callable, MutableMapping
from functools import cache
from typing import Any

import anyio
import anyio.abc
import pytest

from crawler.benchsite import TlsFiles
from crawler.config import JobConfig
from crawler.engine import run_crawl
from tests.servers import LiveServer

pytestmark = pytest.mark.anyio

BOMB_DECODED = 64 * 1024 * 1024
# Plain pages reached only through the malformed, non-UTF-8, <base> and tracking-query links.
LINKED_OK = ("/ok1", "/ok2", "/ok3", "/ok4", "/elsewhere/based.html", "/relative/dir/page.html")


@cache
def bomb() -> bytes:
    """64 MiB of zeros, gzipped to about 64 KiB."""
    return gzip.compress(b"\0" * BOMB_DECODED, compresslevel=9)


def html(body: str) -> bytes:
    return f"<!doctype html><html><body>{body}</body></html>".encode()


INDEX = html(
    "".join(
        f'<a href="{p}">{p}</a>'
        for p in (
            "/bomb",
            "/drip",
            "/malformed",
            "/latin1",
            "/missing",
            "/redirect",
            "/loop-a",
            "/offsite-redirect",
            "/liar",
            "/binary",
            "/nofollow-meta",
            "/base/",
            "mailto:x@y.z",
            "/chain/0",
            "/relative/dir/page.html?utm_source=x#frag",
        )
    )
    + '<a href="/rel-nofollow" rel="nofollow">x</a><a href="http://127.0.0.2:9/off">off</a>'
)


class EdgeApp:
    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                while (await receive())["type"] != "lifespan.shutdown":
                    await send({"type": "lifespan.startup.complete"})
                await send({"type": "lifespan.shutdown.complete"})
            return
        path = scope["path"] + (
            ("?" + scope["query_string"].decode()) if scope["query_string"] else ""
        )
        self.requests[path] += 1

        async def respond(
            status: int,
            body: bytes = b"",
            ctype: str = "text/html",
            headers: list[tuple[bytes, bytes]] | None = None,
        ) -> None:
            hs = [(b"content-type", ctype.encode()), (b"content-length", str(len(body)).encode())]
            await send(
                {"type": "http.response.start", "status": status, "headers": hs + (headers or [])}
            )
            await send({"type": "http.response.body", "body": body})

        p = scope["path"]
        if p == "/":
            await respond(200, INDEX)
        elif p == "/bomb":
            await respond(200, bomb(), headers=[(b"content-encoding", b"gzip")])
        elif p == "/drip":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/html"), (b"content-length", b"1000")],
                }
            )
            try:
                for _ in range(100):  # bounded: 100 bytes over 50 s at most
                    await send({"type": "http.response.body", "body": b"x", "more_body": True})
                    await anyio.sleep(0.5)
            except Exception:
                return
        elif p == "/malformed":
            await respond(
                200,
                b'<html><a href="/ok1">one<div><<<</p><a href=/ok2 >two</b></i>'
                b'<a href="/ok3">3<a href="/x',
            )
        elif p == "/latin1":
            await respond(
                200,
                "<html><a href='/ok4'>caf\xe9 \xff\xfe</a>".encode("latin-1"),
                ctype="text/html; charset=iso-8859-1",
            )
        elif p == "/redirect":
            await respond(301, headers=[(b"location", b"/target")])
        elif p == "/loop-a":
            await respond(302, headers=[(b"location", b"/loop-b")])
        elif p == "/loop-b":
            await respond(302, headers=[(b"location", b"/loop-a")])
        elif p.startswith("/chain/"):
            n = int(p.rsplit("/", 1)[1])
            await respond(302, headers=[(b"location", f"/chain/{n + 1}".encode())])
        elif p == "/offsite-redirect":
            await respond(301, headers=[(b"location", b"http://127.0.0.2:9/x")])
        elif p == "/liar":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/html"), (b"content-length", b"5000")],
                }
            )
            await send({"type": "http.response.body", "body": b"<html>short", "more_body": True})
            raise RuntimeError("the server dies mid-body")  # hypercorn drops the connection
        elif p == "/binary":
            await respond(200, bytes(range(256)) * 4, ctype="application/octet-stream")
        elif p == "/nofollow-meta":
            await respond(200, b'<meta name="robots" content="nofollow"><a href="/never">x</a>')
        elif p == "/base/":
            await respond(200, b'<head><base href="/elsewhere/"></head><a href="based.html">b</a>')
        elif p == "/target" or p in LINKED_OK:
            await respond(200, html(p))
        else:
            await respond(404, b"not found", ctype="text/plain")


async def test_broken_servers_become_outcomes(
    tls_files: TlsFiles, make_job: Callable[..., JobConfig]
) -> None:
    """A gzip bomb stops at max_bytes, a slow-drip server at the total deadline, a Content-Length
    liar is a failure not a file, malformed and non-UTF-8 pages still yield their links,
    redirects are followed hop by hop (a loop is recorded, max_redirects caps a chain, off-site
    targets are not fetched), nofollow is honoured, and only OK bodies are kept on disk."""
    app = EdgeApp()
    with LiveServer(app, tls_files) as server:
        job = make_job(
            [server.url("/")],
            limits={"max_bytes": 1_000_000, "request_timeout_s": 2},
            http={"max_redirects": 3},
            retries={"attempts": 1},  # retries are pinned in test_politeness
        )
        started = time.monotonic()
        summary = await run_crawl(job, handle_signals=False)
        elapsed = time.monotonic() - started
    records = {
        r["url"].removeprefix(server.origin): r
        for r in map(json.loads, (job.output.dir / "manifest.jsonl").read_text().splitlines())
    }
    outcome = {path: r["outcome"] for path, r in records.items()}
    assert outcome["/bomb"] == "too_large"
    assert outcome["/drip"] == "timeout"
    # hypercorn leaves an HTTP/2 stream open when the app dies: the deadline ends it.
    assert outcome["/liar"] in ("protocol", "network", "timeout")
    assert outcome["/missing"] == "http_error"
    assert records["/missing"]["status"] == 404
    assert outcome["/redirect"] == "redirect"
    assert records["/redirect"]["final_url"] == server.url("/target")
    assert outcome["/target"] == "ok"
    # /loop-a -> /loop-b -> /loop-a: the second hop points back into its own chain.
    assert outcome["/loop-a"] == "redirect"
    assert outcome["/loop-b"] == "redirect_loop"
    assert records["/loop-b"]["origin"] == server.url("/loop-a")
    assert outcome["/chain/0"] == outcome["/chain/1"] == outcome["/chain/2"] == "redirect"
    assert outcome["/chain/3"] == "too_many_redirects"
    assert "/chain/4" not in app.requests
    assert outcome["/offsite-redirect"] == "redirect"
    assert records["/offsite-redirect"]["error"] == "not followed: offsite"
    for page in LINKED_OK:
        assert outcome[page] == "ok", page
    assert outcome["/binary"] == "ok"
    assert "/never" not in app.requests
    assert "/rel-nofollow" not in app.requests
    assert all(n == 1 for n in app.requests.values()), app.requests
    # Only complete 2xx bodies are on disk, each as the manifest says.
    for r in records.values():
        if r["outcome"] == "ok":
            assert (job.output.dir / r["path"]).stat().st_size == r["bytes"]
        else:
            assert r["path"] is None
            assert r["sha256"] is None
    stored = {p for p in job.output.dir.rglob("*") if p.is_file() and p.parent.name != ".tmp"}
    kept = {job.output.dir / r["path"] for r in records.values() if r["path"]}
    assert stored - kept == {
        job.output.dir / n for n in ("manifest.jsonl", "state.sqlite3", "state.lock")
    }
    assert summary.filtered.get("offsite", 0) >= 1
    assert summary.filtered.get("not_http", 0) == 0  # mailto: is dropped by extraction itself
    assert elapsed < 20  # the drip was cut at its 2 s deadline, not after 50 s


async def test_content_length_liar_is_a_failure_not_a_file(
    make_job: Callable[..., JobConfig],
) -> None:
    """A server that promises 5,000 bytes, sends 11 and closes the connection: the URL is
    recorded as a protocol failure (after its retry) and no file is presented as done."""
    served = 0

    async def handle(stream: anyio.abc.SocketStream) -> None:
        nonlocal served
        async with stream:
            await stream.receive(65536)
            served += 1
            await stream.send(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5000\r\n\r\n"
                b"<html>short"
            )

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        job = make_job(
            [f"http://127.0.0.1:{port}/page"],
            robots={"obey": False},
            retries={"attempts": 2, "backoff_base_s": 0.05},
        )
        summary = await run_crawl(job, handle_signals=False)
        tg.cancel_scope.cancel()
    record = json.loads((job.output.dir / "manifest.jsonl").read_text())
    assert served == 2
    assert record["attempts"] == 2
    assert summary.retries == 1
    assert record["outcome"] == "protocol"
    assert record["path"] is None
    assert "peer closed" in record["error"].lower() or "incomplete" in record["error"].lower()
    assert summary.outcomes == {"protocol": 1}
    assert not (job.output.dir / "127.0.0.1_" / "page").exists()
    assert not list(job.output.dir.rglob("page*"))


class _DiskFullSink:
    """Writes to /dev/full: the kernel's own "no space left on device" for every write."""

    def __init__(self) -> None:
        self.file = open("/dev/full", "wb", buffering=0)  # noqa: SIM115 - closed by the test

    def write(self, chunk: bytes) -> None:
        self.file.write(chunk)


async def test_a_full_disk_is_a_storage_outcome_not_a_network_one(
    tls_files: TlsFiles, make_job: Callable[..., JobConfig]
) -> None:
    """When the body cannot be written (ENOSPC from /dev/full), the fetch ends as ``storage``
    with the OS's message, not as a network failure to be retried."""
    from crawler.fetcher import Fetcher
    from crawler.models import Outcome

    app = EdgeApp()
    sink = _DiskFullSink()
    try:
        with LiveServer(app, tls_files) as server:
            job = make_job([server.url("/")])
            async with Fetcher(job) as fetcher:
                result = await fetcher.fetch(server.url("/ok1"), lambda: sink)
    finally:
        sink.file.close()
    assert result.outcome is Outcome.STORAGE
    assert result.error is not None
    assert "No space left" in result.error
