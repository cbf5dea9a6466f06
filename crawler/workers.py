"""The fetch stage of a crawl: in this process, or in N fetch worker processes.

Owns: the stateless, CPU-heavy part of one page, behind one small seam
(:class:`FetchStage`: a :class:`PageJob` in, a :class:`PageReply` out): GET the URL (HTTP/2,
TLS), stream the body into a temp file, hash it, rename it into place, and read the page's raw
links (HTML) or entries (sitemap). :class:`LocalStage` does it in the crawl's own process and
event loop (the default). :class:`WorkerPool` runs ``processes`` copies of this module
(``python -m crawler.workers``), each with its own event loop, its own one ``Fetcher`` and a
bodies-only view of the output folder, and sends each job to the worker with the fewest in
flight, over a UNIX socket per worker (the worker's stdin) carrying length-prefixed pickles
(between our own processes only).

A worker that dies (killed, crashed) is replaced; its jobs come back as a ``network`` failure,
which the engine retries like any broken connection (so a page that kills its worker every time
ends recorded as failed after its attempts, not in an endless loop). When workers keep dying
(more than ``_MAX_DEATHS`` per process) the pool gives up: every job is answered that way, the
``on_failure`` callback stops new work, and :attr:`WorkerPool.error` says why.

Workers ignore SIGINT / SIGTERM (the coordinator runs the grace period, then closes their
sockets) and exit when their socket reaches EOF, so a coordinator killed with SIGKILL leaves
none behind.
Must not: admit URLs, decide retries, touch the frontier, the manifest, the ``.tmp`` clean-up or
the state lock (the coordinator in ``engine`` owns everything that carries a guarantee).
"""

from __future__ import annotations

import itertools
import os
import pickle
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, Protocol, Self

import anyio
import anyio.abc
import anyio.lowlevel
import structlog

from crawler import logconfig
from crawler.config import JobConfig
from crawler.errors import CrawlerError
from crawler.extract import extract_links, is_html
from crawler.fetcher import Fetcher
from crawler.models import FetchResult, Outcome, RequestKind
from crawler.sitemaps import SitemapLinks, parse_sitemap
from crawler.storage import BodyWriter, Storage, StoredBody

__all__ = [
    "FetchStage",
    "LocalStage",
    "PageJob",
    "PageReply",
    "WorkerPool",
    "fetch_page",
    "main",
    "worker_count",
]

log = structlog.get_logger()

_HEADER = 4  # bytes of the big-endian length before each pickled message
_READ = 1 << 18
_START_TIMEOUT_S = 60.0
_EXIT_TIMEOUT_S = 5.0
_MAX_DEATHS = 4  # per process, before the pool gives up


@dataclass(frozen=True, slots=True)
class PageJob:
    """One page to fetch: what the coordinator decided (auth, conditional headers)."""

    url: str
    kind: RequestKind = RequestKind.PAGE
    send_auth: bool = False
    headers: dict[str, str] | None = None  # If-None-Match / If-Modified-Since of a recrawl


@dataclass(frozen=True, slots=True)
class PageReply:
    """What became of a :class:`PageJob`: the fetch result (``storage`` when the body could not
    be placed), the stored body, and the raw links or sitemap entries it holds (not admitted)."""

    result: FetchResult
    stored: StoredBody | None = None
    links: tuple[str, ...] = ()
    sitemap: SitemapLinks | None = None


class FetchStage(Protocol):
    """The seam: ``fetch_page`` never raises for what the network, the server or a worker does."""

    async def fetch_page(self, page: PageJob) -> PageReply: ...


def worker_count(processes: int) -> int:
    """``limits.processes`` as a number of processes (0: one per CPU)."""
    return processes or os.cpu_count() or 1


async def fetch_page(
    fetcher: Fetcher, storage: Storage, job: JobConfig, page: PageJob
) -> PageReply:
    """Fetch one page, place its body (only a complete 2xx body is kept) and read its links.

    A result that is not OK never keeps a body (so a retryable one leaves nothing behind).
    """
    writer: BodyWriter | None = None

    def open_sink() -> BodyWriter:
        nonlocal writer
        writer = storage.open_body()
        return writer

    try:
        result = await fetcher.fetch(
            page.url, open_sink, send_auth=page.send_auth, headers=page.headers
        )
        if writer is None:
            return PageReply(result)
        body, writer = writer, None
        if result.outcome is not Outcome.OK:
            storage.discard(body)
            return PageReply(result)
        try:
            stored = storage.commit(body, page.url)
        except OSError as exc:
            error = f"cannot store body: {exc}"
            return PageReply(replace(result, outcome=Outcome.STORAGE, error=error))
    except BaseException:
        if writer is not None:
            storage.discard(writer)
        raise
    if page.kind is RequestKind.SITEMAP:
        cfg = job.sitemaps
        data = _body(body, storage, stored, job)
        found = parse_sitemap(data, max_urls=cfg.max_urls, max_bytes=cfg.max_bytes)
        return PageReply(result, stored, sitemap=found)
    if is_html(result.content_type):
        links = extract_links(
            _body(body, storage, stored, job), page.url, assets=job.extract.assets
        )
        return PageReply(result, stored, links=links.urls)
    return PageReply(result, stored)


def _body(writer: BodyWriter, storage: Storage, stored: StoredBody, job: JobConfig) -> bytes:
    data = writer.retained()
    return data if data is not None else storage.read(stored.path, job.limits.max_bytes)


class LocalStage:
    """The fetch stage in this process (no subprocess, no pickling)."""

    def __init__(self, job: JobConfig, fetcher: Fetcher, storage: Storage) -> None:
        self.job = job
        self.fetcher = fetcher
        self.storage = storage

    async def fetch_page(self, page: PageJob) -> PageReply:
        return await fetch_page(self.fetcher, self.storage, self.job, page)


# -- framing ------------------------------------------------------------------------------


def _frame(message: object) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return len(data).to_bytes(_HEADER, "big") + data


class _Channel:
    """Length-prefixed pickles over one socket stream: frames out are batched by one sender
    task (whoever queues a frame never blocks on the socket), frames in are read in bulk."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self._out = bytearray()
        self._more = anyio.Event()
        self._in = bytearray()
        self._pos = 0

    def put(self, message: object) -> None:
        self._out += _frame(message)
        self._more.set()

    async def run_sender(self) -> None:
        """Send queued frames until cancelled or the peer is gone."""
        try:
            while True:
                await self._more.wait()
                # one turn of the loop first: replies (or jobs) made meanwhile go in the same
                # send, so the peer is woken once for several
                await anyio.lowlevel.checkpoint()
                self._more = anyio.Event()
                while self._out:
                    data = bytes(self._out)
                    self._out.clear()
                    await self.stream.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            return  # the peer is gone: its reader side notices

    async def get(self) -> Any:
        """The next message; raises EndOfStream when the peer closed its end."""
        buf = self._in
        while True:
            avail = len(buf) - self._pos
            if avail >= _HEADER:
                size = int.from_bytes(buf[self._pos : self._pos + _HEADER], "big")
                if avail >= _HEADER + size:
                    start = self._pos + _HEADER
                    # our own processes over a socketpair only: never data from the network
                    message = pickle.loads(buf[start : start + size])  # noqa: S301
                    self._pos = start + size
                    return message
            if self._pos:
                del buf[: self._pos]
                self._pos = 0
            buf += await self.stream.receive(_READ)


# -- the worker process -------------------------------------------------------------------


async def _serve(sock: socket.socket) -> None:
    stream = await anyio.abc.UNIXSocketStream.from_socket(sock)
    channel = _Channel(stream)
    job: JobConfig = await channel.get()
    logconfig.configure(job.logging.level, job.logging.format)
    structlog.contextvars.bind_contextvars(job=job.name, worker=os.getpid())
    # Bodies only: the coordinator owns the manifest, the state lock and ``.tmp`` clean-up,
    # so this Storage is never entered.
    storage = Storage(job.output.dir, layout=job.output.layout)

    async def answer(key: int, page: PageJob) -> None:
        channel.put((key, await fetch_page(fetcher, storage, job, page)))

    async with Fetcher(job) as fetcher, anyio.create_task_group() as tg:
        tg.start_soon(channel.run_sender)
        channel.put((0, os.getpid()))  # ready
        try:
            while True:
                key, page = await channel.get()
                tg.start_soon(answer, key, page)
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            pass  # the coordinator is gone or done: stop at once
        tg.cancel_scope.cancel()


def main() -> None:
    """A fetch worker: serve jobs on the socket passed as stdin until it reaches EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock = socket.socket(fileno=sys.stdin.fileno())
    try:
        import uvloop as _  # noqa: F401
    except ImportError:
        options: dict[str, Any] = {}
    else:
        options = {"use_uvloop": True}
    anyio.run(_serve, sock, backend="asyncio", backend_options=options)


# -- the pool (coordinator side) ------------------------------------------------------------


@dataclass(eq=False)
class _Pending:
    done: anyio.Event = field(default_factory=anyio.Event)
    reply: PageReply | None = None


@dataclass(eq=False)
class _Worker:
    process: anyio.abc.Process
    channel: _Channel
    pending: dict[int, _Pending] = field(default_factory=dict)
    alive: bool = True

    @property
    def pid(self) -> int:
        return self.process.pid


def _lost(why: str) -> PageReply:
    return PageReply(FetchResult(Outcome.NETWORK, error=why))


class WorkerPool:
    """``processes`` fetch workers. Use as ``async with WorkerPool(job, n) as pool``.

    ``on_failure`` is called once if the pool gives up (workers keep dying).
    """

    def __init__(
        self, job: JobConfig, processes: int, on_failure: Callable[[], None] | None = None
    ) -> None:
        self.job = job
        self.size = processes
        self.on_failure = on_failure
        self.workers: list[_Worker] = []
        self.deaths = 0
        self.error: str | None = None
        self._keys = itertools.count(1)
        self._tg: anyio.abc.TaskGroup | None = None
        self._available = anyio.Event()

    def __repr__(self) -> str:
        alive = sum(w.alive for w in self.workers)
        return f"<WorkerPool processes={self.size} alive={alive} deaths={self.deaths}>"

    @property
    def pids(self) -> list[int]:
        """The live workers' process ids."""
        return [w.pid for w in self.workers if w.alive]

    async def __aenter__(self) -> Self:
        self._tg = await anyio.create_task_group().__aenter__()
        starting: list[_Worker] = []
        try:
            # All start at once (each imports for most of a second); then each must say ready.
            while len(starting) < self.size:  # kept as they start: killed if one fails
                starting.append(await self._launch())
            for worker in starting:
                await self._ready(worker)
        except BaseException as exc:
            for worker in starting:
                if worker not in self.workers:
                    worker.process.kill()
                    await self._reap(worker)
            await self.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._tg is not None
        tg, self._tg = self._tg, None
        with anyio.CancelScope(shield=True):
            for worker in self.workers:
                worker.alive = False
                await worker.channel.stream.aclose()  # EOF: the worker exits
            for worker in self.workers:
                await self._reap(worker)
        tg.cancel_scope.cancel()
        await tg.__aexit__(None, None, None)

    async def _reap(self, worker: _Worker) -> int | None:
        with anyio.move_on_after(_EXIT_TIMEOUT_S):
            return await worker.process.wait()
        worker.process.kill()
        return await worker.process.wait()

    async def _spawn(self) -> None:
        await self._ready(await self._launch())

    async def _launch(self) -> _Worker:
        """Start a worker process and send it the job (it is not ready yet)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            process = await anyio.open_process(
                [sys.executable, "-m", "crawler.workers"],
                stdin=theirs.fileno(),
                stdout=None,
                stderr=None,
            )
        finally:
            theirs.close()
        channel = _Channel(await anyio.abc.UNIXSocketStream.from_socket(ours))
        worker = _Worker(process, channel)
        channel.put(self.job)
        assert self._tg is not None
        self._tg.start_soon(channel.run_sender)
        return worker

    async def _ready(self, worker: _Worker) -> None:
        """Wait for a launched worker's ready message; then it takes jobs."""
        try:
            with anyio.fail_after(_START_TIMEOUT_S):
                ready = await worker.channel.get()
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError, TimeoutError) as exc:
            if isinstance(exc, TimeoutError):
                worker.process.kill()
            code = await self._reap(worker)
            raise CrawlerError(f"a fetch worker failed to start (exit code {code})") from None
        assert ready[0] == 0
        assert self._tg is not None
        self.workers.append(worker)
        self._tg.start_soon(self._receive, worker)
        self._available.set()
        log.debug("workers.started", pid=worker.pid)

    async def _receive(self, worker: _Worker) -> None:
        try:
            while True:
                key, reply = await worker.channel.get()
                pending = worker.pending.pop(key, None)
                if pending is not None:  # else: its requester was cancelled
                    pending.reply = reply
                    pending.done.set()
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        if not worker.alive:
            return  # closing
        await self._died(worker)

    async def _died(self, worker: _Worker) -> None:
        worker.alive = False
        self.workers.remove(worker)
        self.deaths += 1
        in_flight = len(worker.pending)
        lost = _lost(f"fetch worker {worker.pid} exited")
        for pending in worker.pending.values():  # back to the frontier, retried
            pending.reply = lost
            pending.done.set()
        worker.pending.clear()
        await worker.channel.stream.aclose()
        code = await self._reap(worker)
        why = f"fetch worker {worker.pid} exited (code {code})"
        log.warning("workers.died", pid=worker.pid, exit_code=code, in_flight=in_flight)
        if self.deaths > _MAX_DEATHS * self.size:
            self._give_up(f"fetch workers keep dying ({self.deaths} deaths; last: {why})")
            return
        try:
            await self._spawn()
        except CrawlerError as exc:
            self._give_up(str(exc))

    def _give_up(self, why: str) -> None:
        if self.error is None:
            self.error = why
            log.error("workers.failed", error=why)
            if self.on_failure is not None:
                self.on_failure()
        self._available.set()  # wake waiters: they get a failure

    async def fetch_page(self, page: PageJob) -> PageReply:
        while True:
            if self.error is not None:
                return _lost(self.error)
            live = [w for w in self.workers if w.alive]
            if live:
                break
            if self._available.is_set():
                self._available = anyio.Event()
            await self._available.wait()
        worker = min(live, key=lambda w: len(w.pending))
        key = next(self._keys)
        pending = worker.pending[key] = _Pending()
        try:
            worker.channel.put((key, page))
            await pending.done.wait()
        finally:
            worker.pending.pop(key, None)
        assert pending.reply is not None
        return pending.reply


if __name__ == "__main__":
    # Run the imported module's main, not this ``__main__`` copy: replies must pickle as
    # ``crawler.workers`` classes for the coordinator to load them.
    from crawler.workers import main as _main

    _main()
