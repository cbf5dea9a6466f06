"""Durable crawl state, as a user meets it: kill -9 at chosen points and resume, recrawl with
validators, --fresh, and status read while a crawl runs. Real servers, real processes."""

from __future__ import annotations

import hashlib
import json
import os
import random
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
    last, deadline = -1, time.monotonic() + 5
    while time.monotonic() < deadline:
        now = sum(app.requests.values())
        if now == last:
            return now
        last = now
        time.sleep(0.2)
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
    app = SiteApp(pages)
    out = tmp_path / "out"
    kills = [
        ("body_write", rng.randint(800, 2000), "process"),
        ("after_rename", rng.randint(800, 2000), "power"),
        ("in_commit", rng.randint(800, 2000), "power"),
    ]
    with LiveServer(app) as server:
        expected = {
            server.url(page_path(i)): hashlib.sha256(
                render_page(i, pages, server.origin)
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
