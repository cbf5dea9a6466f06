"""The crawl engine: the only module that knows every stage and wires them together.

One URL's path (the numbers match the code below):

1. **Admit.** Seeds, and later each page's links, are canonicalized (``urls``), checked against
   the job's scope, and offered to the **frontier**, which admits each canonical URL once, within
   the page budget, durably (SQLite).
2. **Schedule.** A worker asks the **scheduler** for the next request. The scheduler leases
   small batches per host from the frontier and hands out a request of whichever host may go now
   (per-host concurrency and pacing, global concurrency), round-robin across hosts. A host's
   first request is its robots.txt (:meth:`_Crawl.fetch_robots` gives the scheduler the rules);
   a URL robots.txt forbids is handed out flagged and recorded ``robots_disallowed`` unfetched.
3. **Fetch.** The **fetcher** GETs the URL through the one ``AsyncClient`` and streams a 2xx body
   into a temp file from **storage**, under a byte cap and a total deadline. Steps 3-5 up to
   the links' raw URLs are the fetch stage (``workers``): in this process, or with
   ``limits.processes`` > 1 in fetch worker processes (each with its own client), while this
   process stays the one coordinator of state, scheduling, politeness and commits. Whatever happens
   comes back as an outcome value. The host's throttle hears how it went (``politeness``); a
   transient failure with attempts left goes back to the frontier with a not-before time
   (backoff, or the host's Retry-After pause) and ends here.
4. **Store.** On success storage renames the finished, hashed body into place; otherwise the
   temp file is dropped, so a partial body is never presented as done.
5. **Extract.** For an HTML page, **extract** turns the body into links; for a sitemap,
   ``sitemaps`` does. A redirect's Location is one link of the same depth, carrying the chain
   of URLs that led to it (loops and hop limits end there). Each link passes scope and the trap
   limits (a trapped one is recorded ``trap``). Back to 1.
6. **Settle.** The **committer** makes the URL done: the frontier marks it done with its
   manifest record, admits its links and records its trapped links in one transaction; storage
   appends the records to ``manifest.jsonl``; then the worker releases its slot in the
   scheduler. With ``durability: power`` settles are grouped: the batch's bodies and folders are
   fsynced (in a thread), then one transaction commits the batch, and only then are its URLs
   done.

A recrawl (``recrawl=True``) queues every settled URL again; each is fetched with
``If-None-Match`` / ``If-Modified-Since`` from its last record, and a 304 keeps the stored body
(outcome ``not_modified``).

The crawl is finished when the frontier's outstanding work (queued + leased) reaches zero and
no request is in flight, not when the queue is momentarily empty. SIGINT / SIGTERM stop new work,
let in-flight requests finish within the grace period, and leave the state resumable.

Resources (storage, frontier, fetcher) are opened outside the task group that uses them, so
workers stop before anything closes. Every task lives in the engine's one task group.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import anyio
import anyio.lowlevel
import structlog

from crawler.committer import Committer, GroupCommit
from crawler.config import JobConfig
from crawler.errors import CrawlerError
from crawler.fetcher import Fetcher
from crawler.frontier import SqliteFrontier
from crawler.models import CrawlRequest, FetchResult, Outcome, PageRecord, RequestKind
from crawler.politeness import backoff_delay, is_overload, is_retryable, plan_retry
from crawler.robots import RobotsRules, agent_token, rules_from_response
from crawler.runner import SIGNAL_EXIT, run_workers
from crawler.scheduler import Scheduler
from crawler.sitemaps import SitemapLinks
from crawler.storage import Storage
from crawler.urls import (
    CanonicalURL,
    QueryPolicy,
    Scope,
    ScopeVerdict,
    TrapLimits,
    canonical_parts,
    canonicalize,
    hostname_of,
    origin_of,
)
from crawler.workers import FetchStage, LocalStage, PageJob, PageReply, WorkerPool, worker_count

__all__ = ["CrawlProgress", "CrawlSummary", "run_crawl"]

log = structlog.get_logger()

_SEED_BATCH = 10_000


@dataclass(frozen=True, slots=True)
class CrawlProgress:
    """A snapshot for progress displays."""

    done: int
    queued: int
    in_flight: int
    errors: int
    bytes: int
    elapsed_s: float


@dataclass(frozen=True, slots=True)
class CrawlSummary:
    """What a crawl run did. ``pages`` counts URLs settled in this run."""

    name: str
    pages: int
    bytes: int
    outcomes: dict[str, int]
    http_versions: dict[str, int]
    filtered: dict[str, int]
    elapsed_s: float
    queued_left: int
    manifest: Path
    stopped_by: str | None = None  # "SIGINT" / "SIGTERM" when a signal ended the run
    exit_code: int = 0
    retries: int = 0  # requests that failed transiently and went back for another attempt

    @property
    def pages_per_s(self) -> float:
        return self.pages / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def complete(self) -> bool:
        return self.stopped_by is None and self.queued_left == 0


@dataclass(frozen=True, slots=True)
class _Settled:
    """A finished URL waiting for its commit."""

    request: CrawlRequest
    record: PageRecord
    links: list[CrawlRequest]
    refused: list[tuple[CrawlRequest, PageRecord]]  # trapped links, recorded with the page


def _conditional_headers(previous: PageRecord | None) -> dict[str, str] | None:
    """If-None-Match / If-Modified-Since from a stored body's validators (None: nothing)."""
    if previous is None or previous.outcome not in (Outcome.OK, Outcome.NOT_MODIFIED):
        return None
    headers = {}
    if previous.etag:
        headers["If-None-Match"] = previous.etag
    if previous.last_modified:
        headers["If-Modified-Since"] = previous.last_modified
    return headers or None


def _revalidated(
    record: PageRecord, result: FetchResult, previous: PageRecord | None
) -> PageRecord:
    """The record with the body's validators; a 304 to a conditional GET keeps the previous
    body (path, size, sha256) as ``not_modified``."""
    headers = {k.lower(): v for k, v in result.headers}
    if _conditional_headers(previous) is not None and result.status == 304:
        assert previous is not None
        return replace(
            previous,
            outcome=Outcome.NOT_MODIFIED,
            status=304,
            depth=record.depth,
            http_version=record.http_version,
            elapsed_s=record.elapsed_s,
            error=None,
            etag=headers.get("etag", previous.etag),
            last_modified=headers.get("last-modified", previous.last_modified),
        )
    if record.outcome is Outcome.OK:
        return replace(record, etag=headers.get("etag"), last_modified=headers.get("last-modified"))
    return record


@dataclass(eq=False)
class _Counters:
    pages: int = 0
    bytes: int = 0
    errors: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)
    filtered: Counter[str] = field(default_factory=Counter)
    retries: int = 0


class _MemorySink:
    """Keeps the first ``cap`` bytes of a small body (robots.txt); the rest is dropped."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.parts: list[bytes] = []
        self.size = 0

    def write(self, chunk: bytes) -> None:
        if self.size < self.cap:
            piece = chunk[: self.cap - self.size]
            self.parts.append(piece)
            self.size += len(piece)

    def data(self) -> bytes:
        return b"".join(self.parts)

    def opener(self) -> _MemorySink:
        """As the fetcher's ``open_sink``: this sink."""
        return self


_ROBOTS_MAX_REDIRECTS = 5  # RFC 9309 2.3.1.2
_REFUSED = list[tuple[CrawlRequest, PageRecord]]


class _Crawl:
    """One run of a job: holds the opened resources and the per-URL pipeline."""

    def __init__(
        self,
        job: JobConfig,
        storage: Storage,
        frontier: SqliteFrontier,
        fetcher: Fetcher,
    ) -> None:
        self.job = job
        self.storage = storage
        self.frontier = frontier
        self.fetcher = fetcher  # robots.txt; pages go through ``stage``
        # 3.-5. for pages: in this process, or a WorkerPool (``limits.processes``)
        self.stage: FetchStage = LocalStage(job, fetcher, storage)
        self.policy = QueryPolicy(job.scope.query, job.scope.strip_params)
        self.scope = Scope(
            job.scope.domains or job.seed_hosts(),
            subdomains=job.scope.subdomains,
            include=job.scope.include,
            exclude=job.scope.exclude,
            max_depth=job.scope.max_depth,
        )
        t = job.traps
        self.traps = TrapLimits(
            max_url_length=t.max_url_length,
            max_path_segments=t.max_path_segments,
            max_segment_repeats=t.max_segment_repeats,
            max_per_pattern=t.max_per_pattern,
        )
        self.scheduler = Scheduler(
            frontier,
            concurrency=job.limits.concurrency,
            per_host_concurrency=job.limits.per_host.concurrency,
            per_host_rate=job.limits.per_host.rate,
            robots=job.robots.obey,
            adaptive=job.limits.per_host.adaptive,
        )
        self.agent = agent_token(job.http.user_agent)
        self.retry_statuses = frozenset(job.retries.statuses)
        self.rng = random.Random()  # noqa: S311 - jitter, not security
        self.robots_failures: Counter[str] = Counter()
        self.robots_notes: dict[str, str] = {}  # host -> why all of it is disallowed
        self.counters = _Counters()
        self.started = time.monotonic()
        self.stopped_by: str | None = None
        # Read once: a recrawl pass cannot begin mid-run, so per-URL lookups are needed only
        # when it was unfinished at the start.
        self.recrawl = frontier.recrawling
        power = job.output.durability == "power"
        self.committer: Committer[_Settled] = Committer(
            self.commit_batch,
            sync=self.sync_batch if power else None,
            # Grouped either way: one transaction (and one write of the state's touched
            # pages) for several settles. ``power`` closes batches sooner: its fsyncs are the
            # cost that grows with waiting pages.
            grouped=True,
            active=lambda: self.scheduler.in_flight - self.committer.waiting,
            policy=GroupCommit(
                max_items=max(64, 2 * job.limits.concurrency),
                max_delay_s=0.005 if power else 0.02,
            ),
        )

    # 1. admit ---------------------------------------------------------------------------

    def admissible(
        self,
        url: str,
        depth: int,
        chain: tuple[str, ...] = (),
        kind: RequestKind = RequestKind.PAGE,
    ) -> CrawlRequest | None:
        """A request for ``url`` if it canonicalizes and is in scope, else None (counted)."""
        found = self.in_scope(url, depth)
        return None if found is None else CrawlRequest(found.url, found.host, depth, chain, kind)

    def in_scope(self, url: str, depth: int) -> CanonicalURL | None:
        """``url``'s canonical form and parts if it is an http(s) URL in scope (else counted)."""
        found = canonical_parts(url, self.policy)
        if found is None:
            self.counters.filtered["not_http"] += 1
            return None
        verdict = self.scope.check(found.url, depth, found.hostname)
        if verdict is not ScopeVerdict.IN:
            self.counters.filtered[verdict.value] += 1
            return None
        return found

    def admit(
        self,
        urls: Iterable[str],
        depth: int,
        *,
        chain: tuple[str, ...] = (),
        kind: RequestKind = RequestKind.PAGE,
    ) -> tuple[list[CrawlRequest], _REFUSED]:
        """Requests for the in-scope URLs, and trap records for those a trap limit cuts off."""
        requests: list[CrawlRequest] = []
        refused: _REFUSED = []
        for url in urls:
            found = self.in_scope(url, depth)
            if found is None:
                continue
            request = CrawlRequest(found.url, found.host, depth, chain, kind)
            reason = self.traps.check(found.url, found.path)
            if reason is None:
                requests.append(request)
            else:
                refused.append((request, self.trap_record(request, reason)))
        if self.traps.max_per_pattern is not None and requests:
            # Only URLs new to the crawl count against their pattern's budget.
            new = self.frontier.unknown([r.url for r in requests])
            kept = []
            for request in requests:
                reason = self.traps.charge(request.url) if request.url in new else None
                if reason is None:
                    kept.append(request)
                else:
                    refused.append((request, self.trap_record(request, reason)))
            requests = kept
        return requests, refused

    def trap_record(self, request: CrawlRequest, reason: str) -> PageRecord:
        log.debug("url.trap", url=request.url, reason=reason)
        return PageRecord(
            url=request.url,
            final_url=request.url,
            outcome=Outcome.TRAP,
            depth=request.depth,
            error=reason,
            attempts=0,
        )

    async def add_seeds(self) -> None:
        """Admit the seeds, streamed in batches (a seeds file of millions of URLs never sits in
        memory), yielding between batches so SIGINT / SIGTERM stop a long seeding too: the
        seeds not yet admitted are admitted by the re-run (admission is idempotent)."""
        log.info("crawl.seeding", seeds=self.job.seed_count())
        requests: list[CrawlRequest] = []
        admitted = 0
        origins: dict[str, None] = {}  # for sitemap probes: the seeds' first hosts
        for seed in self.job.iter_seeds():
            request = self.admissible(seed, 0)
            if request is None:
                log.warning("seed.out_of_scope", url=seed)
            else:
                requests.append(request)
                if len(origins) < _SEED_BATCH:
                    origins.setdefault(origin_of(request.url))
            if len(requests) >= _SEED_BATCH:
                admitted += self.frontier.add(requests)
                requests.clear()
                await anyio.lowlevel.checkpoint()  # let the signal watcher run
                if self.scheduler.stopping:
                    log.warning("crawl.seeding_stopped", admitted=admitted)
                    return
        if self.job.sitemaps.enabled and self.job.sitemaps.probe:
            found, _ = self.admit(
                (o + "/sitemap.xml" for o in origins), 0, kind=RequestKind.SITEMAP
            )
            requests.extend(found)
        admitted += self.frontier.add(requests)
        log.info("crawl.seeded", seeds=self.job.seed_count(), admitted=admitted)

    # 2.-6. one URL ----------------------------------------------------------------------

    async def worker(self) -> None:
        scheduler = self.scheduler
        while (request := await scheduler.wait_next()) is not None:
            try:
                if request.kind is RequestKind.ROBOTS:
                    await self.fetch_robots(request)
                elif scheduler.take_disallowed(request):
                    record = self.disallowed_record(request)
                    await self.committer.submit(_Settled(request, record, [], []))
                else:
                    await self.process(request)
            finally:
                scheduler.release(request)

    async def process(self, request: CrawlRequest) -> None:
        hostname = hostname_of(request.url)
        # Credentials go to the scope's hosts only, and never to another host than the one
        # first asked when redirects led here.
        send_auth = self.scope.host_allowed(hostname) and (
            not request.chain or hostname_of(request.chain[0]) == hostname
        )
        previous = self.frontier.previous_record(request.url) if self.recrawl else None
        # 3. fetch, 4. store, 5. read the links (a failed fetch keeps no body)
        reply = await self.stage.fetch_page(
            PageJob(request.url, request.kind, send_auth, _conditional_headers(previous))
        )
        if self.should_retry(request, reply.result):
            return
        # 5. admit the links
        record, links, refused = self.record_and_admit(request, reply)
        record = _revalidated(record, reply.result, previous)
        # 6. settle: returns once the record is committed (with ``power``: once its batch is)
        await self.committer.submit(_Settled(request, record, links, refused))

    def sync_batch(self, batch: list[_Settled]) -> None:
        """Durability ``power``: fsync the batch's placed bodies and their folders (blocking;
        the committer runs it in a thread, before :meth:`commit_batch`)."""
        self.storage.sync([s.record.path for s in batch if s.record.path is not None])

    def commit_batch(self, batch: list[_Settled]) -> None:
        """Settle a batch in one state transaction; then manifest lines and counts."""
        lines = [s.record.to_json() for s in batch]  # the state and the manifest share it
        with self.frontier.transaction():
            trapped = [
                self.frontier.settle(s.request, s.record, s.links, s.refused, payload=line)
                for s, line in zip(batch, lines, strict=True)
            ]
        for s, line, recorded in zip(batch, lines, trapped, strict=True):
            self.storage.append(s.record, line)
            for record in recorded:  # only URLs recorded now: one manifest line per URL
                self.storage.append(record)
                self.counters.filtered["trap"] += 1
            self.count(s.record)

    def should_retry(self, request: CrawlRequest, result: FetchResult) -> bool:
        """Feed the host's throttle; on a retryable failure with attempts left, send the URL
        back to the frontier with a not-before time (and pause the host on Retry-After)."""
        now = anyio.current_time()
        host = request.host
        overloaded = is_overload(result.outcome, result.status)
        if self.scheduler.feedback(host, now, result.elapsed_s, overloaded):
            log.info("host.throttled", host=host, stats=self.scheduler.host_statistics(host))
        plan = plan_retry(
            retryable=is_retryable(result.outcome, result.status, self.retry_statuses),
            status=result.status,
            retry_after=result.header("retry-after"),
            attempt=request.attempts + 1,
            retries=self.job.retries,
            now_wall=time.time(),
            rng=self.rng,
        )
        if plan.pause_s is not None:
            self.scheduler.pause(host, now + plan.pause_s)
            log.info("host.paused", host=host, seconds=round(plan.pause_s, 3), status=result.status)
        if plan.delay_s is None:
            return False
        self.frontier.retry(request, now + plan.delay_s)
        self.counters.retries += 1
        log.info(
            "fetch.retry",
            url=request.url,
            attempt=request.attempts + 1,
            outcome=result.outcome.value,
            status=result.status,
            delay_s=round(plan.delay_s, 3),
            error=result.error,
        )
        return True

    def record_and_admit(
        self, request: CrawlRequest, reply: PageReply
    ) -> tuple[PageRecord, list[CrawlRequest], _REFUSED]:
        """The record of a fetched page, and its links admitted (scope, traps, redirects)."""
        result, stored = reply.result, reply.stored
        outcome, error = result.outcome, result.error
        final_url = request.url
        links: list[CrawlRequest] = []
        refused: _REFUSED = []
        if reply.sitemap is not None:
            links, refused, error = self.read_sitemap(request, reply.sitemap)
        elif reply.links:
            links, refused = self.admit(reply.links, request.depth + 1)
        if outcome is Outcome.REDIRECT and result.location is not None:
            final_url = result.location
            outcome, error, links, refused = self.follow_redirect(request, result.location)
        record = PageRecord(
            url=request.url,
            final_url=final_url,
            outcome=outcome,
            depth=request.depth,
            status=result.status,
            content_type=result.content_type,
            bytes=stored.size if stored else 0,
            sha256=stored.sha256 if stored else None,
            path=stored.path if stored else None,
            http_version=result.http_version,
            elapsed_s=round(result.elapsed_s, 4),
            error=error,
            origin=request.chain[0] if request.chain else None,
            attempts=request.attempts + 1,
        )
        return record, links, refused

    def follow_redirect(
        self, request: CrawlRequest, location: str
    ) -> tuple[Outcome, str | None, list[CrawlRequest], _REFUSED]:
        """One redirect hop: checked against the chain (loops), the hop limit, scope and traps;
        when it passes, the target goes back to the frontier at the same depth (robots.txt is
        checked when it is scheduled). The target is then known, so it is never fetched twice.
        """
        target = canonicalize(location, self.policy)
        chain = (*request.chain, request.url)
        if target is None:
            return Outcome.REDIRECT, "not followed: not an http(s) URL", [], []
        if target in chain:
            return Outcome.REDIRECT_LOOP, f"redirect loop back to {target}", [], []
        if len(chain) > self.job.http.max_redirects:
            return (
                Outcome.TOO_MANY_REDIRECTS,
                f"more than {self.job.http.max_redirects} redirects",
                [],
                [],
            )
        verdict = self.scope.check(target, request.depth)
        if verdict is not ScopeVerdict.IN:
            self.counters.filtered[verdict.value] += 1
            return Outcome.REDIRECT, f"not followed: {verdict.value}", [], []
        links, refused = self.admit([target], request.depth, chain=chain, kind=request.kind)
        return Outcome.REDIRECT, None, links, refused

    def read_sitemap(
        self, request: CrawlRequest, found: SitemapLinks
    ) -> tuple[list[CrawlRequest], _REFUSED, str | None]:
        pages, refused = self.admit(found.pages, request.depth)
        nested, refused_more = self.admit(found.sitemaps, request.depth, kind=RequestKind.SITEMAP)
        log.info(
            "sitemap.read",
            url=request.url,
            pages=len(found.pages),
            sitemaps=len(found.sitemaps),
            error=found.error,
        )
        return pages + nested, refused + refused_more, found.error

    # robots.txt -------------------------------------------------------------------------

    def disallowed_record(self, request: CrawlRequest) -> PageRecord:
        return PageRecord(
            url=request.url,
            final_url=request.url,
            outcome=Outcome.ROBOTS_DISALLOWED,
            depth=request.depth,
            error=self.robots_notes.get(request.host, "disallowed by robots.txt"),
            origin=request.chain[0] if request.chain else None,
            attempts=0,
        )

    async def fetch_robots(self, request: CrawlRequest) -> None:
        """Fetch a host's robots.txt (following up to 5 redirects) and give the scheduler its
        verdict: rules, or a block until the next try when it is unreachable."""
        cfg = self.job.robots
        url = request.url
        rules: RobotsRules | None = None
        for _ in range(_ROBOTS_MAX_REDIRECTS + 1):
            sink = _MemorySink(cfg.max_bytes)
            result = await self.fetcher.fetch(url, sink.opener, max_bytes=cfg.max_bytes * 4)
            if result.outcome is not Outcome.REDIRECT or result.location is None:
                break
            url = result.location
        else:
            rules = RobotsRules.allow_all(self.agent, result.status)  # too many redirects
        if rules is None:
            answered = result.outcome in (Outcome.OK, Outcome.HTTP_ERROR, Outcome.TOO_LARGE)
            rules = rules_from_response(
                self.agent,
                result.status if answered else None,
                sink.data(),
                max_bytes=cfg.max_bytes,
            )
        now = anyio.current_time()
        host = request.host
        if rules.unreachable:
            failures = self.robots_failures[host] = self.robots_failures[host] + 1
            why = f"HTTP {result.status}" if result.status else (result.error or "no answer")
            r = self.job.retries
            if failures < r.attempts:
                delay = backoff_delay(failures, r.backoff_base_s, r.backoff_max_s, self.rng)
                self.scheduler.block(host, now + delay)
                log.warning("robots.unreachable", host=host, error=why, retry_in_s=round(delay, 3))
                return
            self.robots_notes[host] = f"robots.txt unreachable ({why}) after {failures} attempts"
            log.warning("robots.gave_up", host=host, error=why, attempts=failures)
        else:
            self.robots_failures.pop(host, None)
            self.robots_notes.pop(host, None)
        crawl_delay = min(rules.crawl_delay_s() or 0.0, self.job.limits.per_host.crawl_delay_max_s)
        allow_all = not rules.unreachable and rules.status is not None and rules.status >= 400
        self.scheduler.set_rules(
            host,
            None if allow_all else rules.allowed,
            crawl_delay_s=crawl_delay,
            until=now + cfg.cache_s,
        )
        sitemaps = rules.sitemaps()
        log.info(
            "robots.loaded",
            host=host,
            status=rules.status,
            crawl_delay_s=crawl_delay or None,
            sitemaps=len(sitemaps),
        )
        if sitemaps and self.job.sitemaps.enabled:
            found, _ = self.admit(sitemaps, 0, kind=RequestKind.SITEMAP)
            self.frontier.add(found)

    def count(self, record: PageRecord) -> None:
        c = self.counters
        c.pages += 1
        c.bytes += record.bytes
        c.outcomes[record.outcome.value] += 1
        if record.http_version:
            c.versions[record.http_version] += 1
        if record.outcome not in (Outcome.OK, Outcome.REDIRECT, Outcome.NOT_MODIFIED):
            c.errors += 1
        log.info(
            "fetch.done",
            url=record.url,
            status=record.status,
            outcome=record.outcome.value,
            bytes=record.bytes,
            elapsed_s=record.elapsed_s,
            depth=record.depth,
            error=record.error,
        )

    # control ----------------------------------------------------------------------------

    def progress(self) -> CrawlProgress:
        stats = self.frontier.statistics()
        c = self.counters
        return CrawlProgress(
            done=c.pages,
            queued=stats.queued,
            in_flight=self.scheduler.in_flight,
            errors=c.errors,
            bytes=c.bytes,
            elapsed_s=time.monotonic() - self.started,
        )

    def summary(self) -> CrawlSummary:
        c = self.counters
        exit_code = 0
        if self.stopped_by is not None:
            exit_code = SIGNAL_EXIT[self.stopped_by]
        return CrawlSummary(
            name=self.job.name,
            pages=c.pages,
            bytes=c.bytes,
            outcomes=dict(c.outcomes),
            http_versions=dict(c.versions),
            filtered=dict(c.filtered),
            elapsed_s=time.monotonic() - self.started,
            queued_left=self.frontier.statistics().outstanding,
            manifest=self.storage.manifest_path,
            stopped_by=self.stopped_by,
            exit_code=exit_code,
            retries=c.retries,
        )


async def run_crawl(
    job: JobConfig,
    *,
    on_progress: Callable[[CrawlProgress], None] | None = None,
    progress_interval_s: float = 0.5,
    handle_signals: bool = True,
    fresh: bool = False,
    recrawl: bool = False,
) -> CrawlSummary:
    """Run (or resume) the job until nothing is left, or until SIGINT / SIGTERM.

    ``fresh``: first forget the output folder's state, manifest and stored bodies (the caller
    has confirmed). ``recrawl``: queue every settled URL again for a conditional GET, unless a
    recrawl pass is already unfinished (then it continues).
    Raises StateError when the output folder's state cannot be used and ConfigError for
    settings that only fail when used (a bad CA bundle); every per-URL failure is a record.
    """
    root = job.output.dir
    structlog.contextvars.bind_contextvars(job=job.name)
    try:
        with (
            Storage(root, layout=job.output.layout) as storage,
            SqliteFrontier(
                root,
                max_pages=job.scope.max_pages,
                level_barrier=job.scope.max_depth is not None,
                durable=job.output.durability == "power",
            ) as frontier,
        ):
            if fresh:
                _forget(storage, frontier)
            if recrawl:
                requeued = frontier.begin_recrawl()
                log.info("crawl.recrawl", requeued=requeued, resumed=requeued == 0)
            # The manifest is derived from committed state: one line per settled URL, even
            # after a run that died between a commit and its manifest line.
            resumed = storage.rewrite_manifest(frontier.records())
            if resumed:
                log.info("crawl.resumed", done=resumed, queued=frontier.statistics().queued)
            async with Fetcher(job) as fetcher, contextlib.AsyncExitStack() as stack:
                crawl = _Crawl(job, storage, frontier, fetcher)
                processes = worker_count(job.limits.processes)
                pool = None
                if processes > 1:
                    # Opened after the state and storage (the coordinator's), closed before.
                    pool = WorkerPool(job, processes, on_failure=crawl.scheduler.stop)
                    crawl.stage = await stack.enter_async_context(pool)
                    log.info("crawl.workers", processes=processes, pids=pool.pids)
                crawl.stopped_by = await run_workers(
                    crawl.worker,
                    concurrency=job.limits.concurrency,
                    stop_new_work=crawl.scheduler.stop,
                    grace_s=job.limits.stop_grace_s,
                    handle_signals=handle_signals,
                    report=None if on_progress is None else lambda: on_progress(crawl.progress()),
                    interval_s=progress_interval_s,
                    background=[crawl.committer.run] if crawl.committer.batched else [],
                    before=crawl.add_seeds,
                    # settles whose workers were cut off by the grace period
                    after=crawl.committer.drain,
                )
            summary = crawl.summary()
            failed = pool.error if pool is not None else None
            if crawl.recrawl:
                if summary.complete:
                    frontier.end_recrawl()
                # Recrawled URLs got a second manifest line this run: back to one per URL.
                storage.rewrite_manifest(frontier.records())
    finally:
        structlog.contextvars.unbind_contextvars("job")
    if failed is not None:
        raise CrawlerError(f"{failed}; the state is saved: re-run to resume")
    log.info(
        "crawl.finished",
        pages=summary.pages,
        bytes=summary.bytes,
        outcomes=summary.outcomes,
        pages_per_s=round(summary.pages_per_s, 1),
        queued_left=summary.queued_left,
        stopped_by=summary.stopped_by,
    )
    return summary


def _forget(storage: Storage, frontier: SqliteFrontier) -> None:
    """``--fresh``: remove the stored bodies the state lists, then the state itself (under the
    state's lock, so no other run of this folder is affected halfway)."""
    removed = storage.remove(r.path for r in frontier.records() if r.path is not None)
    frontier.reset()
    log.warning("crawl.fresh", bodies_removed=removed)
