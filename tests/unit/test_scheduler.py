"""The scheduler's decisions, with a fake clock and an in-memory frontier."""

from __future__ import annotations

from collections import deque

import pytest

from crawler.models import CrawlRequest
from crawler.scheduler import HostPacer, Scheduler


class FakeFrontier:
    """Just enough of a frontier: per-host FIFO queues."""

    def __init__(self, urls: dict[str, int]) -> None:
        self.queues = {
            h: deque(CrawlRequest(f"http://{h}/{i}", h, 0) for i in range(n))
            for h, n in urls.items()
        }
        self.leased = 0

    def hosts(self, now: float) -> list[str]:
        return [h for h, q in self.queues.items() if q]

    def next_due(self) -> float | None:
        return None

    def lease(self, host: str, limit: int, now: float) -> list[CrawlRequest]:
        q = self.queues[host]
        out = [q.popleft() for _ in range(min(limit, len(q)))]
        self.leased += len(out)
        return out

    def unlease(self, requests: list[CrawlRequest]) -> None:
        for r in requests:
            self.queues[r.host].appendleft(r)
        self.leased -= len(requests)

    @property
    def outstanding(self) -> int:
        return sum(map(len, self.queues.values())) + self.leased


def test_pacer_spacing_and_burst() -> None:
    """rate 4/s: starts 0.25 s apart; a burst of 2 lets two go at once, then spaces them."""
    p = HostPacer(rate=4)
    assert p.delay(10.0) == 0
    p.take(10.0)
    assert p.delay(10.0) == pytest.approx(0.25)
    assert p.delay(10.25) == 0
    b = HostPacer(rate=4, burst=2)
    b.take(0.0)
    assert b.delay(0.0) == 0
    b.take(0.0)
    assert b.delay(0.0) == pytest.approx(0.25)


def make(urls: dict[str, int], **kw: float) -> tuple[Scheduler, FakeFrontier]:
    frontier = FakeFrontier(urls)
    args = {"concurrency": 10, "per_host_concurrency": 2, "per_host_rate": 1000.0} | kw
    return Scheduler(frontier, clock=lambda: 0.0, **args), frontier  # type: ignore[arg-type]


def test_round_robin_across_hosts_within_per_host_concurrency() -> None:
    """Hosts alternate, and no host gets more than its concurrency in flight."""
    s, _ = make({"a": 5, "b": 5})
    got = [s.pick_nowait(now) for now in (0.0, 0.01, 0.02, 0.03, 0.04)]
    hosts = [r.host for r in got if isinstance(r, CrawlRequest)]
    assert hosts == ["a", "b", "a", "b"]
    assert got[-1] is None  # both hosts at their concurrency: wait for a release


def test_paced_host_does_not_block_another() -> None:
    """A host waiting on its rate gives way to a host that can go; the wait is reported."""
    s, _ = make({"slow": 3, "fast": 3}, per_host_rate=2.0, per_host_concurrency=5)
    first = s.pick_nowait(0.0)
    second = s.pick_nowait(0.0)
    assert isinstance(first, CrawlRequest)
    assert isinstance(second, CrawlRequest)
    assert {first.host, second.host} == {"slow", "fast"}
    assert s.pick_nowait(0.0) == pytest.approx(0.5)  # both paced: the soonest is 0.5 s away
    assert isinstance(s.pick_nowait(0.5), CrawlRequest)


def test_finished_only_when_nothing_outstanding() -> None:
    """Not finished while a request is in flight, even with an empty queue."""
    s, _ = make({"a": 1})
    r = s.pick_nowait(0.0)
    assert isinstance(r, CrawlRequest)
    assert not s.finished
    s.release(r)
    assert not s.finished  # the fake frontier still counts it leased until settled
    _.leased -= 1
    assert s.finished


def test_stop_returns_windowed_requests() -> None:
    """On stop, requests leased into the window go back to the frontier."""
    s, frontier = make({"a": 6})
    assert isinstance(s.pick_nowait(0.0), CrawlRequest)
    s.stop()
    assert frontier.leased == 1  # only the one in flight
    assert s.pick_nowait(1.0) is None


def test_robots_txt_goes_first_and_gates_the_host() -> None:
    """A host's first request is its robots.txt; nothing else of it goes until the rules are
    in; then a disallowed URL is handed out flagged (no pacing spent), and Crawl-delay spaces
    the host's requests."""
    from crawler.models import RequestKind
    from crawler.scheduler import Gate

    frontier = FakeFrontier({"a": 4})
    s = Scheduler(
        frontier, concurrency=10, per_host_concurrency=4, per_host_rate=1000.0, robots=True
    )
    robots = s.pick_nowait(0.0)
    assert isinstance(robots, CrawlRequest)
    assert robots.kind is RequestKind.ROBOTS
    assert robots.url == "http://a/robots.txt"
    assert s.pick_nowait(0.0) is None  # robots.txt in flight: the host waits
    s.set_rules("a", lambda url: not url.endswith("/1"), crawl_delay_s=2.0, until=100.0)
    s.release(robots)
    first = s.pick_nowait(0.01)
    assert isinstance(first, CrawlRequest)
    assert first.url == "http://a/0"
    assert not s.take_disallowed(first)
    disallowed = s.pick_nowait(0.01)  # /1 is refused at once, without waiting for pacing
    assert isinstance(disallowed, CrawlRequest)
    assert disallowed.url == "http://a/1"
    assert s.take_disallowed(disallowed)
    assert not s.take_disallowed(disallowed)  # once
    assert s.pick_nowait(0.02) == pytest.approx(1.99)  # Crawl-delay 2 s from the first start
    assert isinstance(s.pick_nowait(2.01), CrawlRequest)
    stats = s.host_statistics("a")
    assert stats is not None
    assert stats.gate is Gate.READY
    assert stats.interval_s == 2.0
    # The rules expire: the next request of the host is robots.txt again.
    got = s.pick_nowait(100.0)
    assert isinstance(got, CrawlRequest)
    assert got.kind is RequestKind.ROBOTS


def test_blocked_and_paused_hosts_yield_to_others() -> None:
    """An unreachable robots.txt blocks its host until the next try, a Retry-After pauses
    one; their windows go back to the frontier and other hosts keep going."""
    from crawler.models import RequestKind

    frontier = FakeFrontier({"a": 3, "b": 3})
    s = Scheduler(
        frontier, concurrency=10, per_host_concurrency=2, per_host_rate=1000.0, robots=True
    )
    ra = s.pick_nowait(0.0)
    rb = s.pick_nowait(0.0)
    assert isinstance(ra, CrawlRequest)
    assert isinstance(rb, CrawlRequest)
    assert {ra.host, rb.host} == {"a", "b"}
    s.block("a", until=5.0)
    s.release(ra)
    s.set_rules("b", None, crawl_delay_s=0.0, until=1e9)
    s.release(rb)
    got = [s.pick_nowait(1.0 + i / 100) for i in range(2)]
    assert [r.host for r in got if isinstance(r, CrawlRequest)] == ["b", "b"]
    assert len(frontier.queues["a"]) == 3  # a's window went back to the frontier
    s.pause("b", until=3.0)
    for r in got:
        assert isinstance(r, CrawlRequest)
        s.release(r)
    assert s.pick_nowait(1.5) == pytest.approx(1.5)  # b is free again at 3.0
    again = s.pick_nowait(5.0)  # a's block is over: robots.txt is tried again
    assert isinstance(again, CrawlRequest)
    assert again.kind is RequestKind.ROBOTS
    assert again.host == "a"


def test_adaptive_throttle_lowers_a_hosts_concurrency() -> None:
    """After an overload signal the host's concurrency is halved (and its spacing grows)."""
    frontier = FakeFrontier({"a": 10})
    s = Scheduler(
        frontier, concurrency=10, per_host_concurrency=4, per_host_rate=1000.0, adaptive=True
    )
    got = [s.pick_nowait(i / 100) for i in range(5)]
    assert sum(isinstance(r, CrawlRequest) for r in got) == 4
    assert s.feedback("a", 0.0, 0.1, overloaded=True)
    for r in got:
        if isinstance(r, CrawlRequest):
            s.release(r)
    stats = s.host_statistics("a")
    assert stats is not None
    assert stats.concurrency == 2
    assert stats.interval_s == pytest.approx(0.25)


def test_delayed_retry_sets_the_wait() -> None:
    """With nothing ready, the wait is until the frontier's soonest delayed retry."""
    frontier = FakeFrontier({})
    frontier.next_due = lambda: 7.5  # type: ignore[method-assign]
    frontier.leased = 1  # the retried URL is still outstanding
    s = Scheduler(frontier, concurrency=4, per_host_concurrency=2, per_host_rate=10.0)
    assert s.pick_nowait(5.0) == pytest.approx(2.5)


def test_a_retry_already_due_never_means_wait_zero() -> None:
    """With the window full of paced hosts, a retry that is already due does not make workers
    spin (a zero wait): the wait is the pacing's."""
    frontier = FakeFrontier({"a": 10})
    frontier.next_due = lambda: 1.0  # type: ignore[method-assign]
    s = Scheduler(frontier, concurrency=1, per_host_concurrency=1, per_host_rate=0.5)
    first = s.pick_nowait(5.0)
    assert isinstance(first, CrawlRequest)
    s.release(first)
    assert s.pick_nowait(5.1) == pytest.approx(1.9)  # paced: 2 s spacing, not 0


def test_paused_hosts_are_not_forgotten() -> None:
    """Beyond max_hosts idle hosts are forgotten, but not one that is paused."""
    frontier = FakeFrontier({})
    s = Scheduler(
        frontier,
        concurrency=4,
        per_host_concurrency=1,
        per_host_rate=10.0,
        max_hosts=2,
        clock=lambda: 10.0,
    )
    s.pause("p", until=50.0)
    s.set_rules("a", None, crawl_delay_s=0.0, until=1e9)
    s.set_rules("b", None, crawl_delay_s=0.0, until=1e9)
    s.set_rules("c", None, crawl_delay_s=0.0, until=1e9)
    stats = s.host_statistics("p")
    assert stats is not None
    assert stats.paused_until == 50.0
    assert s.host_statistics("a") is None  # an idle one was forgotten instead
