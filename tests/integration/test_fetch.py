"""Bulk downloads against real local servers (HTTP/1.1 plain, HTTP/2 over TLS): resumable with
Range + If-Range, verified, and never a partial or corrupt file under a final name."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crawler.benchsite import TlsFiles
from crawler.config import JobConfig, job_from_mapping
from crawler.download import DownloadSummary, run_download
from crawler.partials import PartialFiles
from crawler.urllist import parse_url_list
from tests.fileserver import FileApp
from tests.servers import LiveServer

pytestmark = pytest.mark.anyio

CRAWLER = [sys.executable, "-m", "crawler"]
BIG = os.urandom(3 * 1024 * 1024 + 17)
SMALL = b"small file\n" * 100


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(params=["h1", "h2"])
def server(request: pytest.FixtureRequest, tls_files: TlsFiles) -> Iterator[LiveServer]:
    """The file app over HTTP/1.1 plain (h1) or HTTP/2 over TLS (h2)."""
    app = FileApp()
    app.set("big.bin", BIG)
    app.set("small.txt", SMALL)
    with LiveServer(app, tls_files if request.param == "h2" else None) as live:
        yield live


def app_of(server: LiveServer) -> FileApp:
    assert isinstance(server.app, FileApp)
    return server.app


def make_job(tmp_path: Path, tls_files: TlsFiles, **download: Any) -> JobConfig:
    return job_from_mapping(
        {
            "name": "dl",
            "limits": {"concurrency": 8, "per_host": {"concurrency": 8, "rate": 100_000}},
            "http": {"ca_bundle": str(tls_files.ca), "timeouts": {"connect_s": 5, "read_s": 5}},
            "robots": {"obey": False},
            "output": {"dir": str(tmp_path / "out")},
            # hypercorn leaves an HTTP/2 stream open when the app dies: the idle timeout ends it.
            "download": {"idle_timeout_s": 1.5, **download},
        },
        source="test",
        seeds_optional=True,
    )


async def download(job: JobConfig, lines: list[str], **kw: Any) -> DownloadSummary:
    return await run_download(job, parse_url_list(lines, "list").entries, **kw)


def manifest(job: JobConfig) -> dict[str, dict[str, Any]]:
    lines = (job.output.dir / "manifest.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == len({r["url"] for r in records}), "one line per URL"
    return {r["url"].split("/", 3)[3]: r for r in records}


def final_files(job: JobConfig) -> dict[str, bytes]:
    """Files under final names (not the state, the manifest, .partial or .rejected)."""
    own = {"manifest.jsonl", "state.sqlite3", "state.lock"}
    return {
        p.name: p.read_bytes()
        for p in job.output.dir.iterdir()
        if p.is_file() and p.name not in own and not p.name.startswith("state.sqlite3")
    }


async def test_list_downloads_verified(
    server: LiveServer, tmp_path: Path, tls_files: TlsFiles
) -> None:
    """A list with good, duplicate, checksum-carrying (right and wrong), missing and redirected
    lines: every URL is fetched once, good files are byte-identical under their names, a wrong
    checksum is kept aside as checksum_mismatch, a 404 is http_error, and nothing partial is
    left."""
    app = app_of(server)
    job = make_job(tmp_path, tls_files)
    summary = await download(
        job,
        [
            f"{server.url('/f/big.bin')} sha256={sha(BIG)}",
            server.url("/f/big.bin"),  # duplicate
            f"{server.url('/f/small.txt')} sha256={'0' * 64}",
            f"{server.url('/redirect/small.txt')} copy.txt",
            server.url("/f/missing.bin"),
        ],
    )
    records = manifest(job)
    assert {k: r["outcome"] for k, r in records.items()} == {
        "f/big.bin": "ok",
        "f/small.txt": "checksum_mismatch",
        "redirect/small.txt": "ok",
        "f/missing.bin": "http_error",
    }
    assert records["f/big.bin"]["sha256"] == sha(BIG)
    assert records["f/big.bin"]["bytes"] == len(BIG)
    assert records["redirect/small.txt"]["final_url"] == server.url("/f/small.txt")
    assert final_files(job) == {"big.bin": BIG, "copy.txt": SMALL}
    assert (job.output.dir / ".rejected" / "small.txt").read_bytes() == SMALL
    assert records["f/small.txt"]["path"] == ".rejected/small.txt"
    assert not list((job.output.dir / ".partial").glob("*"))
    assert len(app.hits_for("big.bin")) == 1
    assert summary.exit_code == 1
    assert {f.outcome for f in summary.failures} == {"checksum_mismatch", "http_error"}
    versions = {h.http_version for h in app.hits}
    assert versions == ({"2"} if server.scheme == "https" else {"1.1"})


async def test_interrupted_download_resumes_with_range(
    server: LiveServer, tmp_path: Path, tls_files: TlsFiles
) -> None:
    """A response cut after 1 MB leaves a partial file (not under its final name) and the
    outcome says so; the re-run asks for the rest with Range + If-Range, gets a 206, and the
    file ends byte-identical with the whole file's sha256."""
    app = app_of(server)
    app.cut["big.bin"] = 1_000_000
    job = make_job(tmp_path, tls_files, attempts=1)
    first = await download(job, [server.url("/f/big.bin")])
    record = manifest(job)["f/big.bin"]
    assert record["outcome"] in ("network", "protocol", "timeout")
    assert "partial file kept" in record["error"]
    assert final_files(job) == {}
    assert first.exit_code == 1
    second = await download(job, [f"{server.url('/f/big.bin')} sha256={sha(BIG)}"])
    assert second.exit_code == 0
    hits = app.hits_for("big.bin")
    assert len(hits) == 2
    assert hits[1].range is not None
    offset = int(hits[1].range.removeprefix("bytes=").rstrip("-"))
    assert 0 < offset <= 1_000_000
    assert hits[1].if_range == app.etag("big.bin")
    assert hits[1].status == 206
    assert final_files(job) == {"big.bin": BIG}
    record = manifest(job)["f/big.bin"]
    assert (record["outcome"], record["sha256"], record["status"]) == ("ok", sha(BIG), 206)


async def test_retry_within_a_run_resumes(
    server: LiveServer, tmp_path: Path, tls_files: TlsFiles
) -> None:
    """With attempts left, a cut response is resumed in the same run (second request: 206)."""
    app = app_of(server)
    app.cut["big.bin"] = 700_000
    job = make_job(tmp_path, tls_files, attempts=3)
    summary = await download(job, [server.url("/f/big.bin")])
    assert summary.exit_code == 0
    assert [h.status for h in app.hits_for("big.bin")] == [200, 206]
    assert final_files(job) == {"big.bin": BIG}


async def test_server_ignoring_range_restarts_cleanly(
    server: LiveServer, tmp_path: Path, tls_files: TlsFiles
) -> None:
    """A server that answers a Range with 200 and the whole file: the partial is replaced by
    that body, not appended to."""
    app = app_of(server)
    app.cut["big.bin"] = 1_000_000
    job = make_job(tmp_path, tls_files)
    summary = await download(job, [server.url("/norange/big.bin")])
    hits = app.hits_for("big.bin")
    assert [h.status for h in hits] == [200, 200]
    assert hits[1].range is not None
    assert summary.exit_code == 0
    assert final_files(job) == {"big.bin": BIG}


async def test_file_changed_between_attempts(
    server: LiveServer, tmp_path: Path, tls_files: TlsFiles
) -> None:
    """The file changes after a cut: If-Range makes the server send the new file whole (200),
    which replaces the partial; a server that answers a Range at the wrong offset makes the
    client drop the partial and ask again without Range. Both end with the right bytes."""
    app = app_of(server)
    app.cut["big.bin"] = 1_000_000
    job = make_job(tmp_path, tls_files, attempts=1)
    await download(job, [server.url("/f/big.bin")])
    new = os.urandom(len(BIG) + 1000)
    app.set("big.bin", new)
    summary = await download(job, [server.url("/f/big.bin")])
    hits = app.hits_for("big.bin")
    assert (hits[1].range is not None, hits[1].status) == (True, 200)
    assert summary.exit_code == 0
    assert final_files(job) == {"big.bin": new}
    assert manifest(job)["f/big.bin"]["sha256"] == sha(new)

    app.hits.clear()
    app.cut["small.txt"], app.cuts_left["small.txt"] = 300, 1
    job2 = make_job(tmp_path / "2", tls_files, attempts=3)
    summary = await download(job2, [server.url("/wrongoffset/small.txt")])
    hits = app.hits_for("small.txt")
    assert [(h.range is not None, h.status) for h in hits] == [
        (False, 200),
        (True, 206),
        (False, 200),
    ]
    assert summary.exit_code == 0
    assert final_files(job2) == {"small.txt": SMALL}


async def test_content_length_liar_is_not_a_file(
    server: LiveServer, tmp_path: Path, tls_files: TlsFiles
) -> None:
    """A server that declares the length and sends half: an error outcome, nothing under the
    final name, however many attempts."""
    job = make_job(tmp_path, tls_files, attempts=2)
    summary = await download(job, [server.url("/liar/big.bin")])
    assert manifest(job)["liar/big.bin"]["outcome"] in ("network", "protocol", "timeout")
    assert final_files(job) == {}
    assert summary.exit_code == 1


async def test_416_when_the_partial_is_complete(
    server: LiveServer, tmp_path: Path, tls_files: TlsFiles
) -> None:
    """A partial file that already holds the whole file (a run killed before the rename): the
    server answers the Range with 416 */SIZE, and the file is placed and hashed, not refetched."""
    app = app_of(server)
    job = make_job(tmp_path, tls_files)
    url = server.url("/f/small.txt")
    writer = PartialFiles(job.output.dir).open(
        url, append=False, etag=app.etag("small.txt"), last_modified=None, total=len(SMALL)
    )
    writer.write(SMALL)
    writer.close()
    summary = await download(job, [url])
    assert [h.status for h in app.hits_for("small.txt")] == [416]
    assert summary.exit_code == 0
    assert manifest(job)["f/small.txt"]["sha256"] == sha(SMALL)
    assert final_files(job) == {"small.txt": SMALL}


async def test_unplaceable_file_is_a_storage_outcome_then_completes(
    server: LiveServer, tmp_path: Path, tls_files: TlsFiles
) -> None:
    """A folder in the way of the final name: outcome storage, the complete file stays partial;
    once the folder is gone the re-run finishes it from the partial (a 416, no body resent)."""
    app = app_of(server)
    job = make_job(tmp_path, tls_files)
    (job.output.dir / "small.txt").mkdir(parents=True)
    first = await download(job, [server.url("/f/small.txt")])
    assert manifest(job)["f/small.txt"]["outcome"] == "storage"
    assert first.exit_code == 1
    (job.output.dir / "small.txt").rmdir()
    second = await download(job, [server.url("/f/small.txt")])
    assert second.exit_code == 0
    assert [h.status for h in app.hits_for("small.txt")] == [200, 416]
    assert final_files(job) == {"small.txt": SMALL}


async def test_weak_etag_partial_is_fetched_whole(
    server: LiveServer, tmp_path: Path, tls_files: TlsFiles
) -> None:
    """Without a strong validator there is no safe resume: the retry asks for the whole file."""
    app = app_of(server)
    app.cut["big.bin"] = 1_000_000
    job = make_job(tmp_path, tls_files)
    summary = await download(job, [server.url("/weak/big.bin")])
    assert [h.range for h in app.hits_for("big.bin")] == [None, None]
    assert summary.exit_code == 0
    assert final_files(job) == {"big.bin": BIG}


async def test_content_disposition_name_only_when_asked(
    server: LiveServer, tmp_path: Path, tls_files: TlsFiles
) -> None:
    """A Content-Disposition name (here with ../) is used only with the option, sanitized."""
    job = make_job(tmp_path, tls_files, content_disposition=True)
    await download(job, [server.url("/cd/small.txt?x=1")])
    assert final_files(job) == {"small.txt": SMALL}
    job2 = make_job(tmp_path / "2", tls_files)
    await download(job2, [server.url("/cd/small.txt?x=1")])
    assert list(final_files(job2)) != ["small.txt"]
    assert not (tmp_path / "small.txt").exists()


# -- the command line -------------------------------------------------------------------


def run(
    *args: str, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CRAWLER, *args], input=stdin, capture_output=True, text=True, timeout=timeout
    )


def test_cli_fetch_exit_codes_and_bad_lines(tmp_path: Path) -> None:
    """Bad lines are reported as FILE:LINE: problem and skipped while the rest downloads
    (exit 1, listed); an all-good list read from stdin exits 0; a missing list exits 2."""
    app = FileApp()
    app.set("a.bin", BIG)
    app.set("b.txt", SMALL)
    with LiveServer(app) as srv:
        listing = tmp_path / "urls.txt"
        listing.write_text(
            f"# test\n{srv.url('/f/a.bin')}\nftp://x/y\n{srv.url('/f/b.txt')} sha256=xyz\n"
            f"{srv.url('/f/b.txt')}\n"
        )
        sums = tmp_path / "SHA256SUMS"
        sums.write_text(f"{sha(BIG)}  a.bin\n{sha(SMALL)}  b.txt\n")
        result = run("fetch", str(listing), "-o", str(tmp_path / "out"), "--checksums", str(sums))
        assert result.returncode == 1, result.stderr
        assert f"{listing}:3: 'ftp://x/y': unsupported scheme" in result.stderr
        assert f"{listing}:4: bad checksum" in result.stderr
        assert "skipped:" in result.stdout
        assert (tmp_path / "out" / "a.bin").read_bytes() == BIG
        assert (tmp_path / "out" / "b.txt").read_bytes() == SMALL
        events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
        assert sum(e["event"] == "download.done" for e in events) == 2

        good = run("fetch", "-", "-o", str(tmp_path / "out2"), stdin=srv.url("/f/b.txt") + "\n")
        assert good.returncode == 0, good.stderr
        assert (tmp_path / "out2" / "b.txt").read_bytes() == SMALL
        rerun = run("fetch", "-", "-o", str(tmp_path / "out2"), stdin=srv.url("/f/b.txt") + "\n")
        assert rerun.returncode == 0, rerun.stderr
        assert len(app.hits_for("b.txt")) == 2  # once per folder: the re-run had nothing to do

    missing = run("fetch", str(tmp_path / "nope.txt"))
    assert missing.returncode == 2
    assert "nope.txt: cannot read URL list" in missing.stderr


def test_cli_fetch_says_worker_processes_do_not_apply(tmp_path: Path) -> None:
    """limits.processes is for crawls: a download with it set still runs in one process, and
    says so in one warning instead of ignoring it silently."""
    app = FileApp()
    app.set("b.txt", SMALL)
    job = tmp_path / "job.yaml"
    job.write_text("limits: {processes: 2}\n")
    with LiveServer(app) as srv:
        result = run(
            "fetch",
            "-",
            "-o",
            str(tmp_path / "out"),
            "--job",
            str(job),
            stdin=srv.url("/f/b.txt") + "\n",
        )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "b.txt").read_bytes() == SMALL
    warnings = [line for line in result.stderr.splitlines() if "processes_ignored" in line]
    assert len(warnings) == 1


def test_cli_killed_mid_download_resumes(tmp_path: Path) -> None:
    """kill -9 while a file streams: nothing under the final name; the re-run resumes with a
    Range request at the partial file's size and ends byte-identical (exit 0)."""
    app = FileApp(stall_s=30)
    app.set("big.bin", BIG)
    app.stall["big.bin"] = 2_500_000
    out = tmp_path / "out"
    with LiveServer(app) as srv:
        listing = tmp_path / "urls.txt"
        listing.write_text(f"{srv.url('/f/big.bin')} sha256={sha(BIG)}\n")
        proc = subprocess.Popen(
            [*CRAWLER, "fetch", str(listing), "-o", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            partial = out / ".partial"
            deadline = time.monotonic() + 30
            sizes: list[int] = []
            while time.monotonic() < deadline and proc.poll() is None:
                sizes = [p.stat().st_size for p in partial.glob("*") if not p.suffixes]
                if sizes and sizes[0] > 0:
                    break
                time.sleep(0.05)
            assert sizes, (proc.poll(), app.hits)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert not (out / "big.bin").exists()
        kept = next(p for p in (out / ".partial").glob("*") if not p.suffixes).stat().st_size
        assert 0 < kept <= 2_500_000
        del app.stall["big.bin"]
        rerun = run("fetch", str(listing), "-o", str(out))
        assert rerun.returncode == 0, rerun.stderr
    hits = app.hits_for("big.bin")
    assert hits[-1].range == f"bytes={kept}-"
    assert hits[-1].status == 206
    assert (out / "big.bin").read_bytes() == BIG


def test_crawl_job_with_follow_false_downloads(tmp_path: Path) -> None:
    """``crawler crawl`` on a job with ``follow: false`` downloads its seeds file's list (with
    checksums and names) instead of crawling."""
    app = FileApp()
    app.set("b.txt", SMALL)
    with LiveServer(app) as srv:
        (tmp_path / "list.txt").write_text(f"{srv.url('/f/b.txt')} sha256={sha(SMALL)} named.txt\n")
        job = tmp_path / "job.yaml"
        job.write_text(
            "seeds_file: list.txt\nfollow: false\nrobots: {obey: false}\noutput: {dir: out}\n"
        )
        result = run("crawl", str(job))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "named.txt").read_bytes() == SMALL


def test_cli_sigterm_keeps_the_partial_and_resumes(tmp_path: Path) -> None:
    """SIGTERM mid-file: exit 143 within the grace period, the bytes received so far flushed to
    the partial file (nothing under the final name), finished files kept; the re-run asks for
    exactly the rest (Range at the partial's size)."""
    app = FileApp(stall_s=20)
    app.set("big.bin", BIG)
    app.set("b.txt", SMALL)
    app.stall["big.bin"] = 2_000_000
    out = tmp_path / "out"
    with LiveServer(app) as srv:
        listing = tmp_path / "urls.txt"
        listing.write_text(f"{srv.url('/f/big.bin')}\n{srv.url('/f/b.txt')}\n")
        job = tmp_path / "job.yaml"
        job.write_text("limits: {stop_grace_s: 1}\nrobots: {obey: false}\n")
        proc = subprocess.Popen(
            [*CRAWLER, "fetch", str(listing), "-o", str(out), "--job", str(job)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not (out / "b.txt").exists():
                time.sleep(0.05)
            partial = out / ".partial"
            while time.monotonic() < deadline:  # the first write-buffer flush is on disk
                sizes = [p.stat().st_size for p in partial.glob("*") if not p.suffixes]
                if sizes and sizes[0] > 0:
                    break
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            stopped = time.monotonic()
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 143
        assert time.monotonic() - stopped < 10
        assert (out / "b.txt").read_bytes() == SMALL
        assert not (out / "big.bin").exists()
        kept = next(p for p in (out / ".partial").glob("*") if not p.suffixes).stat().st_size
        assert 0 < kept <= 2_000_000  # all of it, unless the signal beat the bytes
        del app.stall["big.bin"]
        rerun = run("fetch", str(listing), "-o", str(out), "--job", str(job))
        assert rerun.returncode == 0, rerun.stderr
    assert [(h.range, h.status) for h in app.hits_for("big.bin")] == [
        (None, 200),
        (f"bytes={kept}-", 206),
    ]
    assert len(app.hits_for("b.txt")) == 1
    assert (out / "big.bin").read_bytes() == BIG


async def test_busy_server_is_retried_after_its_retry_after(
    server: LiveServer, tmp_path: Path, tls_files: TlsFiles
) -> None:
    """503 + Retry-After: 1 twice, then the file: the URL goes back through the frontier and is
    asked again no sooner than the server said, and is downloaded; a file that stays busy ends
    as a recorded http_error after exactly retries.attempts requests."""
    app = app_of(server)
    app.busy["small.txt"] = 2
    app.busy["big.bin"] = 10
    job = make_job(tmp_path, tls_files)
    job = job.model_copy(
        update={"retries": job.retries.model_copy(update={"attempts": 3, "backoff_base_s": 0.05})}
    )
    summary = await download(job, [server.url("/f/small.txt"), server.url("/f/big.bin")])
    hits = app.hits_for("small.txt")
    assert [h.status for h in hits] == [503, 503, 200]
    assert all(b.at - a.at >= 1.0 for a, b in itertools.pairwise(hits)), hits
    records = manifest(job)
    assert records["f/small.txt"]["outcome"] == "ok"
    assert final_files(job)["small.txt"] == SMALL
    assert records["f/big.bin"]["outcome"] == "http_error"
    assert records["f/big.bin"]["status"] == 503
    assert [h.status for h in app.hits_for("big.bin")] == [503, 503, 503]
    assert summary.exit_code == 1
