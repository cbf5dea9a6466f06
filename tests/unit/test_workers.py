"""The fetch stage's plumbing: how many processes ``limits.processes`` means, and the framed
channel between the coordinator and a worker, over a real socket pair."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import anyio
import anyio.abc
import pytest

from crawler.config import load_job
from crawler.errors import ConfigError
from crawler.models import FetchResult, Outcome, RequestKind
from crawler.storage import StoredBody
from crawler.workers import PageJob, PageReply, _Channel, worker_count


def test_processes_setting(tmp_path: Path) -> None:
    """``limits.processes``: 1 by default, 0 means one per CPU, the environment overrides the
    YAML, and a negative count is one clear line."""
    job_file = tmp_path / "job.yaml"
    job_file.write_text("seeds: [http://a.org/]\nlimits: {processes: 3}\n")
    assert load_job(job_file, environ={}).limits.processes == 3
    assert load_job(job_file, environ={"CRAWLER_LIMITS__PROCESSES": "0"}).limits.processes == 0
    assert worker_count(0) == (os.cpu_count() or 1)
    assert worker_count(3) == 3
    job_file.write_text("seeds: [http://a.org/]\n")
    assert load_job(job_file, environ={}).limits.processes == 1
    job_file.write_text("seeds: [http://a.org/]\nlimits: {processes: -1}\n")
    with pytest.raises(ConfigError, match=r"limits.processes") as info:
        load_job(job_file, environ={})
    assert "\n" not in str(info.value)


@pytest.mark.anyio
async def test_channel_carries_messages_in_order_whatever_the_reads() -> None:
    """Jobs and replies cross a socket pair intact and in order: many small ones sent in one
    batch, and one larger than a socket read (split across reads)."""
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    a = _Channel(await anyio.abc.UNIXSocketStream.from_socket(left))
    b = _Channel(await anyio.abc.UNIXSocketStream.from_socket(right))
    big = tuple(f"https://a.org/{i:07d}" for i in range(60_000))  # about 1.5 MB pickled
    reply = PageReply(
        FetchResult(Outcome.OK, 200, "HTTP/2", "text/html", headers=(("etag", '"x"'),)),
        StoredBody("a.org/index.html", 10, "0" * 64),
        links=big,
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(a.run_sender)
        for i in range(500):
            a.put((i, PageJob(f"https://a.org/{i}", RequestKind.PAGE, i % 2 == 0, None)))
        a.put((500, reply))
        with anyio.fail_after(10):
            for i in range(500):
                key, job = await b.get()
                assert key == i
                assert job == PageJob(f"https://a.org/{i}", RequestKind.PAGE, i % 2 == 0, None)
            assert await b.get() == (500, reply)
            await a.stream.aclose()
            with pytest.raises(anyio.EndOfStream):
                await b.get()
        tg.cancel_scope.cancel()
    await b.stream.aclose()
