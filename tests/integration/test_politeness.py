"""Politeness against real local servers, with timings measured at the server: robots.txt,
Crawl-delay, Retry-After, retries, credentials across redirects, sitemaps, traps."""

from __future__ import annotations

import gzip
import itertools
import json
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from crawler.benchsite import TlsFiles
from crawler.config import JobConfig
from crawler.engine import run_crawl
from tests.servers import LiveServer

pytestmark = pytest.mark.anyio

# A handler gets (path with query, how many times this path was asked before, request
# headers) and answers (status, headers, body).
Answer = tuple[int, dict[str, str], bytes]
Handler = Callable[[str, int, dict[str, str]], Answer]


def page(*links: str) -> Answer:
    body = "".join(f'<a href="{link}">{link}</a>' for link in links)
    return 200, {"content-type": "text/html"}, f"<html><body>{body}</body></html>".encode()


def text(body: str, status: int = 200, **headers: str) -> Answer:
    return status, {"content-type": "text/plain", **headers}, body.encode()


@dataclass
class Hit:
    path: str
    at: float
    headers: dict[str, str]


@dataclass
class SiteApp:
    """Routes by exact path (query included), else by prefix handler; logs every request."""

    routes: dict[str, Handler]
    prefix: dict[str, Handler] = field(default_factory=dict)
    log: list[Hit] = field(default_factory=list)

    def count(self, path: str) -> int:
        return sum(1 for h in self.log if h.path == path)

    def times(self, exclude: str = "/robots.txt") -> list[float]:
        return [h.at for h in self.log if h.path != exclude]

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        query = scope["query_string"].decode()
        path = scope["path"] + (f"?{query}" if query else "")
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        before = self.count(path)
        self.log.append(Hit(path, time.monotonic(), headers))
        handler = self.routes.get(path)
        if handler is None:
            handler = next(
                (h for p, h in self.prefix.items() if path.startswith(p)),
                lambda *_: text("not found", 404),
            )
        status, hs, body = handler(path, before, headers)
        raw = [(k.encode(), v.encode()) for k, v in hs.items()]
        raw.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})


def manifest(job: JobConfig) -> dict[str, dict[str, Any]]:
    lines = (job.output.dir / "manifest.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == len({r["url"] for r in records}), "one manifest line per URL"
    return {r["url"]: r for r in records}


def polite_job(make_job: Callable[..., JobConfig], seeds: list[str], **overrides: Any) -> JobConfig:
    base: dict[str, Any] = {
        "robots": {"obey": True},
        "retries": {"backoff_base_s": 0.1, "backoff_max_s": 1},
        "limits": {"per_host": {"concurrency": 4, "rate": 50}},
    }
    for key, value in overrides.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return make_job(seeds, **base)


async def test_robots_disallow_and_crawl_delay_spacing(
    tls_files: TlsFiles, make_job: Callable[..., JobConfig]
) -> None:
    """A disallowed path is never requested (server log) and is recorded robots_disallowed;
    Crawl-delay: 1 spaces that host's requests 1 s apart (within 10%), while a second host
    without one is crawled at full speed meanwhile."""
    slow = SiteApp(
        {
            "/robots.txt": lambda *_: text(
                "User-agent: *\nDisallow: /secret\nCrawl-delay: 1\n"
                "User-agent: otherbot\nDisallow: /\n"
            ),
            "/": lambda *_: page("/p1", "/p2", "/p3", "/secret/x", "/secret"),
        },
        prefix={"/p": lambda *_: page("/")},
    )
    fast_pages = [f"/b{i}" for i in range(30)]
    fast = SiteApp({"/": lambda *_: page(*fast_pages)}, prefix={"/b": lambda *_: page("/")})
    with LiveServer(slow, tls_files) as a, LiveServer(fast, None, host="127.0.0.2") as b:
        job = polite_job(
            make_job,
            [a.url("/"), b.url("/")],
            limits={"per_host": {"concurrency": 4, "rate": 50}},
            scope={"domains": ["127.0.0.1", "127.0.0.2"]},
        )
        summary = await run_crawl(job, handle_signals=False)
    records = manifest(job)
    assert "/secret/x" not in {h.path for h in slow.log}
    assert "/secret" not in {h.path for h in slow.log}
    assert records[a.url("/secret/x")]["outcome"] == "robots_disallowed"
    assert records[a.url("/secret")]["outcome"] == "robots_disallowed"
    assert slow.count("/robots.txt") == fast.count("/robots.txt") == 1
    assert summary.outcomes == {"ok": 4 + 31, "robots_disallowed": 2}
    starts = slow.times()
    assert len(starts) == 4
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(0.9 <= g <= 1.1 for g in gaps), gaps
    fast_starts = fast.times()
    assert len(fast_starts) == 31
    # All 31 pages of the other host went out while the slow host waited for its 2nd page.
    assert max(fast_starts) < starts[1], (fast_starts[-1] - starts[0], gaps)


async def test_retry_after_pauses_only_that_host(
    tls_files: TlsFiles, make_job: Callable[..., JobConfig]
) -> None:
    """A 429 with Retry-After: 2 stops every request to that host for at least 2 s (other
    hosts keep going meanwhile) and the URL then succeeds on its second attempt."""

    def limited(path: str, before: int, _: dict[str, str]) -> Answer:
        return text("slow down", 429, **{"retry-after": "2"}) if before == 0 else page("/")

    paused = SiteApp(
        {"/": lambda *_: page("/limited", *[f"/q{i}" for i in range(6)]), "/limited": limited},
        prefix={"/q": lambda *_: page("/")},
    )
    other = SiteApp(
        {"/": lambda *_: page(*[f"/o{i}" for i in range(12)])}, prefix={"/o": lambda *_: page()}
    )
    with LiveServer(paused, tls_files) as a, LiveServer(other, None, host="127.0.0.2") as b:
        job = polite_job(
            make_job,
            [a.url("/"), b.url("/")],
            scope={"domains": ["127.0.0.1", "127.0.0.2"]},
            # One at a time to the paused host: no request was already on its way at the 429.
            limits={"per_host": {"concurrency": 1, "rate": 4, "adaptive": False}},
        )
        await run_crawl(job, handle_signals=False)
    records = manifest(job)
    assert records[a.url("/limited")]["outcome"] == "ok"
    assert records[a.url("/limited")]["attempts"] == 2
    t429 = next(h.at for h in paused.log if h.path == "/limited")
    after = [h.at - t429 for h in paused.log if h.at > t429]
    assert after, "the host was never asked again"
    assert min(after) >= 2.0, after
    during = [h.at for h in other.log if t429 < h.at < t429 + 2.0]
    assert during, "the other host waited too"
    assert all(r["outcome"] == "ok" for r in records.values())


async def test_retries_recover_a_flapping_endpoint_and_give_up_on_a_dead_one(
    tls_files: TlsFiles, make_job: Callable[..., JobConfig]
) -> None:
    """503, 503, 200 succeeds within a budget of 3 attempts; an endpoint that always answers
    503 ends as a recorded failure after exactly 3 requests; a 404 is not retried."""
    app = SiteApp(
        {
            "/": lambda *_: page("/flap", "/dead", "/missing"),
            "/flap": lambda _p, n, _h: text("busy", 503) if n < 2 else page(),
            "/dead": lambda *_: text("down", 503),
        }
    )
    with LiveServer(app, tls_files) as server:
        job = polite_job(make_job, [server.url("/")], retries={"attempts": 3})
        summary = await run_crawl(job, handle_signals=False)
    records = manifest(job)
    assert records[server.url("/flap")]["outcome"] == "ok"
    assert records[server.url("/flap")]["attempts"] == 3
    assert records[server.url("/dead")]["outcome"] == "http_error"
    assert records[server.url("/dead")]["status"] == 503
    assert records[server.url("/dead")]["attempts"] == 3
    assert (app.count("/flap"), app.count("/dead"), app.count("/missing")) == (3, 3, 1)
    assert summary.retries == 4


async def test_unreachable_robots_txt_blocks_then_gives_up(
    tls_files: TlsFiles, make_job: Callable[..., JobConfig]
) -> None:
    """A robots.txt that answers 503 keeps the whole host disallowed: it is asked again
    after a backoff, and after the retry budget the host's URLs are recorded
    robots_disallowed with the reason; no page of the host is requested."""
    app = SiteApp({"/robots.txt": lambda *_: text("down", 503), "/": lambda *_: page("/a")})
    with LiveServer(app, tls_files) as server:
        job = polite_job(make_job, [server.url("/")], retries={"attempts": 2})
        await run_crawl(job, handle_signals=False)
    records = manifest(job)
    assert app.count("/robots.txt") == 2
    assert [h.path for h in app.log] == ["/robots.txt", "/robots.txt"]
    record = records[server.url("/")]
    assert record["outcome"] == "robots_disallowed"
    assert "unreachable" in record["error"]


async def test_credentials_stay_with_their_host_across_redirects(
    tls_files: TlsFiles, make_job: Callable[..., JobConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Authorization and credential-like custom headers are sent to the scope's hosts, but
    not to another host reached through a redirect; plain custom headers still are. The
    manifest records both the requested and the final URL of the redirect."""
    monkeypatch.setenv("TEST_TOKEN", "s3cret")
    b_app = SiteApp({"/landing": lambda *_: page(), "/direct": lambda *_: page()})
    with LiveServer(b_app, None, host="127.0.0.2") as b:
        a_app = SiteApp(
            {
                "/": lambda *_: page("/go", b.url("/direct")),
                "/go": lambda *_: (302, {"location": b.url("/landing")}, b""),
            }
        )
        with LiveServer(a_app, tls_files) as a:
            job = polite_job(
                make_job,
                [a.url("/")],
                scope={"domains": ["127.0.0.1", "127.0.0.2"]},
                http={
                    "auth": {"type": "bearer", "token_env": "TEST_TOKEN"},
                    "headers": {"X-Api-Key": "k3y", "Accept-Language": "en"},
                },
            )
            await run_crawl(job, handle_signals=False)
    a_hits = {h.path: h.headers for h in a_app.log}
    b_hits = {h.path: h.headers for h in b_app.log}
    assert a_hits["/"]["authorization"] == "Bearer s3cret"
    assert a_hits["/go"]["x-api-key"] == "k3y"
    assert b_hits["/direct"]["authorization"] == "Bearer s3cret"  # a link: in scope, its own
    landing = b_hits["/landing"]
    assert "authorization" not in landing
    assert "x-api-key" not in landing
    assert landing["accept-language"] == "en"
    assert "authorization" not in b_hits["/robots.txt"]
    records = manifest(job)
    assert records[a.url("/go")]["final_url"] == b.url("/landing")
    assert records[b.url("/landing")]["origin"] == a.url("/go")


async def test_sitemaps_feed_the_frontier(
    tls_files: TlsFiles, make_job: Callable[..., JobConfig]
) -> None:
    """Sitemap: lines of robots.txt (a gzipped index pointing to a sitemap) and /sitemap.xml
    bring in pages no link reaches; off-site sitemap entries stay out."""
    ns = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'
    holder: dict[str, str] = {}

    def urlset(*paths: str) -> Answer:
        locs = "".join(f"<url><loc>{holder['origin']}{p}</loc></url>" for p in paths)
        return 200, {"content-type": "application/xml"}, f"<urlset {ns}>{locs}</urlset>".encode()

    def index(*_: Any) -> Answer:
        entry = f"<sitemap><loc>{holder['origin']}/sm1.xml</loc></sitemap>"
        body = f"<sitemapindex {ns}>{entry}</sitemapindex>"
        return 200, {"content-type": "application/gzip"}, gzip.compress(body.encode())

    app = SiteApp(
        {
            "/robots.txt": lambda *_: text(
                f"User-agent: *\nSitemap: {holder['origin']}/index.xml.gz\n"
            ),
            "/": lambda *_: page(),
            "/index.xml.gz": index,
            "/sm1.xml": lambda *_: urlset("/orphan1", "/orphan2"),
            "/sitemap.xml": lambda *_: (
                200,
                {"content-type": "application/xml"},
                f"<urlset {ns}><url><loc>{holder['origin']}/orphan3</loc></url>"
                f"<url><loc>https://elsewhere.example/x</loc></url></urlset>".encode(),
            ),
        },
        prefix={"/orphan": lambda *_: page()},
    )
    with LiveServer(app, tls_files) as server:
        holder["origin"] = server.origin
        job = polite_job(make_job, [server.url("/")], sitemaps={"enabled": True})
        await run_crawl(job, handle_signals=False)
    records = manifest(job)
    for orphan in ("/orphan1", "/orphan2", "/orphan3"):
        assert records[server.url(orphan)]["outcome"] == "ok", orphan
    assert all(app.count(p) == 1 for p in ("/index.xml.gz", "/sm1.xml", "/sitemap.xml"))
    assert not any("elsewhere" in url for url in records)


async def test_traps_are_cut_off_and_recorded(
    tls_files: TlsFiles, make_job: Callable[..., JobConfig]
) -> None:
    """An infinite calendar (each month links the next) stops at the per-pattern budget, a
    relative-link loop (/rel/x/, /rel/x/x/, ...) at the repeated-segment limit; the first
    URL past each limit is recorded as trap and never requested."""

    def calendar(path: str, *_: Any) -> Answer:
        month = int(path.rpartition("=")[2])
        return page(f"/cal?month={month + 1}")

    app = SiteApp(
        {"/": lambda *_: page("/cal?month=1", "/rel/")},
        prefix={"/cal?month=": calendar, "/rel/": lambda *_: page("x/", "/rel/x/x/x/x/")},
    )
    with LiveServer(app, tls_files) as server:
        job = polite_job(
            make_job,
            [server.url("/")],
            traps={"max_per_pattern": 5, "max_segment_repeats": 3},
        )
        await run_crawl(job, handle_signals=False)
    records = manifest(job)
    months = sorted(int(h.path.rpartition("=")[2]) for h in app.log if h.path.startswith("/cal"))
    assert months == [1, 2, 3, 4, 5]
    assert records[server.url(f"/cal?month={max(months) + 1}")]["outcome"] == "trap"
    rel = sorted(h.path for h in app.log if h.path.startswith("/rel/"))
    assert rel == ["/rel/", "/rel/x/", "/rel/x/x/", "/rel/x/x/x/"]
    trapped = records[server.url("/rel/x/x/x/x/")]
    assert trapped["outcome"] == "trap"
    assert "repeated" in trapped["error"]
