"""Durable crawl state, as a user meets it: kill -9 at chosen points and resume, recrawl with
validators, --fresh, and status read while a crawl runs. Real servers, real processes."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from crawler.benchsite import SiteApp, page_path, render_page
from crawler.faults import ENV
from crawler.frontier import STATE_FILE, read_status
from tests.servers import LiveServer

CRAWLER = [sys.executable, "-m", "crawler"]
CONCURRENCY = 16


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Any:
    return subprocess.run(
        [*CRAWLER, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def write_job(tmp_path: Path, seed: str, durability: str = "process") -> Path:
    job = tmp_path / "job.yaml"
    job.write_text(
        f"seeds: [{json.dumps(seed)}]\n"
        "scope: {query: drop}\n"
        f"limits: {{concurrency: {CONCURRENCY}, "
        f"per_host: {{concurrency: {CONCURRENCY}, rate: 100000}}}}\n"
        "robots: {obey: false}\n"
        "logging: {level: warning}\n"
        f"output: {{dir: {json.dumps(str(tmp_path / 'out'))}, durability: {durability}}}\n"
    )
    return job


def committed(out: Path) -> list[dict[str, Any]]:
    """The records the state holds as done, read-only (the state is not touched)."""
    db = sqlite3.connect(f"file:{out / STATE_FILE}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT record FROM urls WHERE state=2").fetchall()
    finally:
        db.close()
    return [json.loads(r) for (r,) in rows]


def settle_count(app: SiteApp) -> int:
    """The server's request count once it stops changing (requests a dead client had already
    sent may still be in the server's hands for a moment)."""
    last, deadline = -1, time.monotonic() + 10
    while time.monotonic() < deadline:
        now = sum(app.requests.values())
        if now == last:
            return now
        last = now
        time.sleep(0.5)
    return last


@pytest.mark.slow
def test_kill_9_at_three_points_then_resume(tmp_path: Path) -> None:
    """SIGKILL while a body is being written, after a body is renamed into place but before
    its commit, and inside the settle transaction (seeded points, via CRAWLER_FAULT), re-running
    after each (process and power durability alternating): at the end every URL has exactly one
    final state and one manifest line, every done file's sha256 equals the server's body, no
    partial or temp file is ever listed as done, and the URLs fetched twice are exactly those in
    flight at the kills, never more than the concurrency per kill (counted at the server)."""
    pages = 10_000
    rng = random.Random(20261121)
    app = SiteApp(pages, paragraphs=2)  # small pages: the test is about state, not bytes
    out = tmp_path / "out"
    kills = [
        ("body_write", rng.randint(800, 2000), "process"),
        ("after_rename", rng.randint(800, 2000), "power"),
        ("in_commit", rng.randint(800, 2000), "power"),
    ]
    with LiveServer(app) as server:
        expected = {
            server.url(page_path(i)): hashlib.sha256(
                render_page(i, pages, server.origin, paragraphs=2)
            ).hexdigest()
            for i in range(pages)
        }

        def check_done_files() -> int:
            done = committed(out)
            for rec in done:
                assert rec["outcome"] == "ok", rec
                assert not rec["path"].startswith(".tmp"), rec
                data = (out / rec["path"]).read_bytes()
                assert hashlib.sha256(data).hexdigest() == rec["sha256"] == expected[rec["url"]]
            return len(done)

        wasted_before = 0
        in_flight_at_kills = []
        for point, n, durability in kills:
            job = write_job(tmp_path, server.url("/index.html"), durability)
            result = run("crawl", str(job), env={ENV: f"{point}:{n}"})
            assert result.returncode == -9, (point, result.returncode, result.stderr[-2000:])
            done = check_done_files()
            assert 0 < done < pages
            wasted = settle_count(app) - done  # requests whose result was never committed
            in_flight_at_kills.append(wasted - wasted_before)
            wasted_before = wasted

        job = write_job(tmp_path, server.url("/index.html"), "process")
        proc = subprocess.Popen(
            [*CRAWLER, "crawl", str(job)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        try:
            # status works while this crawl runs (and holds the state's lock)
            seen_running = None
            for _ in range(50):
                status = run("status", str(out), "--json", timeout=30)
                assert status.returncode == 0, status.stderr
                doc = json.loads(status.stdout)
                if proc.poll() is None:
                    seen_running = doc
                    break
            _, stderr = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, stderr[-2000:]
        assert seen_running is not None, "the crawl ended before status could look at it"
        assert seen_running["done"] + seen_running["queued"] + seen_running["in_flight"] <= pages
        assert seen_running["manifest"] == str(out / "manifest.jsonl")

    assert check_done_files() == pages
    lines = (out / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == pages
    records = [json.loads(line) for line in lines]
    assert {r["url"] for r in records} == set(expected)
    assert all(r["outcome"] == "ok" for r in records)
    assert not list((out / ".tmp").iterdir())
    final = read_status(out)
    assert (final.queued, final.leased, final.done) == (0, 0, pages)

    served = Counter(app.requests)
    assert set(served) == {page_path(i) for i in range(pages)}
    refetched = sum(n - 1 for n in served.values())
    assert refetched == sum(in_flight_at_kills), in_flight_at_kills
    assert all(1 <= k <= CONCURRENCY for k in in_flight_at_kills), in_flight_at_kills


class ChangingSite:
    """Eleven pages behind an index, with validators: /e* have an ETag, /m* a Last-Modified,
    /n0 neither. ``change(path)`` gives a page a new version (and /e1's new version a link to
    /fresh). Records every request's path, status and conditional headers."""

    def __init__(self) -> None:
        self.version: Counter[str] = Counter()
        self.log: list[tuple[str, int, dict[str, str]]] = []
        self.paths = ["/", "/e0", "/e1", "/e2", "/e3", "/m0", "/m1", "/m2", "/n0"]

    def change(self, path: str) -> None:
        self.version[path] += 1

    def body(self, path: str) -> bytes:
        v = self.version[path]
        links = ""
        if path == "/":
            links = "".join(f'<a href="{p}">{p}</a>' for p in self.paths[1:])
        elif path == "/e1" and v > 0:
            links = '<a href="/fresh">new</a>'
        return f"<html><body><h1>{path} v{v}</h1>{links}</body></html>".encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        asked = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        conditional = {k: v for k, v in asked.items() if k.startswith("if-")}
        if path not in [*self.paths, "/fresh"]:
            self.log.append((path, 404, conditional))
            await _respond(send, 404, [], b"")
            return
        v = self.version[path]
        validators = []
        current = False
        if path.startswith("/e") or path == "/":
            etag = f'"{path}-{v}"'
            validators.append((b"etag", etag.encode()))
            current = asked.get("if-none-match") == etag
        elif path.startswith("/m"):
            stamp = f"Sat, 0{v + 1} Nov 2026 10:00:00 GMT"
            validators.append((b"last-modified", stamp.encode()))
            current = asked.get("if-modified-since") == stamp
        status = 304 if current else 200
        self.log.append((path, status, conditional))
        await _respond(send, status, validators, b"" if current else self.body(path))


async def _respond(send: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers = [*headers, (b"content-type", b"text/html"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.mark.anyio
async def test_recrawl_revalidates_keeps_unchanged_and_replaces_changed(
    make_job: Any,
) -> None:
    """--recrawl re-requests every done URL with its stored validators: unchanged pages are
    answered 304 and kept (outcome not_modified, same file, same sha256); changed pages are
    replaced and their new links followed; a page without validators is fetched whole; counts
    exact, one manifest line per URL, and the recrawl pass is closed at the end."""
    from crawler.engine import run_crawl

    site = ChangingSite()
    with LiveServer(site) as server:
        job = make_job([server.url("/")])
        first = await run_crawl(job, handle_signals=False)
        assert first.outcomes == {"ok": 9}
        out = job.output.dir
        before = {
            json.loads(line)["url"]: json.loads(line)
            for line in (out / "manifest.jsonl").read_text().splitlines()
        }
        assert before[server.url("/e0")]["etag"] == '"/e0-0"'
        assert before[server.url("/m0")]["last_modified"] == "Sat, 01 Nov 2026 10:00:00 GMT"
        kept = out / before[server.url("/e0")]["path"]
        kept_stat = kept.stat()

        site.change("/e1")
        site.change("/m1")
        site.log.clear()
        second = await run_crawl(job, handle_signals=False, recrawl=True)

    assert second.outcomes == {"not_modified": 6, "ok": 4}
    assert second.complete
    served = {path: (status, cond) for path, status, cond in site.log}
    assert len(site.log) == 10  # nine pages again, plus the one new link
    assert {p for p, (s, _) in served.items() if s == 304} == {
        "/",
        "/e0",
        "/e2",
        "/e3",
        "/m0",
        "/m2",
    }
    assert {p for p, (s, _) in served.items() if s == 200} == {"/e1", "/m1", "/n0", "/fresh"}
    assert served["/e0"][1] == {"if-none-match": '"/e0-0"'}
    assert served["/m0"][1] == {"if-modified-since": "Sat, 01 Nov 2026 10:00:00 GMT"}
    assert served["/n0"][1] == {}
    assert served["/fresh"][1] == {}

    lines = (out / "manifest.jsonl").read_text().splitlines()
    after = {json.loads(line)["url"]: json.loads(line) for line in lines}
    assert len(lines) == len(after) == 10
    e0 = after[server.url("/e0")]
    assert (e0["outcome"], e0["status"]) == ("not_modified", 304)
    assert (e0["path"], e0["sha256"], e0["bytes"]) == (
        before[server.url("/e0")]["path"],
        before[server.url("/e0")]["sha256"],
        before[server.url("/e0")]["bytes"],
    )
    assert kept.stat().st_mtime_ns == kept_stat.st_mtime_ns  # the file was not rewritten
    for path in ("/e1", "/m1"):
        rec = after[server.url(path)]
        data = (out / rec["path"]).read_bytes()
        assert data == site.body(path)
        assert rec["outcome"] == "ok"
        assert (
            rec["sha256"] == hashlib.sha256(data).hexdigest() != before[server.url(path)]["sha256"]
        )
    assert after[server.url("/m1")]["last_modified"] == "Sat, 02 Nov 2026 10:00:00 GMT"
    assert after[server.url("/fresh")]["outcome"] == "ok"
    status = read_status(out)
    assert (status.done, status.queued, status.recrawling) == (10, 0, False)


def test_fresh_asks_and_starts_over(tmp_path: Path) -> None:
    """--fresh off a terminal without --yes: exit 2 with one line, nothing deleted. With --yes:
    the state, manifest and bodies are gone and every page is fetched again (a body damaged on
    disk is written anew). status reports the result; status of a folder without state exits 1."""
    app = SiteApp(20)
    with LiveServer(app) as server:
        job = write_job(tmp_path, server.url("/index.html"))
        assert run("crawl", str(job)).returncode == 0
        out = tmp_path / "out"
        records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
        damaged = out / records[3]["path"]
        damaged.write_bytes(b"damaged")

        refused = run("crawl", str(job), "--fresh")
        assert refused.returncode == 2
        assert refused.stderr.strip().count("\n") == 0, refused.stderr
        assert "--yes" in refused.stderr
        assert damaged.read_bytes() == b"damaged"
        assert read_status(out).done == 20

        again = run("crawl", str(job), "--fresh", "--yes")
        assert again.returncode == 0, again.stderr
    assert set(app.requests.values()) == {2}
    assert len(app.requests) == 20
    assert hashlib.sha256(damaged.read_bytes()).hexdigest() == records[3]["sha256"]
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 20

    status = run("status", str(out), "--json")
    assert status.returncode == 0, status.stderr
    doc = json.loads(status.stdout)
    assert (doc["done"], doc["queued"], doc["in_flight"], doc["failed"]) == (20, 0, 0, 0)
    assert doc["outcomes"] == {"ok": 20}
    assert doc["bytes"] == sum(r["bytes"] for r in records)
    missing = run("status", str(tmp_path / "nothing"))
    assert missing.returncode == 1
    assert "no crawl state" in missing.stderr


@pytest.mark.slow
def test_sigterm_with_power_durability_commits_in_flight_and_resumes(tmp_path: Path) -> None:
    """With durability power (group commit), SIGTERM mid-crawl: exit 143 within the grace
    period, every page fetched so far is committed (the pending batch is drained, nothing is
    fetched twice on the re-run), and the re-run completes the crawl (counted at the server)."""
    pages = 200
    app = SiteApp(pages, paragraphs=2)
    with LiveServer(app) as server:
        job = write_job(tmp_path, server.url("/index.html"), "power")
        job.write_text(job.read_text().replace("rate: 100000", "rate: 60"))  # about 3 s of work
        proc = subprocess.Popen(
            [*CRAWLER, "crawl", str(job)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while sum(app.requests.values()) < 40 and time.monotonic() < deadline:
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            stopped = time.monotonic()
            _, stderr = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 143, stderr[-2000:]
        assert time.monotonic() - stopped < 11  # grace 10 s
        served_first = settle_count(app)
        assert 40 <= served_first < pages
        assert read_status(tmp_path / "out").done == served_first  # all fetched, all committed
        rerun = run("crawl", str(job))
        assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert sum(app.requests.values()) == pages
    assert max(app.requests.values()) == 1
    assert len((tmp_path / "out" / "manifest.jsonl").read_text().splitlines()) == pages
