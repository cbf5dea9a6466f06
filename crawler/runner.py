"""Running a job's workers: one task group, the signal watcher, progress reports, the stop grace.

Owns: the shape every run shares (a crawl in ``engine``, a bulk download in ``download``): N
workers in one task group; SIGINT / SIGTERM stop new work and give in-flight requests a grace
period (a second signal cancels at once); periodic progress reports; background tasks that live
as long as the workers (the committer) and a final step after they stop (draining it).
Must not: know what a worker does, or any stage.
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import anyio
import anyio.abc
import structlog

__all__ = ["SIGNAL_EXIT", "run_workers"]

log = structlog.get_logger()

SIGNAL_EXIT = {"SIGINT": 130, "SIGTERM": 143}  # exit codes of a run a signal stopped


async def run_workers(
    worker: Callable[[], Coroutine[Any, Any, None]],
    *,
    concurrency: int,
    stop_new_work: Callable[[], None],
    grace_s: float,
    handle_signals: bool = True,
    report: Callable[[], None] | None = None,
    interval_s: float = 0.5,
    event: str = "crawl",
    background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
    before: Callable[[], Awaitable[None]] | None = None,
    after: Callable[[], Awaitable[None]] | None = None,
) -> str | None:
    """Run ``concurrency`` workers until they return; the name of the signal that stopped the
    run (``"SIGTERM"``), or None when it ran to its end.

    ``report`` is called every ``interval_s`` and once at the end; ``background`` tasks run
    beside the workers and are cancelled after ``after`` (awaited once the workers stopped).
    ``before`` (seeding) runs first, under the signal watcher and the grace period: it should
    look at whether ``stop_new_work`` was called and end early.
    """
    stopped_by: str | None = None

    async def watch_signals(
        workers: anyio.CancelScope, *, task_status: anyio.abc.TaskStatus[None]
    ) -> None:
        nonlocal stopped_by
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()  # the handlers are installed: no signal is missed from here
            async for signum in signals:
                name = signal.Signals(signum).name
                if stopped_by is None:
                    stopped_by = name
                    log.warning(f"{event}.stopping", signal=name, grace_s=grace_s)
                    stop_new_work()
                    workers.deadline = min(workers.deadline, anyio.current_time() + grace_s)
                else:
                    log.warning(f"{event}.stop_now", signal=name)
                    workers.cancel()

    async def report_progress(report: Callable[[], None]) -> None:
        while True:
            report()
            await anyio.sleep(interval_s)

    async with anyio.create_task_group() as outer:
        workers_scope = anyio.CancelScope()
        if handle_signals:
            await outer.start(watch_signals, workers_scope)
        if report is not None:
            outer.start_soon(report_progress, report)
        for task in background:
            outer.start_soon(task)
        with workers_scope:
            if before is not None:
                await before()
            async with anyio.create_task_group() as tg:
                for _ in range(concurrency):
                    tg.start_soon(worker)
        if after is not None:
            await after()
        if report is not None:
            report()
        outer.cancel_scope.cancel()  # the watchers have nothing left to watch
    return stopped_by
