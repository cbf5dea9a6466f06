"""When each URL may go: the per-host controller.

Owns, per host: a bounded window of leased requests (refilled from the frontier in small
batches, so memory does not grow with the queue), concurrency (the job's cap, lowered by the
adaptive throttle on overload), pacing (a minimum spacing between request starts: the job's
rate, the host's robots.txt Crawl-delay, the throttle's extra delay; the GCRA form of a token
bucket), the robots.txt gate (the host's first request is its robots.txt; until its rules are in,
nothing else of the host goes; an unreachable robots.txt blocks the host until a later try) and
pauses (``Retry-After``). Across hosts: global concurrency, and handing a worker the next request
of *some* host that can go now, round-robin. A worker is never handed a request it would have to
sleep on while another host could go.

Split: the decisions (:class:`HostPacer`, :meth:`Scheduler.pick_nowait`, the throttle in
``politeness``) are synchronous and take ``now``; the async shell (:meth:`Scheduler.wait_next`)
only waits. Robots rules reach it as an opaque ``allow(url)`` predicate.
Must not: fetch, store or know about HTTP. It sees the frontier only through :class:`Frontier`.
"""

from __future__ import annotations

import enum
import math
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import anyio

from crawler.models import CrawlRequest, RequestKind
from crawler.politeness import Throttle
from crawler.urls import origin_of

__all__ = ["Frontier", "Gate", "HostPacer", "HostStats", "Scheduler", "SchedulerStats"]


class Frontier(Protocol):
    """What the scheduler needs of a frontier backend."""

    def hosts(self, now: float) -> list[str]: ...
    def lease(self, host: str, limit: int, now: float) -> list[CrawlRequest]: ...
    def unlease(self, requests: list[CrawlRequest]) -> None: ...
    def next_due(self) -> float | None: ...
    @property
    def outstanding(self) -> int: ...


class Gate(enum.Enum):
    """A host's robots.txt state."""

    NEEDED = "needed"  # rules unknown or expired: the next request is robots.txt
    FETCHING = "fetching"  # robots.txt in flight: nothing else of the host goes
    READY = "ready"  # rules in (until they expire)
    BLOCKED = "blocked"  # robots.txt unreachable: nothing goes until ``gate_until``


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

    def take(self, now: float, min_interval_s: float = 0.0) -> None:
        """Record a start at ``now`` (callers check :meth:`delay` first); the next start is
        spaced by 1/rate, or by ``min_interval_s`` when that is longer (Crawl-delay)."""
        self.tat = max(self.tat, now) + max(1.0 / self.rate, min_interval_s)


@dataclass(eq=False, slots=True)
class _Host:
    host: str
    pacer: HostPacer
    throttle: Throttle | None
    gate: Gate
    gate_until: float = math.inf  # READY: rules expire; BLOCKED: next robots.txt try
    allow: Callable[[str], bool] | None = None
    crawl_delay_s: float = 0.0
    paused_until: float = 0.0
    window: deque[CrawlRequest] = field(default_factory=deque)
    in_flight: int = 0

    def interval(self) -> float:
        extra = self.throttle.delay_s if self.throttle is not None else 0.0
        return max(self.crawl_delay_s, extra)


@dataclass(frozen=True, slots=True)
class SchedulerStats:
    hosts: int
    windowed: int
    in_flight: int
    waiting_workers: int
    paused_hosts: int


@dataclass(frozen=True, slots=True)
class HostStats:
    """One host's controller state, for logs and tests."""

    gate: Gate
    in_flight: int
    windowed: int
    concurrency: int
    interval_s: float
    paused_until: float


class Scheduler:
    """Hands requests to workers. Create one per crawl; not thread-safe (one event loop).

    A worker calls :meth:`wait_next` (None means: the crawl is over or stopping). A request of
    kind ``ROBOTS`` is the host's robots.txt: the engine fetches it and calls
    :meth:`set_rules` or :meth:`block`. For any other request it first asks
    :meth:`take_disallowed`; then fetches, settles or retries, reports :meth:`feedback`, and
    finally calls :meth:`release`.
    """

    def __init__(
        self,
        frontier: Frontier,
        *,
        concurrency: int,
        per_host_concurrency: int,
        per_host_rate: float,
        robots: bool = False,
        adaptive: bool = False,
        max_hosts: int = 10_000,
        clock: Callable[[], float] = anyio.current_time,
    ) -> None:
        self._frontier = frontier
        self._concurrency = concurrency
        self._per_host = per_host_concurrency
        self._rate = per_host_rate
        self._robots = robots
        self._adaptive = adaptive
        self._max_hosts = max_hosts
        self._clock = clock
        # Every host seen recently, least recently used first: robots rules, pacing, throttle
        # and pauses outlive a host's window. Idle hosts beyond max_hosts are forgotten.
        self._hosts: OrderedDict[str, _Host] = OrderedDict()
        self._order: deque[str] = deque()  # hosts with windowed requests, round-robin
        self._windowed = 0
        self._in_flight = 0
        self._disallowed: set[str] = set()
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
            f"paused={s.paused_hosts} waiting={s.waiting_workers}"
            f"{' stopping' if self._stopping else ''}>"
        )

    def statistics(self) -> SchedulerStats:
        now = self._clock()
        paused = sum(1 for h in self._hosts.values() if h.paused_until > now)
        return SchedulerStats(
            len(self._hosts), self._windowed, self._in_flight, len(self._waiters), paused
        )

    def host_statistics(self, host: str) -> HostStats | None:
        h = self._hosts.get(host)
        if h is None:
            return None
        concurrency = self._per_host if h.throttle is None else h.throttle.concurrency
        return HostStats(
            h.gate,
            h.in_flight,
            len(h.window),
            min(self._per_host, concurrency),
            max(1.0 / self._rate, h.interval()),
            h.paused_until,
        )

    # -- decisions (sync, take now) ---------------------------------------------------------

    def _host(self, host: str) -> _Host:
        h = self._hosts.get(host)
        if h is None:
            h = self._hosts[host] = _Host(
                host,
                HostPacer(self._rate),
                Throttle(self._per_host) if self._adaptive else None,
                Gate.NEEDED if self._robots else Gate.READY,
            )
            if len(self._hosts) > self._max_hosts:
                self._forget_idle()
        else:
            self._hosts.move_to_end(host)
        return h

    def _forget_idle(self) -> None:
        now = self._clock()
        for host in list(self._hosts)[: len(self._hosts) - self._max_hosts]:
            h = self._hosts[host]
            idle = not h.window and h.in_flight == 0 and h.gate is not Gate.FETCHING
            # A paused or blocked host is remembered: forgetting it would forget the wait.
            if idle and h.gate is not Gate.BLOCKED and h.paused_until <= now:
                del self._hosts[host]

    def _held(self, h: _Host, now: float) -> float | None:
        """Until when a host may not start a page request for a reason of its own (a pause,
        a blocked robots.txt); None when nothing holds it. Also moves expired gates on."""
        if h.gate is Gate.BLOCKED and now >= h.gate_until:
            h.gate = Gate.NEEDED
        elif h.gate is Gate.READY and self._robots and now >= h.gate_until:
            h.gate = Gate.NEEDED  # the cached rules expired: fetch robots.txt again
        if h.gate is Gate.BLOCKED:
            return h.gate_until
        if h.paused_until > now:
            return h.paused_until
        return None

    def _refill(self, now: float) -> float | None:
        """Lease from the frontier for hosts whose window is short, within the window cap.

        Returns the soonest time a host skipped for being held (paused, blocked) is free.
        """
        held_until: float | None = None
        if self._windowed >= self._window_cap:
            return None
        for host in self._frontier.hosts(now):
            existing = self._hosts.get(host)
            have = len(existing.window) if existing is not None else 0
            if have > self._host_window // 2:
                continue  # enough for now: lease in batches, not a row at a time
            held = None if existing is None else self._held(existing, now)
            if held is not None:
                held_until = held if held_until is None else min(held_until, held)
                continue  # paused or blocked: its requests wait in the frontier
            want = min(self._host_window - have, self._window_cap - self._windowed)
            if want <= 0:
                continue
            leased = self._frontier.lease(host, want, now)
            if leased:
                h = self._host(host)
                if not h.window:
                    self._order.append(host)
                h.window.extend(leased)
                self._windowed += len(leased)
            if self._windowed >= self._window_cap:
                break
        return held_until

    def pick_nowait(self, now: float) -> CrawlRequest | float | None:
        """The next request that may start at ``now``, marked started.

        Otherwise the seconds until a request could start by time alone (pacing, a pause, a
        blocked host, a delayed retry), or None when nothing waits only on time (all blocked
        on concurrency or robots.txt in flight, or nothing left).
        """
        if self._stopping or self._in_flight >= self._concurrency:
            return None
        soonest: float | None = None

        def later(at: float) -> None:
            nonlocal soonest
            wait = at - now
            soonest = wait if soonest is None else min(soonest, wait)

        if not self._order or self._windowed < self._window_cap // 2:
            held_until = self._refill(now)
            if held_until is not None:
                later(held_until)

        for _ in range(len(self._order)):
            if not self._order:
                break  # every host left was held and gave its window back
            host = self._order[0]
            self._order.rotate(-1)
            h = self._hosts[host]
            held = self._held(h, now)
            if held is not None:
                self._give_back(h)
                later(held)
                continue
            if h.gate is Gate.FETCHING:
                continue  # the release of the robots.txt request wakes a worker
            limit = (
                self._per_host
                if h.throttle is None
                else min(self._per_host, h.throttle.concurrency)
            )
            if h.in_flight >= limit:
                continue
            if h.gate is Gate.READY and h.allow is not None and not h.allow(h.window[0].url):
                # Robots forbids it: handed out at once (no request is made, no pacing spent)
                # for the engine to record.
                request = self._pop(h)
                self._disallowed.add(request.url)
                return self._start(h, request)
            wait = h.pacer.delay(now)
            if wait > 0:
                later(now + wait)
                continue
            if h.gate is Gate.NEEDED:
                h.gate = Gate.FETCHING
                robots_url = origin_of(h.window[0].url) + "/robots.txt"
                request = CrawlRequest(robots_url, host, 0, kind=RequestKind.ROBOTS)
            else:
                request = self._pop(h)
            h.pacer.take(now, h.interval())
            return self._start(h, request)
        due = self._frontier.next_due()
        if due is not None and due > now:
            # (A retry already due waits for the next refill: a windowed host is either paced,
            # which sets a wait, or at its concurrency, which a release ends.)
            later(due)
        return soonest

    def _pop(self, h: _Host) -> CrawlRequest:
        request = h.window.popleft()
        self._windowed -= 1
        if not h.window:
            self._order.remove(h.host)
        return request

    def _start(self, h: _Host, request: CrawlRequest) -> CrawlRequest:
        h.in_flight += 1
        self._in_flight += 1
        return request

    def _give_back(self, h: _Host) -> None:
        """A held host's window goes back to the frontier, so it does not hold window space
        that other hosts could use."""
        if h.window:
            leftover = list(h.window)
            h.window.clear()
            self._windowed -= len(leftover)
            self._order.remove(h.host)
            self._frontier.unlease(leftover)

    def take_disallowed(self, request: CrawlRequest) -> bool:
        """True (once) when robots.txt forbids this handed-out request: record, don't fetch."""
        if request.url in self._disallowed:
            self._disallowed.discard(request.url)
            return True
        return False

    def set_rules(
        self,
        host: str,
        allow: Callable[[str], bool] | None,
        *,
        crawl_delay_s: float,
        until: float,
    ) -> None:
        """A host's robots.txt rules are in: ``allow(url)`` (None: everything), the minimum
        spacing between request starts it asks for, and when the rules expire."""
        h = self._host(host)
        h.gate, h.gate_until, h.allow, h.crawl_delay_s = Gate.READY, until, allow, crawl_delay_s
        self._wake(self._waiters_for(h))

    def block(self, host: str, until: float) -> None:
        """The host's robots.txt could not be had: nothing of it goes until ``until``, when
        robots.txt is tried again."""
        h = self._host(host)
        h.gate, h.gate_until = Gate.BLOCKED, until
        self._give_back(h)

    def pause(self, host: str, until: float) -> None:
        """Nothing more of ``host`` starts before ``until`` (Retry-After); others go on."""
        h = self._host(host)
        h.paused_until = max(h.paused_until, until)
        self._give_back(h)

    def feedback(self, host: str, now: float, latency_s: float, overloaded: bool) -> bool:
        """Tell the host's adaptive throttle how a request went. True when it cut the
        host's limits (a new overload, not one inside the quiet period after a cut)."""
        h = self._hosts.get(host)
        if h is None or h.throttle is None:
            return False
        if overloaded:
            return h.throttle.on_overload(now)
        h.throttle.on_success(now, latency_s)
        return False

    @property
    def in_flight(self) -> int:
        """Requests handed out and not yet released (cheap: no walk over the hosts)."""
        return self._in_flight

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stopping

    @property
    def finished(self) -> bool:
        """True when there is nothing left: nothing queued, windowed or in flight."""
        return self._frontier.outstanding == 0 and self._in_flight == 0

    # -- async shell -----------------------------------------------------------------------

    def _waiters_for(self, h: _Host) -> int:
        return min(len(h.window), len(self._waiters)) or 1

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
            # got is a float: the soonest time-bound delay; else wait for a release or new work.
            with anyio.move_on_after(got if got is not None else None):
                await event.wait()
            if not event.is_set():
                self._waiters.remove(event)

    def release(self, request: CrawlRequest) -> None:
        """A request handed out by :meth:`wait_next` is finished (settled, retried or given
        up)."""
        h = self._hosts[request.host]
        h.in_flight -= 1
        self._in_flight -= 1
        if request.kind is RequestKind.ROBOTS and h.gate is Gate.FETCHING:
            h.gate = Gate.NEEDED  # the engine gave no verdict (stopped): ask again next time
        self._wake()

    def stop(self) -> None:
        """Hand out nothing more; windowed requests go back to the frontier."""
        self._stopping = True
        leftover = [r for h in self._hosts.values() for r in h.window]
        for h in self._hosts.values():
            h.window.clear()
        self._order.clear()
        self._windowed = 0
        self._frontier.unlease(leftover)
        self._wake(len(self._waiters))
