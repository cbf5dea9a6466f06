"""Group commit: the batch decisions (fake clock) and the async shell's promises."""

from __future__ import annotations

import threading

import anyio
import pytest

from crawler.committer import Committer, GroupCommit
from crawler.faults import parse

pytestmark = pytest.mark.anyio


def test_batch_due_by_count_by_age_or_when_no_producer_is_left() -> None:
    """A batch is due when full, when its oldest item is max_delay_s old, or at once when no
    producer is still working (waiting could add nothing)."""
    core: GroupCommit[str] = GroupCommit(max_items=3, max_delay_s=0.5)
    assert core.due_in(now=10.0, active=5) is None  # nothing pending
    core.add("a", now=10.0)
    assert core.due_in(now=10.1, active=5) == pytest.approx(0.4)
    core.add("b", now=10.2)  # the oldest item sets the deadline
    assert core.due_in(now=10.3, active=5) == pytest.approx(0.2)
    assert core.due_in(now=10.6, active=5) == 0.0
    assert core.due_in(now=10.3, active=0) == 0.0
    core.add("c", now=10.3)
    assert core.due_in(now=10.3, active=5) == 0.0  # full
    assert core.take() == ["a", "b", "c"]
    assert core.due_in(now=10.3, active=5) is None
    core.add("d", now=20.0)
    assert core.due_in(now=20.0, active=1) == pytest.approx(0.5)  # a new batch, a new clock


async def _submit_all(committer: Committer[int], producers: int, returned: list[int]) -> None:
    """``producers`` tasks each submit one item (0..n-1) while the flusher runs; each appends
    its item to ``returned`` once submit returns; then drain."""

    async def produce(i: int) -> None:
        await committer.submit(i)
        returned.append(i)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as outer:
            outer.start_soon(committer.run)
            async with anyio.create_task_group() as tg:
                for i in range(producers):
                    tg.start_soon(produce, i)
            await committer.drain()
            outer.cancel_scope.cancel()


async def test_without_sync_each_item_commits_inline() -> None:
    """Durability process: submit commits the item at once, one commit per item."""
    commits: list[list[int]] = []
    committer: Committer[int] = Committer(commits.append)
    assert not committer.batched
    await committer.submit(1)
    assert commits == [[1]]
    await committer.submit(2)
    assert commits == [[1], [2]]
    assert committer.statistics().batches == 2


async def test_batched_items_are_synced_then_committed_together() -> None:
    """Durability power: producers that finish together share one sync and one commit, the
    sync runs (in a thread) before the commit, and no submit returns before its commit."""
    events: list[tuple[str, list[int]]] = []
    returned: list[int] = []
    threads: set[int] = set()

    def sync(batch: list[int]) -> None:
        threads.add(threading.get_ident())
        events.append(("sync", list(batch)))

    def commit(batch: list[int]) -> None:
        assert not set(batch) & set(returned), "an item was reported done before its commit"
        events.append(("commit", list(batch)))

    producers = 8
    active = producers

    committer: Committer[int] = Committer(
        commit,
        sync=sync,
        active=lambda: active - committer.waiting,
        policy=GroupCommit(max_items=100, max_delay_s=5.0),
    )
    await _submit_all(committer, producers, returned)
    assert sorted(returned) == list(range(producers))
    # No producer was left working once all had submitted, so the batch did not wait 5 s:
    # one sync and one commit for all eight.
    assert events == [("sync", list(range(producers))), ("commit", list(range(producers)))]
    assert threading.get_ident() not in threads
    assert committer.statistics().mean_batch == producers


async def test_grouped_without_sync_commits_together_and_returns_after() -> None:
    """Durability process with grouping: producers finishing together share one commit (no
    sync step), and no submit returns before its item is committed."""
    commits: list[list[int]] = []
    returned: list[int] = []

    def commit(batch: list[int]) -> None:
        assert not set(batch) & set(returned), "an item was reported done before its commit"
        commits.append(list(batch))

    producers = 6
    committer: Committer[int] = Committer(
        commit,
        grouped=True,
        active=lambda: producers - len(returned) - committer.waiting,
        policy=GroupCommit(max_items=100, max_delay_s=5.0),
    )
    assert committer.batched
    await _submit_all(committer, producers, returned)
    assert commits == [list(range(producers))]
    assert sorted(returned) == list(range(producers))


async def test_drain_commits_items_whose_producer_was_cancelled() -> None:
    """A producer cut off while waiting for its batch (grace period over) loses nothing: its
    placed item is committed by drain."""
    commits: list[list[str]] = []
    committer: Committer[str] = Committer(
        commits.append,
        sync=lambda batch: None,
        active=lambda: 1,  # someone always "still working": only the deadline would flush
        policy=GroupCommit(max_items=100, max_delay_s=60.0),
    )
    with anyio.move_on_after(0.05):
        await committer.submit("x")
    assert commits == []
    assert committer.waiting == 1
    await committer.drain()
    assert commits == [["x"]]
    assert committer.waiting == 0


def test_fault_spec_parsing() -> None:
    """CRAWLER_FAULT is POINT:N with N >= 1; anything else is ignored (a typo never kills)."""
    assert parse("after_rename:3") == ("after_rename", 3)
    assert parse(None) is None
    assert parse("") is None
    assert parse("after_rename") is None
    assert parse("after_rename:0") is None
    assert parse(":4") is None
    assert parse("x:y") is None
