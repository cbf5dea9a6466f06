"""Retry, backoff, Retry-After and adaptive-throttle decisions, with a fake clock."""

from __future__ import annotations

import email.utils
import random

import pytest

from crawler.models import Outcome
from crawler.politeness import (
    Throttle,
    backoff_delay,
    is_overload,
    is_retryable,
    parse_retry_after,
)

STATUSES = frozenset({429, 500, 502, 503, 504})


@pytest.mark.parametrize(
    ("outcome", "status", "expected"),
    [
        (Outcome.CONNECT, None, True),
        (Outcome.TIMEOUT, None, True),
        (Outcome.PROTOCOL, 200, True),
        (Outcome.NETWORK, None, True),
        (Outcome.HTTP_ERROR, 503, True),
        (Outcome.HTTP_ERROR, 429, True),
        (Outcome.HTTP_ERROR, 404, False),
        (Outcome.HTTP_ERROR, 501, False),
        (Outcome.DNS, None, False),
        (Outcome.TLS, None, False),
        (Outcome.TOO_LARGE, 200, False),
        (Outcome.OK, 200, False),
    ],
)
def test_what_is_retried(outcome: Outcome, status: int | None, expected: bool) -> None:
    """Transient failures and the listed statuses are retried; a 404, DNS or TLS failure is not."""
    assert is_retryable(outcome, status, STATUSES) is expected


def test_overload_signals() -> None:
    """429, 5xx, timeouts and refused connections slow a host down; a 404 does not."""
    assert is_overload(Outcome.HTTP_ERROR, 429)
    assert is_overload(Outcome.HTTP_ERROR, 503)
    assert is_overload(Outcome.TIMEOUT, None)
    assert not is_overload(Outcome.HTTP_ERROR, 404)
    assert not is_overload(Outcome.OK, 200)


def test_backoff_doubles_with_jitter_and_cap() -> None:
    """Retry n waits between half and all of base * 2**(n-1), never more than the cap."""
    rng = random.Random(7)
    for attempt, full in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (10, 30.0)]:
        delays = [backoff_delay(attempt, 1.0, 30.0, rng) for _ in range(200)]
        assert min(delays) >= full / 2
        assert max(delays) <= full
        assert max(delays) - min(delays) > full / 4  # jittered, not constant


def test_retry_after_forms() -> None:
    """Delta-seconds and HTTP-dates are read; a past date is 0; junk is ignored."""
    now = 1_700_000_000.0
    assert parse_retry_after("2", now) == 2.0
    assert parse_retry_after(" 120 ", now) == 120.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now) == pytest.approx(30.0, abs=1.0)
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("-5", now) is None
    assert parse_retry_after(None, now) is None


def test_throttle_halves_on_overload_once_per_round_trip() -> None:
    """A burst of 503s from requests in flight together cuts the limit once, not per reply;
    a later overload cuts again; the extra spacing grows."""
    t = Throttle(cap=16)
    assert t.concurrency == 16
    assert t.on_overload(0.0)
    assert t.concurrency == 8
    assert t.delay_s == pytest.approx(0.25)
    assert not t.on_overload(0.1)  # same burst
    assert not t.on_overload(0.4)
    assert t.concurrency == 8
    assert t.on_overload(1.0)
    assert t.concurrency == 4
    assert t.delay_s == pytest.approx(0.5)
    for _ in range(10):
        t.on_overload(100.0 + _)
    assert t.concurrency == 1  # never below one
    assert t.delay_s <= t.max_delay_s


def test_throttle_recovers_on_success() -> None:
    """After overload, successes shrink the extra delay to zero and grow the limit back to
    the cap, about one per round trip."""
    t = Throttle(cap=8)
    t.on_overload(0.0)
    t.on_overload(10.0)
    assert t.concurrency == 2
    now = 20.0
    for _ in range(200):
        now += 0.01
        t.on_success(now, 0.01)
    assert t.delay_s == 0.0
    assert t.concurrency == 8


def test_fast_host_is_never_throttled() -> None:
    """With high limits, a host that answers quickly keeps its full concurrency: the throttle
    costs nothing when nothing is wrong."""
    t = Throttle(cap=64)
    rng = random.Random(1)
    for i in range(10_000):
        t.on_success(i * 0.001, rng.uniform(0.001, 0.2))
    assert t.concurrency == 64
    assert t.delay_s == 0.0


def test_host_that_slows_down_gets_fewer_requests() -> None:
    """Latency far above the fastest seen (and over a second) steps the limit down."""
    t = Throttle(cap=8)
    now = 0.0
    for _ in range(20):
        now += 0.05
        t.on_success(now, 0.05)
    for _ in range(40):
        now += 1.0
        t.on_success(now, 3.0)
    assert t.concurrency < 8


def test_retry_plan() -> None:
    """A 503 with Retry-After pauses the host (capped) and the retry waits at least as long;
    the last attempt pauses the host but is not retried; a 404 is neither."""
    from crawler.config import RetriesConfig
    from crawler.politeness import plan_retry

    cfg = RetriesConfig(attempts=3, backoff_base_s=0.1, retry_after_max_s=60)
    rng = random.Random(3)
    plan = plan_retry(
        retryable=True, status=503, retry_after="5", attempt=1, retries=cfg, now_wall=0, rng=rng
    )
    assert plan.pause_s == 5.0
    assert plan.delay_s == 5.0
    capped = plan_retry(
        retryable=True, status=429, retry_after="900", attempt=1, retries=cfg, now_wall=0, rng=rng
    )
    assert capped.pause_s == capped.delay_s == 60.0
    last = plan_retry(
        retryable=True, status=503, retry_after="5", attempt=3, retries=cfg, now_wall=0, rng=rng
    )
    assert (last.pause_s, last.delay_s) == (5.0, None)
    plain = plan_retry(
        retryable=True, status=500, retry_after=None, attempt=2, retries=cfg, now_wall=0, rng=rng
    )
    assert plain.pause_s is None
    assert plain.delay_s is not None
    assert 0.1 <= plain.delay_s <= 0.2
    missing = plan_retry(
        retryable=False, status=404, retry_after=None, attempt=1, retries=cfg, now_wall=0, rng=rng
    )
    assert (missing.pause_s, missing.delay_s) == (None, None)
