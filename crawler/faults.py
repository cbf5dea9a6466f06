"""Fault injection for crash tests: kill this process with SIGKILL at an exact point.

Owns: the one place the ``CRAWLER_FAULT`` environment variable is read. ``CRAWLER_FAULT=POINT:N``
makes the N-th call of :func:`hit` with that point (1-based, counted in this process) send
SIGKILL to the process itself, the same death as ``kill -9`` or the OOM killer, but at a chosen
step of one URL's path. Points used by the crawler:

- ``body_write``: a chunk of a body was written to its temp file (the body is partial);
- ``after_rename``: a complete body was renamed into place, its record not yet committed;
- ``in_commit``: inside the transaction that settles a URL, before ``COMMIT``.

Unset (the normal case) :func:`hit` is one comparison. Must not: do anything else, or be used to
simulate anything but a process death.
"""

from __future__ import annotations

import os
import signal

__all__ = ["ENV", "hit", "parse"]

ENV = "CRAWLER_FAULT"


def parse(spec: str | None) -> tuple[str, int] | None:
    """``"POINT:N"`` as ``(point, n)``; None when unset or malformed (a typo never kills)."""
    if not spec:
        return None
    point, _, count = spec.partition(":")
    if not point or not count.isdigit() or int(count) < 1:
        return None
    return point, int(count)


_PLAN = parse(os.environ.get(ENV))
_seen = 0


def hit(point: str) -> None:
    """Count a pass through ``point``; SIGKILL this process on the planned pass."""
    global _seen
    if _PLAN is None or _PLAN[0] != point:
        return
    _seen += 1
    if _seen == _PLAN[1]:
        os.kill(os.getpid(), signal.SIGKILL)
