"""Group commit: many settled URLs made durable together, each reported done only after.

Owns: when a batch of finished items is made durable (:class:`GroupCommit`, a synchronous
decision core that takes ``now``) and the async shell that does it (:class:`Committer`): a
worker's :meth:`Committer.submit` returns only once its item's batch is committed; a flusher
task in the engine's task group runs the blocking ``sync`` (fsync of files and folders) in a
worker thread, then ``commit`` (one state transaction) on the event loop, so other workers keep
fetching while a batch is synced. Without a ``sync`` step (durability ``process``) items are
still grouped when ``grouped`` (one transaction and one write of the state's pages for several
settles), or committed at once, inline.
Must not: know what an item is: the engine passes ``sync`` and ``commit``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import anyio
import anyio.to_thread

__all__ = ["Committer", "CommitterStats", "GroupCommit"]

T = TypeVar("T")


@dataclass(eq=False)
class GroupCommit(Generic[T]):
    """Which items go in the next batch, and when it is due. Pure: every method takes ``now``.

    A batch is due when it holds ``max_items``, when its oldest item has waited
    ``max_delay_s``, or at once when no producer is still working on an item (``active`` is 0):
    waiting then would only add latency, since nothing more can join the batch.
    """

    max_items: int = 256
    max_delay_s: float = 0.005
    pending: list[T] = field(default_factory=list)
    first_at: float = 0.0

    def add(self, item: T, now: float) -> None:
        if not self.pending:
            self.first_at = now
        self.pending.append(item)

    def due_in(self, now: float, active: int) -> float | None:
        """Seconds until the pending batch is due (0: now); None when nothing is pending."""
        if not self.pending:
            return None
        if len(self.pending) >= self.max_items or active <= 0:
            return 0.0
        return max(0.0, self.first_at + self.max_delay_s - now)

    def take(self) -> list[T]:
        """The pending batch, which is cleared."""
        batch, self.pending = self.pending, []
        return batch


@dataclass(frozen=True, slots=True)
class CommitterStats:
    batches: int
    items: int
    pending: int

    @property
    def mean_batch(self) -> float:
        return self.items / self.batches if self.batches else 0.0


class Committer(Generic[T]):
    """The async shell around :class:`GroupCommit`.

    ``commit(batch)`` must be quick and non-blocking in practice (it runs on the event loop);
    ``sync(batch)``, when given, is blocking I/O run in a thread before it. ``active()`` says
    how many items producers are still working on (not yet submitted). Start :meth:`run` in the
    engine's task group when :attr:`batched`; call :meth:`drain` before closing what ``commit``
    uses.
    """

    def __init__(
        self,
        commit: Callable[[list[T]], None],
        *,
        sync: Callable[[list[T]], None] | None = None,
        grouped: bool = False,
        active: Callable[[], int] = lambda: 0,
        policy: GroupCommit[T] | None = None,
        clock: Callable[[], float] = anyio.current_time,
    ) -> None:
        self._commit = commit
        self._sync = sync
        self._grouped = grouped or sync is not None
        self._active = active
        self._core: GroupCommit[T] = policy if policy is not None else GroupCommit()
        self._clock = clock
        self._batch_done = anyio.Event()
        self._wake = anyio.Event()
        self._flushing = anyio.Lock()
        self._batches = 0
        self._items = 0
        self._in_flush = 0

    def __repr__(self) -> str:
        s = self.statistics()
        return f"<Committer batches={s.batches} items={s.items} pending={s.pending}>"

    @property
    def batched(self) -> bool:
        """True when items wait for a batch (``grouped``, or a ``sync`` step exists)."""
        return self._grouped

    @property
    def waiting(self) -> int:
        """Items submitted and not yet committed (pending, or in the batch being flushed)."""
        return len(self._core.pending) + self._in_flush

    def statistics(self) -> CommitterStats:
        return CommitterStats(self._batches, self._items, len(self._core.pending))

    async def submit(self, item: T) -> None:
        """Return once ``item`` is committed. If the caller is cancelled while waiting, the
        item stays in its batch and is committed by the flusher or by :meth:`drain`."""
        if not self._grouped:
            self._commit([item])
            self._batches += 1
            self._items += 1
            return
        self._core.add(item, self._clock())
        done = self._batch_done
        self._wake.set()
        await done.wait()

    async def run(self) -> None:
        """The flusher: commit each batch when it is due. Runs until cancelled."""
        while True:
            due = self._core.due_in(self._clock(), self._active())
            if due == 0:
                await self._flush()
                continue
            self._wake = anyio.Event()
            with anyio.move_on_after(math.inf if due is None else due):
                await self._wake.wait()

    async def drain(self) -> None:
        """Commit whatever is pending (after the producers stopped)."""
        while self._core.pending:
            await self._flush()
        async with self._flushing:  # a flush the cancelled flusher had begun is finished
            pass

    async def _flush(self) -> None:
        # Shielded: a batch whose files are placed is committed whole, even when the crawl is
        # being cancelled (it is bounded: one fsync pass and one transaction).
        with anyio.CancelScope(shield=True):
            async with self._flushing:
                batch = self._core.take()
                if not batch:
                    return
                done, self._batch_done = self._batch_done, anyio.Event()
                self._in_flush = len(batch)
                try:
                    if self._sync is not None:
                        await anyio.to_thread.run_sync(self._sync, batch)
                    self._commit(batch)
                finally:
                    self._in_flush = 0
                self._batches += 1
                self._items += len(batch)
                done.set()
