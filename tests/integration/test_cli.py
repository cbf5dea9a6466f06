"""The command line as a user runs it: a real process, real exit codes, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crawler.benchsite import SiteApp, TlsFiles
from tests.servers import LiveServer

CRAWLER = [sys.executable, "-m", "crawler"]


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CRAWLER, *args], capture_output=True, text=True, timeout=timeout)


def write_job(tmp_path: Path, seeds: list[str], ca: Path, **extra: str) -> Path:
    lines = [
        f"seeds: {json.dumps(seeds)}",
        "limits: {concurrency: 8, per_host: {concurrency: 8, rate: 200}}",
        f"http: {{ca_bundle: {json.dumps(str(ca))}}}",
        "robots: {obey: false}",
        f"output: {{dir: {json.dumps(str(tmp_path / 'out'))}}}",
        *(f"{k}: {v}" for k, v in extra.items()),
    ]
    path = tmp_path / "job.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_validate_bad_job_exits_2_with_one_line(tmp_path: Path) -> None:
    """An unknown key: exit 2, one line on stderr naming file, line and key; nothing fetched."""
    job = tmp_path / "job.yaml"
    job.write_text("seeds: [http://127.0.0.1:9/]\nscope:\n  max_dept: 2\n")
    for command in ("validate", "crawl"):
        result = run(command, str(job))
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().count("\n") == 0, result.stderr
        assert "job.yaml:3: scope.max_dept: unknown key" in result.stderr
    assert not (tmp_path / "out").exists()


def test_validate_good_job(tmp_path: Path) -> None:
    """A good job validates with exit 0."""
    job = tmp_path / "job.yaml"
    job.write_text("seeds: [http://127.0.0.1:9/]\n")
    result = run("validate", str(job))
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_crawl_exit_0_and_json_logs_when_not_a_terminal(
    tmp_path: Path, tls_files: TlsFiles
) -> None:
    """A complete crawl exits 0, logs one JSON fetch.done event per URL, prints a summary."""
    with LiveServer(SiteApp(60), tls_files) as server:
        result = run("crawl", str(write_job(tmp_path, [server.url("/index.html")], tls_files.ca)))
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines()]
    done = [e for e in events if e["event"] == "fetch.done"]
    assert len(done) == 60
    assert {e["job"] for e in done} == {"crawl"}
    assert "pages" in result.stdout
    assert "60" in result.stdout


def test_unreachable_seed_is_a_recorded_failure(tmp_path: Path, tls_files: TlsFiles) -> None:
    """A seed nobody listens on: the crawl completes (exit 0) with a connect failure recorded."""
    result = run("crawl", str(write_job(tmp_path, ["http://127.0.0.1:9/"], tls_files.ca)))
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "out" / "manifest.jsonl").read_text())
    assert record["outcome"] == "connect"


@pytest.mark.slow
def test_sigterm_stops_gracefully_and_rerun_completes(tmp_path: Path, tls_files: TlsFiles) -> None:
    """SIGTERM mid-crawl: exit 143 within the grace period with state saved; the re-run
    finishes the crawl and no page is fetched twice."""
    app = SiteApp(400)
    with LiveServer(app, tls_files) as server:
        job = write_job(tmp_path, [server.url("/index.html")], tls_files.ca)
        job.write_text(job.read_text().replace("rate: 200", "rate: 40"))  # about 10 s of work
        proc = subprocess.Popen(
            [*CRAWLER, "crawl", str(job)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            deadline = time.monotonic() + 30
            while sum(app.requests.values()) < 50 and time.monotonic() < deadline:
                time.sleep(0.05)
            os.kill(proc.pid, signal.SIGTERM)
            stopped = time.monotonic()
            _, stderr = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 143, stderr
        assert time.monotonic() - stopped < 11
        first = sum(app.requests.values())
        assert 50 <= first < 400
        rerun = run("crawl", str(job))
        assert rerun.returncode == 0, rerun.stderr
    assert sum(app.requests.values()) == 400
    assert max(app.requests.values()) == 1
    lines = (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 400
    assert len({json.loads(line)["url"] for line in lines}) == 400


def test_sigterm_while_seeding_a_large_seeds_file(tmp_path: Path) -> None:
    """SIGTERM during a long seeding (a big seeds_file) stops it within the grace: exit 143,
    the seeds admitted so far are kept, and nothing is fetched (the seeds point at a closed
    loopback port, so a fetch would show as a failure record)."""
    seeds = tmp_path / "seeds.txt"
    with seeds.open("w") as f:
        for i in range(300_000):
            f.write(f"http://127.0.0.1:9/p{i}\n")
    job = tmp_path / "job.yaml"
    job.write_text(
        f"seeds_file: {seeds}\nrobots: {{obey: false}}\n"
        f"output: {{dir: {tmp_path / 'out'}}}\nlimits: {{stop_grace_s: 2}}\n"
    )
    proc = subprocess.Popen(
        [*CRAWLER, "crawl", str(job), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 60
        for line in proc.stderr:  # JSON log lines (not a terminal)
            if '"crawl.seeding"' in line or time.monotonic() > deadline:
                break
        time.sleep(0.3)
        assert proc.poll() is None, "seeding 300,000 URLs ended before the signal"
        proc.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        _, rest = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, rest
    assert time.monotonic() - stopped < 2 + 5
    assert '"crawl.seeding_stopped"' in rest
    status = run("status", str(tmp_path / "out"), "--json")
    counts = json.loads(status.stdout)
    assert 0 < counts["queued"] < 300_000
    assert counts["done"] == 0
