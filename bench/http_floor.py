"""The HTTP client's own floor: what one process spends per page on httpx2 alone.

Fetches every page of the bench site once (the URL list is read from the site's folder, so
no parsing, no links, no disk writes, no state), with one httpx2 AsyncClient on anyio + uvloop,
64 requests in flight, bodies streamed and dropped. Its CPU ms per page is the part of a
crawl's per-page cost that no work in the crawler can remove while it uses this client:

    .venv/bin/python bench/http_floor.py --site bench/.work/harness/.work/site \\
        --base https://127.0.0.1:8443 --ca bench/.work/harness/.work/tls/ca.pem [--http1]

By default the client gets the crawler's transport tuning (``crawler.fetcher``: the
asyncio-native network backend, larger socket reads); ``--stock`` measures httpx2 as installed.
Prints one JSON line: pages, wall_s, cpu_s, cpu_ms_per_page, pages_per_s, http_version.
Traffic goes only to --base (the bench nginx on 127.0.0.1).
"""

from __future__ import annotations

import argparse
import json
import resource
import ssl
import time
from collections import Counter
from pathlib import Path

import anyio
import httpx2


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def _run(
    urls: list[str], http2: bool, ca: str | None, concurrency: int, stock: bool
) -> Counter[str]:
    ctx = ssl.create_default_context(cafile=ca) if ca else True
    limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    versions: Counter[str] = Counter()
    queue = iter(urls)
    async with httpx2.AsyncClient(http2=http2, verify=ctx, limits=limits, timeout=30) as client:
        if not stock:
            from crawler.fetcher import use_asyncio_streams  # also its socket read sizes

            use_asyncio_streams(client)

        async def worker() -> None:
            for url in queue:
                async with client.stream("GET", url) as response:
                    async for _ in response.aiter_bytes():
                        pass
                versions[response.http_version] += 1

        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(worker)
    return versions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--site", type=Path, required=True, help="the bench site's folder")
    ap.add_argument("--base", required=True, help="e.g. https://127.0.0.1:8443")
    ap.add_argument("--ca", help="CA bundle for the bench nginx")
    ap.add_argument("--http1", action="store_true", help="HTTP/1.1 instead of HTTP/2")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--stock", action="store_true", help="httpx2 without the crawler's tuning")
    args = ap.parse_args()
    paths = sorted(p.relative_to(args.site).as_posix() for p in args.site.rglob("*.html"))
    urls = [f"{args.base.rstrip('/')}/{p}" for p in paths]
    cpu0, t0 = _cpu(), time.perf_counter()
    versions = anyio.run(
        _run,
        urls,
        not args.http1,
        args.ca,
        args.concurrency,
        args.stock,
        backend="asyncio",
        backend_options={"use_uvloop": True},
    )
    wall, cpu = time.perf_counter() - t0, _cpu() - cpu0
    n = sum(versions.values())
    print(
        json.dumps(
            {
                "pages": n,
                "wall_s": round(wall, 2),
                "cpu_s": round(cpu, 2),
                "cpu_ms_per_page": round(1000 * cpu / n, 3),
                "pages_per_s": round(n / wall, 1),
                "http_version": dict(versions),
                "client": "httpx2 stock" if args.stock else "httpx2 + crawler tuning",
            }
        )
    )


if __name__ == "__main__":
    main()
