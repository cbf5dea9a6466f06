"""When each URL may go: per-host slots, global concurrency, per-host pacing.

Owns: a bounded window of leased requests per host (refilled from the frontier in small
batches, so memory does not grow with the queue), per-host concurrency, per-host pacing (a
minimum spacing of 1/rate between request starts, the GCRA form of a token bucket), and handing a
worker the next request of *some* host that can go now, round-robin across hosts. A worker is
never handed a request it would have to sleep on while another host could go.

Split: the decisions (:class:`HostPacer`, :meth:`Scheduler.pick_nowait`) are synchronous and
take ``now``; the async shell (:meth:`Scheduler.wait_next`) only waits.
Must not: fetch, store or know about HTTP. It sees the frontier only through :class:`Frontier`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import anyio

from crawler.models import CrawlRequest

__all__ = ["Frontier", "HostPacer", "Scheduler", "SchedulerStats"]


class Frontier(Protocol):
    """What the scheduler needs of a frontier backend."""

    def hosts(self) -> list[str]: ...
    def lease(self, host: str, limit: int, now: float) -> list[CrawlRequest]: ...
    def unlease(self, requests: list[CrawlRequest]) -> None: ...
    @property
    def outstanding(self) -> int: ...


@dataclass(eq=False, slots=True)
class HostPacer:
    """Spacing of request starts to one host: at most ``rate`` per second, ``burst`` at once.

    Generic cell rate algorithm: ``tat`` is the theoretical arrival time of the next start.
    Pure: every method takes ``now``.
    """

    rate: float
    burst: int = 1
    tat: float = 0.0

    def delay(self, now: float) -> float:
        """Seconds until a start is allowed (0 when it is allowed now)."""
        allowed_at = self.tat - (self.burst - 1) / self.rate
        return max(0.0, allowed_at - now)

    def take(self, now: float) -> None:
        """Record a start at ``now`` (callers check :meth:`delay` first)."""
        self.tat = max(self.tat, now) + 1.0 / self.rate


@dataclass(eq=False, slots=True)
class _Slot:
    host: str
    pacer: HostPacer
    window: deque[CrawlRequest] = field(default_factory=deque)
    in_flight: int = 0


@dataclass(frozen=True, slots=True)
class SchedulerStats:
    hosts: int
    windowed: int
    in_flight: int
    waiting_workers: int


class Scheduler:
    """Hands requests to workers. Create one per crawl; not thread-safe (one event loop).

    A worker calls :meth:`wait_next` (None means: the crawl is over or stopping), fetches, lets
    the engine settle the result, then calls :meth:`release`.
    """

    def __init__(
        self,
        frontier: Frontier,
        *,
        concurrency: int,
        per_host_concurrency: int,
        per_host_rate: float,
        clock: Callable[[], float] = anyio.current_time,
    ) -> None:
        self._frontier = frontier
        self._concurrency = concurrency
        self._per_host = per_host_concurrency
        self._rate = per_host_rate
        self._clock = clock
        self._slots: dict[str, _Slot] = {}
        self._order: deque[str] = deque()  # hosts with windowed requests, round-robin
        self._windowed = 0
        self._in_flight = 0
        # A host's window holds enough for its concurrency and a little more; the whole window
        # is bounded by the global concurrency, so memory is O(concurrency), not O(queue).
        self._host_window = max(2, 2 * per_host_concurrency)
        self._window_cap = max(self._host_window, 2 * concurrency)
        self._waiters: deque[anyio.Event] = deque()
        self._stopping = False

    def __repr__(self) -> str:
        s = self.statistics()
        return (
            f"<Scheduler hosts={s.hosts} windowed={s.windowed} in_flight={s.in_flight} "
            f"waiting={s.waiting_workers}{' stopping' if self._stopping else ''}>"
        )

    def statistics(self) -> SchedulerStats:
        return SchedulerStats(len(self._slots), self._windowed, self._in_flight, len(self._waiters))

    # -- decisions (sync, take now) ---------------------------------------------------------

    def _slot(self, host: str) -> _Slot:
        slot = self._slots.get(host)
        if slot is None:
            slot = self._slots[host] = _Slot(host, HostPacer(self._rate))
        return slot

    def _refill(self, now: float) -> None:
        """Lease from the frontier for hosts whose window is short, within the window cap."""
        if self._windowed >= self._window_cap:
            return
        for host in self._frontier.hosts():
            existing = self._slots.get(host)
            have = len(existing.window) if existing is not None else 0
            if have > self._host_window // 2:
                continue  # enough for now: lease in batches, not a row at a time
            want = min(self._host_window - have, self._window_cap - self._windowed)
            if want <= 0:
                continue
            leased = self._frontier.lease(host, want, now)
            if leased:
                slot = self._slot(host)
                if not slot.window:
                    self._order.append(host)
                slot.window.extend(leased)
                self._windowed += len(leased)
            if self._windowed >= self._window_cap:
                break

    def pick_nowait(self, now: float) -> CrawlRequest | float | None:
        """The next request that may start at ``now``, marked started.

        Otherwise the seconds until a windowed request could start by pacing alone (a float),
        or None when no windowed request is waiting only on time (all blocked on concurrency,
        or nothing windowed).
        """
        if self._stopping or self._in_flight >= self._concurrency:
            return None
        if not self._order or self._windowed < self._window_cap // 2:
            self._refill(now)
        soonest: float | None = None
        for _ in range(len(self._order)):
            host = self._order[0]
            self._order.rotate(-1)
            slot = self._slots[host]
            if slot.in_flight >= self._per_host:
                continue
            wait = slot.pacer.delay(now)
            if wait > 0:
                soonest = wait if soonest is None else min(soonest, wait)
                continue
            request = slot.window.popleft()
            self._windowed -= 1
            if not slot.window:
                self._order.remove(host)
            slot.pacer.take(now)
            slot.in_flight += 1
            self._in_flight += 1
            return request
        return soonest

    @property
    def finished(self) -> bool:
        """True when there is nothing left: nothing queued, windowed or in flight."""
        return self._frontier.outstanding == 0 and self._in_flight == 0

    # -- async shell -----------------------------------------------------------------------

    def _wake(self, n: int = 1) -> None:
        for _ in range(min(n, len(self._waiters))):
            self._waiters.popleft().set()

    async def wait_next(self) -> CrawlRequest | None:
        """Wait until some host can go and return its next request; None when the crawl is
        finished or stopping. The caller must :meth:`release` a returned request."""
        while True:
            now = self._clock()
            got = self.pick_nowait(now)
            if isinstance(got, CrawlRequest):
                if self._order and self._waiters:
                    self._wake()  # more may be ready: pass the turn on
                return got
            if self._stopping or self.finished:
                self._wake(len(self._waiters))
                return None
            event = anyio.Event()
            self._waiters.append(event)
            # got is a float: the soonest pacing delay; else wait for a release or new work.
            with anyio.move_on_after(got if got is not None else None):
                await event.wait()
            if not event.is_set():
                self._waiters.remove(event)

    def release(self, request: CrawlRequest) -> None:
        """A request handed out by :meth:`wait_next` is finished (settled or given up)."""
        slot = self._slots[request.host]
        slot.in_flight -= 1
        self._in_flight -= 1
        if slot.in_flight == 0 and not slot.window and slot.pacer.delay(self._clock()) == 0:
            # Forget idle hosts whose spacing has passed: memory is O(active hosts).
            del self._slots[request.host]
        self._wake()

    def stop(self) -> None:
        """Hand out nothing more; windowed requests go back to the frontier."""
        self._stopping = True
        leftover = [r for slot in self._slots.values() for r in slot.window]
        for slot in self._slots.values():
            slot.window.clear()
        self._order.clear()
        self._windowed = 0
        self._frontier.unlease(leftover)
        self._wake(len(self._waiters))
