"""The SQLite frontier: dedup, budget, breadth-first leases, resume, exclusive use."""

from __future__ import annotations

from pathlib import Path

import pytest

from crawler.errors import StateError
from crawler.frontier import FrontierStats, SqliteFrontier, read_status
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
        f.settle(first, done(first), [req(f"/x{i}", 1) for i in range(10)])
        assert f.statistics().admitted == 5
        assert f.statistics().queued == 4  # 2 of the 3 seeds + 2 of the 10 links


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
    """Trap records settle with their page: done at once, in records(), never leased, not
    counted against the page budget (also after a reopen), recorded once however often they
    are refused; unknown() tells new URLs from known ones."""
    from crawler.frontier import SqliteFrontier
    from crawler.models import Outcome, PageRecord

    with SqliteFrontier(tmp_path, max_pages=2) as f:
        f.add([CrawlRequest("http://a.org/", "a.org", 0)])
        (r,) = f.lease("a.org", 5, 0.0)
        trap = CrawlRequest("http://a.org/x/x/x/x", "a.org", 1)
        trap_record = PageRecord(trap.url, trap.url, Outcome.TRAP, 1, error="repeats", attempts=0)
        page = PageRecord(r.url, r.url, Outcome.OK, 0)
        recorded = f.settle(
            r, page, [CrawlRequest("http://a.org/b", "a.org", 1)], [(trap, trap_record)]
        )
        assert recorded == [trap_record]
        assert [rec.outcome for rec in f.records()] == [Outcome.OK, Outcome.TRAP]
        assert f.unknown(["http://a.org/b", "http://a.org/x/x/x/x", "http://a.org/new"]) == {
            "http://a.org/new"
        }
        (b,) = f.lease("a.org", 5, 0.0)
        assert b.url == "http://a.org/b"
        assert f.settle(b, PageRecord(b.url, b.url, Outcome.OK, 1), [], [(trap, trap_record)]) == []
        assert f.statistics().admitted == 2
    with SqliteFrontier(tmp_path, max_pages=2) as f:
        assert f.statistics().admitted == 2  # the trap row is not an admission
        assert len(list(f.records())) == 3


def test_settles_in_one_transaction_commit_together(tmp_path: Path) -> None:
    """Settles inside transaction() are one commit: a reader sees none of them until the end,
    and a failure inside rolls all of them back."""
    with SqliteFrontier(tmp_path) as f:
        f.add([req(f"/{i}") for i in range(4)])
        a, b, c, _ = f.lease("a.org", 4, now=0)
        with f.transaction():
            f.settle(a, done(a), [])
            f.settle(b, done(b), [req("/new", 1)])
            assert read_status(tmp_path).done == 0  # not committed yet
        assert read_status(tmp_path).done == 2
        assert read_status(tmp_path).queued == 1  # /new

        def fail_inside() -> None:
            with f.transaction():
                f.settle(c, done(c), [])
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            fail_inside()
        assert read_status(tmp_path).done == 2
    with SqliteFrontier(tmp_path) as f:
        assert {r.url for r in f.records()} == {a.url, b.url}


def test_recrawl_requeues_done_urls_once_per_pass(tmp_path: Path) -> None:
    """begin_recrawl queues every settled URL again with its record kept (manifest unchanged
    meanwhile); an interrupted pass continues instead of requeueing what it already redid; the
    pass ends explicitly and the next begin starts a new one."""
    with SqliteFrontier(tmp_path) as f:
        f.add([req("/a"), req("/b"), req("/c", 1)])
        for r in f.lease("a.org", 3, now=0):
            f.settle(r, done(r), [])
        assert not f.recrawling
        assert f.begin_recrawl() == 3
        assert f.recrawling
        assert f.statistics().queued == 3
        assert f.level() == 0
        assert len(list(f.records())) == 3  # last records stand
        (a,) = f.lease("a.org", 1, now=0)
        assert f.previous_record(a.url) == done(a)
        f.settle(a, done(a), [])
    with SqliteFrontier(tmp_path) as f:  # the interrupted recrawl is resumed
        assert f.recrawling
        assert f.begin_recrawl() == 0
        stats = f.statistics()
        assert (stats.queued, stats.done) == (2, 1)
        for r in f.lease("a.org", 5, now=0):
            f.settle(r, done(r), [])
        f.end_recrawl()
        assert not f.recrawling
        assert f.begin_recrawl() == 3
        assert f.previous_record("http://a.org/nowhere") is None


def test_reset_forgets_everything(tmp_path: Path) -> None:
    """reset (for --fresh) leaves an empty state: nothing queued, done, or recorded."""
    with SqliteFrontier(tmp_path) as f:
        f.add([req("/a"), req("/b")])
        (a, _) = f.lease("a.org", 2, now=0)
        f.settle(a, done(a), [])
        f.begin_recrawl()
        f.reset()
        assert f.statistics() == FrontierStats(0, 0, 0, 0)
        assert list(f.records()) == []
        assert not f.recrawling
        assert f.add([req("/a")]) == 1


def test_status_reads_a_locked_state_without_the_lock(tmp_path: Path) -> None:
    """read_status works while the state is held (and written) by a crawl, reports counts by
    state, outcomes, hosts and bytes, and does not create anything."""
    with SqliteFrontier(tmp_path) as f:
        f.add([req("/a"), req("/b"), req("/c"), req("/x", host="b.org")])
        a, b, _c = f.lease("a.org", 3, now=0)
        f.settle(a, PageRecord(a.url, a.url, Outcome.OK, 0, bytes=100), [])
        f.settle(b, PageRecord(b.url, b.url, Outcome.TIMEOUT, 0), [])
        st = read_status(tmp_path)
        assert (st.queued, st.leased, st.done, st.admitted) == (1, 1, 2, 4)
        assert st.outcomes == {"ok": 1, "timeout": 1}
        assert st.failed == 1
        assert (st.hosts, st.bytes, st.recrawling) == (2, 100, False)
    with pytest.raises(StateError, match="no crawl state"):
        read_status(tmp_path / "elsewhere")
    assert not (tmp_path / "elsewhere").exists()


def test_recrawl_leaves_trapped_urls_alone(tmp_path: Path) -> None:
    """A recrawl queues fetched URLs again with a fresh retry budget, never trapped ones."""
    with SqliteFrontier(tmp_path) as f:
        f.add([CrawlRequest("http://a.org/", "a.org", 0)])
        (r,) = f.lease("a.org", 5, 0.0)
        f.retry(r, not_before=0.0)
        (r,) = f.lease("a.org", 5, 0.0)
        assert r.attempts == 1
        trap = CrawlRequest("http://a.org/x/x/x/x", "a.org", 1)
        trapped = PageRecord(trap.url, trap.url, Outcome.TRAP, 1, error="repeats", attempts=0)
        f.settle(r, PageRecord(r.url, r.url, Outcome.OK, 0), [], [(trap, trapped)])
        assert f.begin_recrawl() == 1
        (again,) = f.lease("a.org", 5, 0.0)
        assert again.url == "http://a.org/"
        assert again.attempts == 0


def test_recrawl_forgets_old_not_before_times(tmp_path: Path) -> None:
    """A URL retried in an earlier run keeps no stale not-before time into a recrawl (its
    clock may be another boot's): it is handed out at once."""
    with SqliteFrontier(tmp_path) as f:
        f.add([CrawlRequest("http://a.org/", "a.org", 0)])
        (r,) = f.lease("a.org", 5, 0.0)
        f.retry(r, not_before=1e12)
        (r,) = f.lease("a.org", 5, 1e12)
        f.settle(r, PageRecord(r.url, r.url, Outcome.OK, 0), [])
        assert f.begin_recrawl() == 1
        assert f.hosts(0.0) == ["a.org"]
        assert [q.url for q in f.lease("a.org", 5, 0.0)] == ["http://a.org/"]
