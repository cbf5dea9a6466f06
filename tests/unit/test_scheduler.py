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
