"""A 1,000,000-URL frontier: peak memory and admit / hand-out rates.

    .venv/bin/python bench/frontier_1m.py [--urls 1000000] [--crawl-s 20]

Two children, each measured on its own (peak RSS from wait4):

1. ``frontier``: the SQLite frontier alone: admit N URLs the way a crawl does (a page's links,
   100 per settle, plus seed batches), then lease and settle every one (a record per URL, like
   the engine). Prints URLs/s admitted and URLs/s handed out (lease + settle).
2. ``crawl``: the real CLI with a seeds file of N URLs (streamed into the frontier) pointing at
   a closed loopback port, so every fetch is a fast ``connect`` failure; once all N are queued
   (read with ``read_status`` while it runs), SIGTERM after ``--crawl-s`` more seconds. Shows
   the whole process stays bounded with N URLs queued.

Everything stays on 127.0.0.1; output goes to bench/.work/ (gitignored).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work" / "frontier_1m"


def wait_rss_mb(proc: subprocess.Popen[bytes]) -> tuple[int, float]:
    """Wait for ``proc``; its exit status and peak RSS in MiB (ru_maxrss is KiB on Linux)."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss / 1024


def frontier_child(n: int, folder: Path) -> None:
    sys.path.insert(0, str(HERE.parent))
    from crawler.frontier import SqliteFrontier
    from crawler.models import CrawlRequest, Outcome, PageRecord

    hosts = [f"h{i}.test" for i in range(10)]

    def url(i: int) -> CrawlRequest:
        host = hosts[i % len(hosts)]
        return CrawlRequest(f"http://{host}/s{i % 97}/p{i:07d}.html", host, 1)

    with SqliteFrontier(folder) as f:
        started = time.perf_counter()
        # Seeds: the first 10,000 as one batch each 10,000 (as the engine streams a seeds file).
        for lo in range(0, min(n, 10_000), 10_000):
            f.add([url(i) for i in range(lo, min(lo + 10_000, n))])
        # The rest as links of settled pages, 100 per page, as a crawl admits them.
        leased_for_links = f.lease(hosts[0], 10_000 // 100 + 1, now=0)
        next_i = 10_000
        page = 0
        while next_i < n:
            req = leased_for_links[page % len(leased_for_links)]
            hi = min(next_i + 100, n)
            links = [url(i) for i in range(next_i, hi)]
            if page < len(leased_for_links):
                f.settle(req, PageRecord(req.url, req.url, Outcome.OK, req.depth), links)
            else:
                f.add(links)
            next_i = hi
            page += 1
        admit_s = time.perf_counter() - started
        stats = f.statistics()
        print(
            f"admitted {stats.admitted:,} URLs in {admit_s:.1f} s = "
            f"{stats.admitted / admit_s:,.0f} URLs/s; queued {stats.queued:,}",
            flush=True,
        )

        started = time.perf_counter()
        handed = 0
        while f.outstanding:
            for host in f.hosts(0):
                batch = f.lease(host, 32, now=0)
                with f.transaction():  # one commit per batch, as the group committer does
                    for r in batch:
                        rec = PageRecord(r.url, r.url, Outcome.CONNECT, r.depth, error="refused")
                        f.settle(r, rec, [])
                handed += len(batch)
        out_s = time.perf_counter() - started
        print(
            f"handed out and settled {handed:,} URLs in {out_s:.1f} s = "
            f"{handed / out_s:,.0f} URLs/s (lease 32 per host, one commit per batch)",
            flush=True,
        )


def crawl_child(n: int, folder: Path, crawl_s: float) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    seeds = folder / "seeds.txt"
    with seeds.open("w") as f:
        for i in range(n):
            f.write(f"http://127.0.0.1:9/s{i % 97}/p{i:07d}.html\n")
    job = folder / "job.yaml"
    job.write_text(
        f"seeds_file: {seeds}\n"
        "robots: {obey: false}\n"
        "limits: {concurrency: 32, per_host: {concurrency: 32, rate: 100000}}\n"
        "logging: {level: warning}\n"
        f"output: {{dir: {folder / 'out'}}}\n"
    )
    sys.path.insert(0, str(HERE.parent))
    from crawler.errors import StateError
    from crawler.frontier import read_status

    crawler = Path(sys.executable).parent / "crawler"
    started = time.perf_counter()
    proc = subprocess.Popen([str(crawler), "crawl", str(job)], stdout=subprocess.PIPE)
    try:
        seeded_s = None
        deadline = started + 1800
        while time.perf_counter() < deadline and proc.poll() is None:
            time.sleep(1)
            try:
                if read_status(folder / "out").admitted >= n:
                    seeded_s = time.perf_counter() - started
                    break
            except StateError:
                continue
        print(
            f"crawl: {n:,} seeds checked and streamed into the frontier in "
            f"{seeded_s or float('nan'):.1f} s",
            flush=True,
        )
        time.sleep(crawl_s)
        proc.send_signal(signal.SIGTERM)
        code, rss = wait_rss_mb(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
    wall = time.perf_counter() - started
    assert proc.stdout is not None
    summary = proc.stdout.read().decode()
    pages = next(
        (ln.split()[-1] for ln in summary.splitlines() if ln.strip().startswith("pages")), "?"
    )
    left = next((ln.split()[-1] for ln in summary.splitlines() if "left in queue" in ln), "?")
    print(
        f"crawl: {n:,} seeds streamed in, {pages} settled, {left} left queued, "
        f"exit {code} after {wall:.1f} s; peak RSS {rss:.0f} MiB",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--urls", type=int, default=1_000_000)
    parser.add_argument("--crawl-s", type=float, default=20.0)
    parser.add_argument("--child", choices=["frontier"])
    parser.add_argument("--only", choices=["frontier", "crawl"])
    parser.add_argument("--folder", type=Path)
    args = parser.parse_args()
    if args.child == "frontier":
        frontier_child(args.urls, args.folder)
        return
    import shutil

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    if args.only != "crawl":
        proc = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--child",
                "frontier",
                "--urls",
                str(args.urls),
                "--folder",
                str(WORK / "frontier"),
            ]
        )
        code, rss = wait_rss_mb(proc)
        print(f"frontier: exit {code}; peak RSS {rss:.0f} MiB", flush=True)
    if args.only != "frontier":
        crawl_child(args.urls, WORK / "crawl", args.crawl_s)


if __name__ == "__main__":
    main()
