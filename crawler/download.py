"""Bulk downloads: the crawl engine's other front door (``crawler fetch``, ``follow: false``).

The same parts as a crawl, wired for files instead of pages: the **frontier** (the job's
``state.sqlite3``, so a re-run resumes and retries what failed), the **scheduler** (per-host
concurrency and pacing), the one **fetcher** (with the job's ``download`` limits: no size cap or
total deadline by default, an idle timeout) and **storage** for the manifest. No links are
extracted. One file's path:

1. **Ask.** If an earlier attempt left a partial file with a validator, the request carries
   ``Range: bytes=N-`` and ``If-Range`` (``resume.range_headers``), and always
   ``Accept-Encoding: identity`` so offsets are the file's bytes.
2. **Decide.** Before a 2xx body is read, ``resume.decide`` says: append (a 206 at offset N
   under the same validator), write from scratch (a 200), or restart (a 206 elsewhere or under
   another validator: the body is not read, the partial is dropped, and the file is requested
   again). A 416 whose total is the partial's size means the partial is already complete.
3. **Write.** The body streams into ``.partial/`` (``partials``), hashed as written; the
   kept prefix is re-hashed on resume, so the sha256 covers the whole file.
4. **Finish.** Complete (as long as the server said) and the sha256 as expected: renamed under
   its final name. A wrong sha256: moved to ``.rejected/`` and recorded ``checksum_mismatch``.
   Cut short (network, timeout, a body shorter than its length): the partial stays, and the
   next attempt (``download.attempts`` per run, then the next run) resumes it.
5. **Settle.** The frontier marks the URL done with its record; the manifest gets the line.
   An answer that says "later" (``retries.statuses``: 429, 5xx) is not settled while
   ``retries.attempts`` allows: the URL goes back to the frontier with a not-before time
   (backoff with jitter, at least the ``Retry-After``, which also pauses the whole host), as in
   a crawl. robots.txt is not consulted: a list of URLs is the user's own choice, not discovery.

Must not: follow links, or change how a crawl runs (``engine`` owns that).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import structlog

from crawler.config import JobConfig
from crawler.fetcher import Fetcher
from crawler.frontier import SqliteFrontier
from crawler.models import CrawlRequest, FetchResult, Outcome, PageRecord
from crawler.partials import PartialFiles, PartWriter
from crawler.politeness import plan_retry
from crawler.resume import Action, Partial, Verdict, decide, range_headers, validators
from crawler.runner import SIGNAL_EXIT, run_workers
from crawler.scheduler import Scheduler
from crawler.storage import Storage
from crawler.urllist import ListEntry, assign_names, disposition_name
from crawler.urls import host_of, hostname_of

__all__ = ["ActiveFile", "DownloadProgress", "DownloadSummary", "Failure", "run_download"]

log = structlog.get_logger()

# Failures after which the partial file is worth keeping: the next attempt resumes it.
_TRANSIENT = frozenset({Outcome.NETWORK, Outcome.PROTOCOL, Outcome.TIMEOUT})


@dataclass(frozen=True, slots=True)
class ActiveFile:
    """A file being downloaded: its name, bytes on disk, and total size when known."""

    name: str
    bytes: int
    total: int | None


@dataclass(frozen=True, slots=True)
class DownloadProgress:
    """A snapshot for progress displays. ``bytes`` counts bytes received in this run."""

    files_done: int
    files_failed: int
    files_total: int
    bytes: int
    elapsed_s: float
    active: tuple[ActiveFile, ...]


@dataclass(frozen=True, slots=True)
class Failure:
    url: str
    outcome: str
    error: str | None


@dataclass(frozen=True, slots=True)
class DownloadSummary:
    """What a download run did; ``exit_code`` 0 only when every listed URL is done and ok."""

    name: str
    files: int  # settled in this run
    ok: int
    bytes: int  # received in this run
    elapsed_s: float
    outcomes: dict[str, int]
    http_versions: dict[str, int]
    failures: tuple[Failure, ...]
    already_done: int
    queued_left: int
    manifest: Path
    stopped_by: str | None = None
    exit_code: int = 0

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass(eq=False)
class _Counters:
    files: int = 0
    ok: int = 0
    failed: int = 0
    finished_bytes: int = 0  # received in this run by files no longer active
    outcomes: Counter[str] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)


@dataclass(eq=False)
class _Attempt:
    """One request's state, filled in by the fetcher's callbacks."""

    partial: Partial | None
    sent_range: bool
    verdict: Verdict | None = None
    writer: PartWriter | None = None
    headers: dict[str, str] = field(default_factory=dict)
    name: str | None = None  # from Content-Disposition, when asked for and given


class _Download:
    """One run of a download job: the opened resources and the per-file pipeline."""

    def __init__(
        self,
        job: JobConfig,
        storage: Storage,
        frontier: SqliteFrontier,
        fetcher: Fetcher,
        parts: PartialFiles,
        names: dict[str, str],
        expected: Mapping[str, str],
        total: int,
    ) -> None:
        self.job = job
        self.storage = storage
        self.frontier = frontier
        self.fetcher = fetcher
        self.parts = parts
        self.names = names
        self.expected = expected
        self.total = total
        self.auth_hosts = frozenset(job.scope.domains) or frozenset(hostname_of(u) for u in names)
        self.scheduler = Scheduler(
            frontier,
            concurrency=job.limits.concurrency,
            per_host_concurrency=job.limits.per_host.concurrency,
            per_host_rate=job.limits.per_host.rate,
        )
        self.counters = _Counters()
        self.rng = random.Random()  # noqa: S311 - jitter, not security
        self.retry_statuses = frozenset(job.retries.statuses)
        self.last: dict[str, FetchResult] = {}  # each URL's last answer, for Retry-After
        self.active: dict[str, PartWriter] = {}
        self.started = time.monotonic()
        self.stopped_by: str | None = None

    async def worker(self) -> None:
        scheduler = self.scheduler
        while (request := await scheduler.wait_next()) is not None:
            try:
                await self.process(request)
            finally:
                scheduler.release(request)

    def _name(self, url: str) -> str:
        name = self.names.get(url)
        if name is None:  # queued by an earlier run's list, not by this one
            name = assign_names([ListEntry(url, None, None, "", 0)], self.names)[url]
            self.names[url] = name
        return name

    async def process(self, request: CrawlRequest) -> None:
        url = request.url
        record: PageRecord | None = None
        started = time.perf_counter()
        try:
            for attempt in range(1, self.job.download.attempts + 1):
                record = await self.attempt(url, attempt)
                if record is not None:
                    break
        except OSError as exc:  # the partial file could not be read, created or removed
            record = self._record(url, url, FetchResult(Outcome.STORAGE), Outcome.STORAGE, str(exc))
        finally:
            writer = self.active.pop(url, None)
            if writer is not None:  # cancelled mid-body: the bytes stay as the partial file
                writer.close()
                self.counters.finished_bytes += writer.size - writer.start
        if record is None:
            record = self._record(
                url,
                url,
                FetchResult(Outcome.PROTOCOL),
                Outcome.PROTOCOL,
                f"gave up after {self.job.download.attempts} attempts (file kept changing)",
            )
        last = self.last.pop(url, None)
        if last is not None and self.retry_later(request, record, last):
            return
        record = _with_elapsed(record, time.perf_counter() - started)
        self.frontier.settle(request, record, [])
        self.storage.append(record)
        self.count(record)

    def retry_later(self, request: CrawlRequest, record: PageRecord, last: FetchResult) -> bool:
        """A "come back later" answer (429, 5xx) with attempts left goes back to the frontier
        with a not-before time; a Retry-After also pauses the host. True when it went back."""
        now = anyio.current_time()
        plan = plan_retry(
            retryable=record.outcome is Outcome.HTTP_ERROR and record.status in self.retry_statuses,
            status=record.status,
            retry_after=last.header("retry-after"),
            attempt=request.attempts + 1,
            retries=self.job.retries,
            now_wall=time.time(),
            rng=self.rng,
        )
        if plan.pause_s is not None:
            self.scheduler.pause(request.host, now + plan.pause_s)
        if plan.delay_s is None:
            return False
        self.frontier.retry(request, now + plan.delay_s)
        log.info(
            "download.retry_later",
            url=request.url,
            status=record.status,
            attempt=request.attempts + 1,
            delay_s=round(plan.delay_s, 3),
        )
        return True

    async def _fetch(self, url: str, state: _Attempt) -> tuple[str, FetchResult]:
        """GET ``url`` following redirects (a download link often points elsewhere); returns
        the final URL and its result."""
        extra = {"Accept-Encoding": "identity", **range_headers(state.partial)}
        content_disposition = self.job.download.content_disposition

        def on_response(status: int, headers: Mapping[str, str]) -> bool:
            state.headers = dict(headers)
            state.verdict = decide(state.partial, state.sent_range, status, headers)
            if content_disposition:
                state.name = disposition_name(headers.get("content-disposition"))
            return state.verdict.action in (Action.APPEND, Action.WRITE)

        def open_sink() -> PartWriter:
            assert state.verdict is not None
            etag, last_modified = validators(state.headers)
            writer = self.parts.open(
                url_listed,
                append=state.verdict.action is Action.APPEND,
                etag=etag,
                last_modified=last_modified,
                total=state.verdict.total,
            )
            state.writer = self.active[url_listed] = writer
            return writer

        url_listed = target = url
        for _ in range(self.job.http.max_redirects + 1):
            result = await self.fetcher.fetch(
                target,
                open_sink,
                send_auth=hostname_of(target) in self.auth_hosts,
                headers=extra,
                on_response=on_response,
            )
            if result.outcome is not Outcome.REDIRECT or result.location is None:
                return target, result
            target = result.location
        return target, FetchResult(
            Outcome.TOO_MANY_REDIRECTS,
            status=result.status,
            http_version=result.http_version,
            error=f"more than {self.job.http.max_redirects} redirects",
        )

    async def attempt(self, url: str, attempt: int) -> PageRecord | None:
        """One try at ``url``: its record when the file is settled, or None to try again."""
        partial = self.parts.load(url)
        state = _Attempt(partial, bool(range_headers(partial)))
        final_url, result = await self._fetch(url, state)
        self.last[url] = result
        writer = self.active.pop(url, None)
        if writer is not None:
            writer.close()
            self.counters.finished_bytes += writer.size - writer.start
        if result.outcome is Outcome.HTTP_ERROR and result.status == 416:
            state.verdict = decide(partial, state.sent_range, 416, dict(result.headers))
        verdict = state.verdict

        def record(outcome: Outcome, error: str | None) -> PageRecord:
            return self._record(url, final_url, result, outcome, error)

        if verdict is not None and verdict.action is Action.RESTART:
            log.info("download.restart", url=url, reason=verdict.reason, attempt=attempt)
            self.parts.drop(url)
            return None
        if verdict is not None and verdict.action is Action.FAIL:
            return record(Outcome.PROTOCOL, verdict.reason)
        if verdict is not None and verdict.action is Action.DONE:
            writer = self.parts.writer_for_existing(url, verdict.total)
            return self.place(url, final_url, result, writer, state.name)
        if result.outcome is Outcome.OK and writer is not None:
            if writer.start:
                log.info("download.resumed", url=url, offset=writer.start, attempt=attempt)
            if writer.total is not None and writer.size != writer.total:
                # h11 catches a short body itself; this covers transports that do not.
                error = f"body ended at {writer.size} of {writer.total} bytes"
                if writer.size > writer.total:
                    self.parts.drop(url)
                    return record(Outcome.PROTOCOL, error)
                if attempt < self.job.download.attempts:
                    return None
                return record(Outcome.PROTOCOL, self._kept(url, error))
            return self.place(url, final_url, result, writer, state.name)
        if result.outcome in _TRANSIENT and self.parts.load(url) is not None:
            error = result.error or result.outcome.value
            progressed = writer is not None and writer.size > writer.start
            if progressed and attempt < self.job.download.attempts:
                log.info("download.retry", url=url, error=error, attempt=attempt)
                return None
            return record(result.outcome, self._kept(url, error))
        later = result.outcome is Outcome.HTTP_ERROR and result.status in self.retry_statuses
        if result.outcome not in _TRANSIENT and not later:
            self.parts.drop(url)  # gone, refused or too large: a partial of it is worthless
        if result.outcome is Outcome.OK:
            return record(Outcome.PROTOCOL, "no body")
        return record(result.outcome, result.error)

    def _kept(self, url: str, error: str) -> str:
        partial = self.parts.load(url)
        if partial is None or partial.size == 0:
            return error
        return f"{error} (partial file kept: {partial.size} bytes; re-run to resume)"

    def place(
        self,
        url: str,
        final_url: str,
        result: FetchResult,
        writer: PartWriter,
        server_name: str | None,
    ) -> PageRecord:
        name = self._name(url)
        if server_name is not None:
            name = server_name
            if any(n.casefold() == name.casefold() for u, n in self.names.items() if u != url):
                name = assign_names([ListEntry(url, None, name, "", 0)], {"": name})[url]
        expected = self.expected.get(url)
        try:
            placed = self.parts.finish(writer, name, expected)
        except OSError as exc:
            return self._record(
                url, final_url, result, Outcome.STORAGE, f"cannot place the file: {exc}"
            )
        if placed.rejected:
            return self._record(
                url,
                final_url,
                result,
                Outcome.CHECKSUM_MISMATCH,
                f"sha256 {placed.sha256} is not the expected {expected}; kept at {placed.path}",
                placed=(placed.path, placed.size, placed.sha256),
            )
        return self._record(
            url,
            final_url,
            result,
            Outcome.OK,
            None,
            placed=(placed.path, placed.size, placed.sha256),
        )

    def _record(
        self,
        url: str,
        final_url: str,
        result: FetchResult,
        outcome: Outcome,
        error: str | None,
        placed: tuple[str, int, str] | None = None,
    ) -> PageRecord:
        path, size, sha = placed if placed is not None else (None, 0, None)
        return PageRecord(
            url=url,
            final_url=final_url,
            outcome=outcome,
            depth=0,
            status=result.status,
            content_type=result.content_type,
            bytes=size,
            sha256=sha,
            path=path,
            http_version=result.http_version,
            elapsed_s=round(result.elapsed_s, 4),
            error=error,
        )

    def count(self, record: PageRecord) -> None:
        c = self.counters
        c.files += 1
        c.outcomes[record.outcome.value] += 1
        if record.http_version:
            c.versions[record.http_version] += 1
        if record.outcome is Outcome.OK:
            c.ok += 1
        else:
            c.failed += 1
            c.failures.append(Failure(record.url, record.outcome.value, record.error))
        log.info(
            "download.done",
            url=record.url,
            status=record.status,
            outcome=record.outcome.value,
            path=record.path,
            bytes=record.bytes,
            sha256=record.sha256,
            elapsed_s=record.elapsed_s,
            error=record.error,
        )

    def progress(self) -> DownloadProgress:
        c = self.counters
        active = tuple(ActiveFile(self._name(u), w.size, w.total) for u, w in self.active.items())
        live = sum(w.size - w.start for w in self.active.values())
        return DownloadProgress(
            files_done=max(0, self.total - self.frontier.statistics().outstanding - c.failed),
            files_failed=c.failed,
            files_total=self.total,
            bytes=c.finished_bytes + live,
            elapsed_s=time.monotonic() - self.started,
            active=active,
        )


def _with_elapsed(record: PageRecord, elapsed_s: float) -> PageRecord:
    d = record.to_json_dict()
    d["elapsed_s"] = round(elapsed_s, 4)
    return PageRecord.from_json_dict(d)


async def run_download(
    job: JobConfig,
    entries: Iterable[ListEntry],
    *,
    checksums: Mapping[str, str] | None = None,
    on_progress: Callable[[DownloadProgress], None] | None = None,
    progress_interval_s: float = 0.5,
    handle_signals: bool = True,
) -> DownloadSummary:
    """Download every listed URL into ``job.output.dir`` (or resume doing so).

    ``checksums`` maps a file name to its expected sha256 (a ``SHA256SUMS`` file); a list
    entry's own ``sha256=`` wins. URLs settled ok by an earlier run are not fetched again;
    those that failed are retried. Raises StateError / ConfigError like ``run_crawl``.
    """
    entries = list(entries)
    root = job.output.dir
    structlog.contextvars.bind_contextvars(job=job.name)
    if job.limits.processes != 1:
        # Downloads are bound by the network and the disk, not by one process's CPU.
        log.warning("download.processes_ignored", processes=job.limits.processes)
    try:
        with (
            Storage(root, layout=job.output.layout) as storage,
            SqliteFrontier(root) as frontier,
        ):
            earlier = {r.url: r for r in frontier.records()}
            storage.rewrite_manifest(earlier.values())
            taken = {u: r.path for u, r in earlier.items() if r.path and r.outcome is Outcome.OK}
            names = assign_names(entries, taken)
            expected = {
                e.url: sha
                for e in entries
                if (sha := e.sha256 or (checksums or {}).get(names[e.url])) is not None
            }
            listed = [e.url for e in entries]
            retry = [u for u in listed if u in earlier and earlier[u].outcome is not Outcome.OK]
            if retry:
                frontier.requeue_settled(retry)
                storage.rewrite_manifest(frontier.records())
            frontier.add(CrawlRequest(u, host_of(u), 0) for u in listed)
            already = sum(1 for u in listed if u in taken)
            log.info(
                "download.start",
                files=len(listed),
                already_done=already,
                retrying=len(retry),
                queued=frontier.statistics().queued,
            )
            parts = PartialFiles(root, buffer_bytes=job.download.chunk_bytes)
            async with Fetcher(job, download=True) as fetcher:
                run = _Download(
                    job, storage, frontier, fetcher, parts, names, expected, len(listed)
                )
                run.stopped_by = await run_workers(
                    run.worker,
                    concurrency=job.limits.concurrency,
                    stop_new_work=run.scheduler.stop,
                    grace_s=job.limits.stop_grace_s,
                    handle_signals=handle_signals,
                    report=None if on_progress is None else lambda: on_progress(run.progress()),
                    interval_s=progress_interval_s,
                    event="download",
                )
            summary = _summary(run, already)
    finally:
        structlog.contextvars.unbind_contextvars("job")
    log.info(
        "download.finished",
        files=summary.files,
        ok=summary.ok,
        failed=len(summary.failures),
        bytes=summary.bytes,
        mb_per_s=round(summary.mb_per_s, 1),
        queued_left=summary.queued_left,
        stopped_by=summary.stopped_by,
    )
    return summary


def _summary(run: _Download, already: int) -> DownloadSummary:
    c = run.counters
    left = run.frontier.statistics().outstanding
    if run.stopped_by is not None:
        exit_code = SIGNAL_EXIT[run.stopped_by]
    else:
        exit_code = 1 if c.failures or left else 0
    return DownloadSummary(
        name=run.job.name,
        files=c.files,
        ok=c.ok,
        bytes=c.finished_bytes,
        elapsed_s=time.monotonic() - run.started,
        outcomes=dict(c.outcomes),
        http_versions=dict(c.versions),
        failures=tuple(c.failures),
        already_done=already,
        queued_left=left,
        manifest=run.storage.manifest_path,
        stopped_by=run.stopped_by,
        exit_code=exit_code,
    )
