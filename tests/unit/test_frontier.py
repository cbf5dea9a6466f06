"""The SQLite frontier: dedup, budget, breadth-first leases, resume, exclusive use."""

from __future__ import annotations

from pathlib import Path

import pytest

from crawler.errors import StateError
from crawler.frontier import SqliteFrontier
from crawler.models import CrawlRequest, Outcome, PageRecord


def req(path: str, depth: int = 0, host: str = "a.org") -> CrawlRequest:
    return CrawlRequest(f"http://{host}{path}", host, depth)


def done(r: CrawlRequest) -> PageRecord:
    return PageRecord(r.url, r.url, Outcome.OK, r.depth)


def test_each_url_admitted_once(tmp_path: Path) -> None:
    """A URL offered many times, by any route, is queued once."""
    with SqliteFrontier(tmp_path) as f:
        assert f.add([req("/a"), req("/b"), req("/a")]) == 2
        assert f.add([req("/a", depth=3)]) == 0
        assert f.statistics().queued == 2


def test_page_budget_is_exact(tmp_path: Path) -> None:
    """max_pages caps admissions exactly, across calls and settles."""
    with SqliteFrontier(tmp_path, max_pages=5) as f:
        assert f.add([req(f"/{i}") for i in range(3)]) == 3
        (first,) = f.lease("a.org", 1, now=0)
        assert f.settle(first, done(first), [req(f"/x{i}", 1) for i in range(10)]) == 2
        assert f.statistics().admitted == 5


def test_leases_are_breadth_first_and_hosts_round_robin(tmp_path: Path) -> None:
    """Shallower requests come first; each host leased moves to the back of the order."""
    with SqliteFrontier(tmp_path) as f:
        f.add([req("/deep", 2), req("/mid", 1), req("/top", 0), req("/b", 0, host="b.org")])
        assert [r.url for r in f.lease("a.org", 2, now=0)] == [
            "http://a.org/top",
            "http://a.org/mid",
        ]
        assert f.hosts(0.0) == ["b.org", "a.org"]
        f.lease("b.org", 5, now=0)
        assert f.hosts(0.0) == ["a.org"]


def test_level_barrier_holds_deeper_levels(tmp_path: Path) -> None:
    """With the barrier, depth 1 is not leased while depth 0 is outstanding."""
    with SqliteFrontier(tmp_path, level_barrier=True) as f:
        f.add([req("/0"), req("/1", 1)])
        (zero,) = f.lease("a.org", 5, now=0)
        assert f.lease("a.org", 5, now=0) == []
        assert f.hosts(0.0) == ["a.org"]  # still has queued work
        f.settle(zero, done(zero), [])
        assert [r.url for r in f.lease("a.org", 5, now=0)] == ["http://a.org/1"]


def test_reopen_requeues_leases_and_keeps_records(tmp_path: Path) -> None:
    """A run that dies with leases out: on reopen they are queued again; settled stay done."""
    with SqliteFrontier(tmp_path) as f:
        f.add([req("/a"), req("/b")])
        a, _b = f.lease("a.org", 2, now=0)
        f.settle(a, done(a), [])
    with SqliteFrontier(tmp_path) as f:
        stats = f.statistics()
        assert (stats.queued, stats.leased, stats.done) == (1, 0, 1)
        assert [r.url for r in f.records()] == ["http://a.org/a"]
        assert [r.url for r in f.lease("a.org", 5, now=0)] == ["http://a.org/b"]


def test_one_process_at_a_time(tmp_path: Path) -> None:
    """A second opener of the same state gets a clear StateError."""
    with SqliteFrontier(tmp_path), pytest.raises(StateError, match="another crawl"):
        SqliteFrontier(tmp_path).__enter__()


def test_retry_waits_for_not_before_and_counts_attempts(tmp_path: Path) -> None:
    """A retried request is queued again with its attempt count, handed out only from its
    not-before time; next_due says when."""
    from crawler.frontier import SqliteFrontier

    with SqliteFrontier(tmp_path) as f:
        f.add([CrawlRequest("http://a.org/x", "a.org", 0)])
        (r,) = f.lease("a.org", 5, 0.0)
        f.retry(r, not_before=10.0)
        assert f.statistics().queued == 1
        assert f.next_due() == 10.0
        assert f.hosts(5.0) == []
        assert f.lease("a.org", 5, 5.0) == []
        assert f.hosts(10.0) == ["a.org"]
        (again,) = f.lease("a.org", 5, 10.0)
        assert again.attempts == 1
        assert again.url == r.url


def test_refused_links_are_recorded_not_queued(tmp_path: Path) -> None:
    """Trap records settle with their page: done at once, in records(), never leased, and not
    counted against the page budget; unknown() tells new URLs from known ones."""
    from crawler.frontier import SqliteFrontier
    from crawler.models import Outcome, PageRecord

    with SqliteFrontier(tmp_path, max_pages=2) as f:
        f.add([CrawlRequest("http://a.org/", "a.org", 0)])
        (r,) = f.lease("a.org", 5, 0.0)
        trap = CrawlRequest("http://a.org/x/x/x/x", "a.org", 1)
        trap_record = PageRecord(trap.url, trap.url, Outcome.TRAP, 1, error="repeats", attempts=0)
        page = PageRecord(r.url, r.url, Outcome.OK, 0)
        admitted = f.settle(
            r, page, [CrawlRequest("http://a.org/b", "a.org", 1)], [(trap, trap_record)]
        )
        assert admitted == 1
        assert [rec.outcome for rec in f.records()] == [Outcome.OK, Outcome.TRAP]
        assert f.unknown(["http://a.org/b", "http://a.org/x/x/x/x", "http://a.org/new"]) == {
            "http://a.org/new"
        }
        assert [q.url for q in f.lease("a.org", 5, 0.0)] == ["http://a.org/b"]
