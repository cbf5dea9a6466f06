"""End-to-end crawls of a generated site served by a real server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from crawler.benchsite import SiteApp, TlsFiles, page_path, render_page
from crawler.config import JobConfig
from crawler.engine import run_crawl
from tests.servers import LiveServer

pytestmark = pytest.mark.anyio

PAGES = 2000


def manifest(job: JobConfig) -> list[dict[str, Any]]:
    lines = (job.output.dir / "manifest.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.mark.parametrize("tls", [False, True], ids=["http1-plain", "http2-tls"])
async def test_whole_site_crawled_once_byte_identical(
    tls: bool, tls_files: TlsFiles, make_job: Callable[..., JobConfig]
) -> None:
    """Every page of a 2,000-page site is fetched exactly once, nothing else is requested,
    bodies on disk equal the server's bytes, the manifest has one exact line per page, and over
    TLS the whole crawl is HTTP/2 on one TCP connection (counted at the server)."""
    app = SiteApp(PAGES)
    with LiveServer(app, tls_files if tls else None) as server:
        job = make_job([server.url("/index.html")], scope={"query": "drop"})
        summary = await run_crawl(job, handle_signals=False)

    expected_paths = {page_path(i) for i in range(PAGES)}
    assert set(app.requests) == expected_paths  # nothing out of scope, nothing missing
    assert all(n == 1 for n in app.requests.values()), app.requests.most_common(3)
    assert summary.outcomes == {"ok": PAGES}
    assert summary.complete

    records = manifest(job)
    assert len(records) == PAGES
    assert {r["url"] for r in records} == {server.url(p) for p in expected_paths}
    depths = app.reachable()
    for r in records:
        i = int(Path(r["url"]).stem.lstrip("p") or 0) if "index" not in r["url"] else 0
        body = render_page(i, PAGES, server.origin)
        stored = (job.output.dir / r["path"]).read_bytes()
        assert stored == body
        assert r["sha256"] == hashlib.sha256(body).hexdigest()
        assert r["bytes"] == len(body)
        assert r["status"] == 200
        assert r["outcome"] == "ok"
        # Without max_depth there is no level barrier: a page may be found first by a longer path.
        assert r["depth"] >= depths[i]
        assert r["http_version"] == ("HTTP/2" if tls else "HTTP/1.1")
    if tls:
        assert len(app.connections) == 1, app.connections
        assert set(app.versions) == {"2"}
    assert not list((job.output.dir / ".tmp").iterdir())  # no temp file left behind


async def test_max_depth_is_exact(tls_files: TlsFiles, make_job: Callable[..., JobConfig]) -> None:
    """With max_depth 2, exactly the pages within 2 link hops are fetched."""
    app = SiteApp(PAGES)
    with LiveServer(app, tls_files) as server:
        job = make_job([server.url("/index.html")], scope={"max_depth": 2})
        await run_crawl(job, handle_signals=False)
    depths = app.reachable(max_depth=2)
    assert set(app.requests) == {page_path(i) for i in depths}
    records = manifest(job)
    assert len(records) == len(depths)
    by_url = {server.url(page_path(i)): d for i, d in depths.items()}
    assert all(r["depth"] == by_url[r["url"]] for r in records)


async def test_max_pages_is_exact(tls_files: TlsFiles, make_job: Callable[..., JobConfig]) -> None:
    """With max_pages 137, exactly 137 pages are requested and recorded."""
    app = SiteApp(PAGES)
    with LiveServer(app, tls_files) as server:
        job = make_job([server.url("/index.html")], scope={"max_pages": 137})
        summary = await run_crawl(job, handle_signals=False)
    assert sum(app.requests.values()) == 137
    assert len(manifest(job)) == 137
    assert summary.pages == 137


async def test_rerun_resumes_without_refetching(
    tls_files: TlsFiles, make_job: Callable[..., JobConfig]
) -> None:
    """Re-running a finished job on the same output folder fetches nothing again and keeps
    exactly one manifest line per URL."""
    app = SiteApp(300)
    with LiveServer(app, tls_files) as server:
        job = make_job([server.url("/index.html")])
        first = await run_crawl(job, handle_signals=False)
        second = await run_crawl(job, handle_signals=False)
    assert first.pages == 300
    assert second.pages == 0
    assert sum(app.requests.values()) == 300
    assert len(manifest(job)) == 300
