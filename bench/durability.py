"""What each durability level costs, without a network: pages/s of the store-and-commit path.

    .venv/bin/python bench/durability.py [--pages 5000] [--concurrency 32] [--rounds 3]
                                         [--fetch-ms 10]

For each level (process, power; interleaved rounds, median reported) N simulated pages go the
engine's way: a 6 KB body streamed into a temp file, renamed into a mirrored path, then settled
through the same Committer / frontier / storage calls the engine makes (``power``: fsync of
bodies and folders in a thread, one transaction per batch with synchronous=FULL). Producers
are anyio tasks, like the crawl's workers; each "fetch" sleeps a seeded exponential time of
mean ``--fetch-ms`` (0: none), so pages finish spread out as they do from a network. The
network itself is left out on purpose: ``crawler bench
--durability LEVEL`` measures the whole crawl, where the local server is the bottleneck.
Output goes to bench/.work/ (gitignored).
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import time
from pathlib import Path

import anyio
import anyio.lowlevel

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


from crawler.committer import Committer, GroupCommit  # noqa: E402
from crawler.frontier import SqliteFrontier  # noqa: E402
from crawler.models import CrawlRequest, Outcome, PageRecord  # noqa: E402
from crawler.storage import Storage  # noqa: E402

BODY = b"<p>" + b"x" * 6000 + b"</p>"
batches: list[float] = []


async def one_round(
    folder: Path, pages: int, concurrency: int, power: bool, fetch_s: float
) -> float:
    rng = random.Random(7)
    shutil.rmtree(folder, ignore_errors=True)
    with Storage(folder) as storage, SqliteFrontier(folder, durable=power) as frontier:
        requests = [
            CrawlRequest(f"http://b.test/s{i % 20}/d{i % 7}/p{i}.html", "b.test", 1)
            for i in range(pages)
        ]
        frontier.add(requests)
        leased = frontier.lease("b.test", pages, now=0)
        in_flight = 0

        def commit(batch: list[PageRecord]) -> None:
            with frontier.transaction():
                for rec in batch:
                    frontier.settle(CrawlRequest(rec.url, "b.test", 1), rec, [])
            for rec in batch:
                storage.append(rec)

        def sync(batch: list[PageRecord]) -> None:
            storage.sync([r.path for r in batch if r.path])

        committer: Committer[PageRecord] = Committer(
            commit,
            sync=sync if power else None,
            active=lambda: in_flight - committer.waiting,
            policy=GroupCommit(max_items=max(64, 2 * concurrency), max_delay_s=0.005),
        )

        async def worker(mine: list[CrawlRequest]) -> None:
            nonlocal in_flight
            for req in mine:
                in_flight += 1
                body = storage.open_body()
                body.write(BODY)
                stored = storage.commit(body, req.url)
                if fetch_s > 0:
                    await anyio.sleep(rng.expovariate(1 / fetch_s))
                else:
                    await anyio.lowlevel.checkpoint()
                rec = PageRecord(
                    req.url, req.url, Outcome.OK, 1, bytes=stored.size,
                    sha256=stored.sha256, path=stored.path,
                )  # fmt: skip
                await committer.submit(rec)
                in_flight -= 1

        started = time.perf_counter()
        async with anyio.create_task_group() as outer:
            if committer.batched:
                outer.start_soon(committer.run)
            async with anyio.create_task_group() as tg:
                for k in range(concurrency):
                    tg.start_soon(worker, leased[k::concurrency])
            await committer.drain()
            outer.cancel_scope.cancel()
        elapsed = time.perf_counter() - started
        assert frontier.statistics().done == pages
        batches.append(committer.statistics().mean_batch)
        return pages / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pages", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fetch-ms", type=float, default=10.0)
    args = parser.parse_args()
    work = HERE / ".work" / "durability"
    rates: dict[str, list[float]] = {"process": [], "power": []}
    mean_batch: dict[str, list[float]] = {"process": [], "power": []}
    for _ in range(args.rounds):
        for level in rates:
            rate = anyio.run(
                one_round,
                work / level,
                args.pages,
                args.concurrency,
                level == "power",
                args.fetch_ms / 1000,
            )
            rates[level].append(rate)
            mean_batch[level].append(batches[-1])
    shutil.rmtree(work, ignore_errors=True)
    for level, values in rates.items():
        print(
            f"{level:8s} median {statistics.median(values):8,.0f} pages/s "
            f"(rounds: {', '.join(f'{v:,.0f}' for v in values)}; {args.pages:,} pages, "
            f"concurrency {args.concurrency}, fetch {args.fetch_ms:g} ms; mean batch "
            f"{statistics.mean(mean_batch[level]):.1f} pages per commit)"
        )


if __name__ == "__main__":
    main()
