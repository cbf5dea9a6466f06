"""``crawler crawl --processes N``: one coordinator (state, scheduling, politeness, commits) and N
fetch worker processes, as a user runs it: real servers, real processes, real signals."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from crawler.benchsite import SiteApp, TlsFiles
from crawler.faults import ENV
from tests.servers import LiveServer

CRAWLER = [sys.executable, "-m", "crawler"]


def run(job: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    return subprocess.run(
        [*CRAWLER, "crawl", str(job), "--no-progress", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def write_job(
    path: Path, seed: str, out: Path, ca: Path | None, max_depth: int | None = None, **limits: Any
) -> Path:
    settings = {
        "concurrency": 16,
        "per_host": {"concurrency": 16, "rate": 100_000},
        **limits,
    }
    lines = [
        f"seeds: [{json.dumps(seed)}]",
        f"scope: {{query: drop, max_depth: {json.dumps(max_depth)}}}",
        f"limits: {json.dumps(settings)}",
        "robots: {obey: true}",
        "retries: {attempts: 10, backoff_base_s: 0.05, backoff_max_s: 0.2}",
        "logging: {level: warning}",
        f"output: {{dir: {json.dumps(str(out))}}}",
    ]
    if ca is not None:
        lines.append(f"http: {{ca_bundle: {json.dumps(str(ca))}}}")
    path.write_text("\n".join(lines) + "\n")
    return path


def manifest(out: Path) -> dict[str, dict[str, Any]]:
    """The manifest by URL; fails if a URL has more than one line."""
    lines = (out / "manifest.jsonl").read_text().splitlines()
    records = {r["url"]: r for r in map(json.loads, lines)}
    assert len(records) == len(lines), "a URL has more than one manifest line"
    return records


def children(pid: int) -> list[int]:
    """The live child processes of ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rpartition(")")[2].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def running(pid: int) -> bool:
    """Is ``pid`` a live process (not gone, not a zombie waiting for its parent)?"""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def gone(pids: list[int], within_s: float) -> bool:
    """Have all ``pids`` exited within ``within_s``?"""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not any(running(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def wait_for(app: SiteApp, requests: int, within_s: float = 30) -> None:
    deadline = time.monotonic() + within_s
    while sum(app.requests.values()) < requests and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sum(app.requests.values()) >= requests


def page_counts(app: SiteApp) -> Counter[str]:
    return Counter({p: n for p, n in app.requests.items() if p != "/robots.txt"})


@contextmanager
def crawling_with_workers(
    job: Path, app: SiteApp, requests: int, *, quiet: bool = False
) -> Iterator[tuple[subprocess.Popen[str], list[int]]]:
    """The CLI crawling ``job`` with 2 fetch workers, once ``app`` has served ``requests``:
    the process and its two workers' PIDs. Killed (by PID) if still running after."""
    out = subprocess.DEVNULL if quiet else subprocess.PIPE
    proc = subprocess.Popen(
        [*CRAWLER, "crawl", str(job), "--no-progress", "--processes", "2"],
        stdout=out,
        stderr=out,
        text=True,
    )
    try:
        wait_for(app, requests)
        workers = children(proc.pid)
        assert len(workers) == 2
        yield proc, workers
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


@pytest.mark.parametrize("tls", [True, False], ids=["h2-tls", "http1"])
def test_two_processes_crawl_the_same_as_one(
    tmp_path: Path, tls_files: TlsFiles, tls: bool
) -> None:
    """--processes 2 (HTTP/2 over TLS, and HTTP/1.1): every page fetched once (counted at the
    server), and the manifest (URLs, outcomes, statuses, sha256, paths) and the stored bodies
    are the same as a --processes 1 run's."""
    pages = 200
    app = SiteApp(pages, paragraphs=2)
    with LiveServer(app, tls_files if tls else None) as server:
        outs = {}
        for n in (1, 2):
            out = tmp_path / f"out{n}"
            # max_depth: strict BFS, so each page's depth is exact, not discovery order
            job = write_job(
                tmp_path / f"job{n}.yaml", server.url("/index.html"), out, tls_files.ca, 50
            )
            before = page_counts(app)
            result = run(job, "--processes", str(n))
            assert result.returncode == 0, result.stderr[-2000:]
            fetched = page_counts(app) - before
            assert len(fetched) == pages, n
            assert set(fetched.values()) == {1}, n
            outs[n] = out
    one, two = manifest(outs[1]), manifest(outs[2])
    assert len(one) == pages
    keys = ("outcome", "status", "sha256", "path", "bytes", "depth", "http_version")
    assert {u: [r[k] for k in keys] for u, r in two.items()} == {
        u: [r[k] for k in keys] for u, r in one.items()
    }
    assert {r["http_version"] for r in two.values()} == {"HTTP/2" if tls else "HTTP/1.1"}
    for record in one.values():
        assert record["outcome"] == "ok"
        path = record["path"]
        assert (outs[2] / path).read_bytes() == (outs[1] / path).read_bytes()
    assert not list((outs[2] / ".tmp").iterdir())


class _Gauge:
    """Wraps an app: counts the requests in its hands at once (the server's one event loop)."""

    def __init__(self, app: SiteApp, delay_s: float) -> None:
        self.app = app
        self.delay_s = delay_s
        self.now = 0
        self.peak = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            await asyncio.sleep(self.delay_s)
            await self.app(scope, receive, send)
        finally:
            self.now -= 1


def test_politeness_is_global_across_processes(tmp_path: Path, tls_files: TlsFiles) -> None:
    """Per-host concurrency 1 with 2 fetch workers and 16 requests allowed in flight overall:
    the server never has two requests of this host at once (robots.txt, fetched by the
    coordinator, included), and robots.txt is fetched once."""
    pages = 60
    app = SiteApp(pages, paragraphs=2)
    gauge = _Gauge(app, delay_s=0.01)
    with LiveServer(gauge, tls_files) as server:  # type: ignore[arg-type]
        job = write_job(
            tmp_path / "job.yaml",
            server.url("/index.html"),
            tmp_path / "out",
            tls_files.ca,
            per_host={"concurrency": 1, "rate": 100_000, "adaptive": False},
        )
        result = run(job, "--processes", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(manifest(tmp_path / "out")) == pages
    assert app.requests["/robots.txt"] == 1
    assert gauge.peak == 1


def test_a_killed_worker_is_replaced_and_its_pages_retried(
    tmp_path: Path, tls_files: TlsFiles
) -> None:
    """SIGKILL of one fetch worker mid-crawl: no hang; its in-flight pages go back to the
    frontier and are fetched again, a new worker takes its place, and the run completes with
    one ok manifest line per page; pages fetched twice are at most those in flight then. A
    re-run has nothing left to fetch."""
    pages = 400
    app = SiteApp(pages, paragraphs=2)
    with LiveServer(app, tls_files) as server:
        job = write_job(
            tmp_path / "job.yaml",
            server.url("/index.html"),
            tmp_path / "out",
            tls_files.ca,
            per_host={"concurrency": 16, "rate": 150},
        )
        with crawling_with_workers(job, app, 60) as (proc, workers):
            os.kill(workers[0], signal.SIGKILL)
            _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr[-2000:]
        assert "workers.died" in stderr
        records = manifest(tmp_path / "out")
        assert len(records) == pages
        assert {r["outcome"] for r in records.values()} == {"ok"}
        counts = page_counts(app)
        assert len(counts) == pages
        twice = sum(n - 1 for n in counts.values())
        assert 0 <= twice <= 16
        # retried: those fetched twice, and any the worker had not yet sent
        assert sum(r["attempts"] > 1 for r in records.values()) >= max(twice, 1)
        rerun = run(job)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        assert page_counts(app) == counts


def test_workers_that_keep_dying_stop_the_crawl_resumably(
    tmp_path: Path, tls_files: TlsFiles
) -> None:
    """Fetch workers that die again and again (each is killed at its 5th body write): the
    crawl stops with one clear error line and exit 1, no worker left behind; every page it
    recorded is ok, and the re-run completes the crawl with one line per page."""
    pages = 400
    app = SiteApp(pages, paragraphs=2)
    with LiveServer(app, tls_files) as server:
        job = write_job(
            tmp_path / "job.yaml", server.url("/index.html"), tmp_path / "out", tls_files.ca
        )
        result = run(job, "--processes", "2", env={ENV: "body_write:5"})
        assert result.returncode == 1, result.stderr[-2000:]
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1
        assert "fetch workers keep dying" in errors[0]
        assert "re-run to resume" in errors[0]
        first = manifest(tmp_path / "out")
        assert 0 < len(first) < pages
        assert {r["outcome"] for r in first.values()} == {"ok"}
        rerun = run(job, "--processes", "2")
        assert rerun.returncode == 0, rerun.stderr[-2000:]
    records = manifest(tmp_path / "out")
    assert len(records) == pages
    assert {r["outcome"] for r in records.values()} == {"ok"}
    assert len(page_counts(app)) == pages


def test_sigterm_with_workers_exits_143_and_leaves_no_worker(
    tmp_path: Path, tls_files: TlsFiles
) -> None:
    """SIGTERM to the coordinator of 2 fetch workers: exit 143 within the grace period, both
    workers gone; the re-run finishes the crawl and no page is fetched twice."""
    pages = 300
    app = SiteApp(pages, paragraphs=2)
    with LiveServer(app, tls_files) as server:
        job = write_job(
            tmp_path / "job.yaml",
            server.url("/index.html"),
            tmp_path / "out",
            tls_files.ca,
            per_host={"concurrency": 16, "rate": 40},
        )
        with crawling_with_workers(job, app, 31) as (proc, workers):  # robots.txt + 30 pages
            os.kill(proc.pid, signal.SIGTERM)
            stopped = time.monotonic()
            _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 143, stderr[-2000:]
        assert time.monotonic() - stopped < 11
        assert gone(workers, within_s=1)
        assert 30 <= len(page_counts(app)) < pages
        rerun = run(job, "--processes", "2", env={"CRAWLER_LIMITS__PER_HOST__RATE": "100000"})
        assert rerun.returncode == 0, rerun.stderr[-2000:]
    counts = page_counts(app)
    assert len(counts) == pages
    assert set(counts.values()) == {1}
    assert len(manifest(tmp_path / "out")) == pages


def test_sigkill_of_the_coordinator_ends_its_workers(tmp_path: Path, tls_files: TlsFiles) -> None:
    """kill -9 of the coordinator: its workers see EOF and exit; the re-run resumes and ends
    with one ok manifest line per page."""
    pages = 300
    app = SiteApp(pages, paragraphs=2)
    with LiveServer(app, tls_files) as server:
        job = write_job(
            tmp_path / "job.yaml",
            server.url("/index.html"),
            tmp_path / "out",
            tls_files.ca,
            per_host={"concurrency": 16, "rate": 100},
        )
        with crawling_with_workers(job, app, 30, quiet=True) as (proc, workers):
            proc.kill()
            proc.wait(timeout=10)
            assert gone(workers, within_s=10)
        rerun = run(job, "--processes", "2", env={"CRAWLER_LIMITS__PER_HOST__RATE": "100000"})
        assert rerun.returncode == 0, rerun.stderr[-2000:]
    records = manifest(tmp_path / "out")
    assert len(records) == pages
    assert {r["outcome"] for r in records.values()} == {"ok"}
