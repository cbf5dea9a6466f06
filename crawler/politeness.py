"""Politeness decisions: when to retry, how long to back off, how hard to push one host.

Owns: the pure rules the scheduler and the engine apply per host: which failures are retried,
exponential backoff with jitter, ``Retry-After`` parsing, and the adaptive per-host throttle
(AIMD on concurrency plus a growing spacing on overload). Everything takes ``now`` (and a random
source where there is jitter), so each rule is unit-tested with a fake clock.
Must not: wait, do I/O, or know which host is which (the scheduler keeps one state per host).
"""

from __future__ import annotations

import email.utils
import random
from dataclasses import dataclass

from crawler.config import RetriesConfig
from crawler.models import Outcome

__all__ = [
    "OVERLOAD_STATUSES",
    "RetryPlan",
    "Throttle",
    "backoff_delay",
    "is_overload",
    "is_retryable",
    "parse_retry_after",
    "plan_retry",
]

# Outcomes that are transient whatever the status: the request may well succeed next time.
_TRANSIENT = frozenset({Outcome.CONNECT, Outcome.TIMEOUT, Outcome.PROTOCOL, Outcome.NETWORK})
# Answers that mean "you are going too fast" or "I am struggling": the host is slowed down.
OVERLOAD_STATUSES = frozenset({429, 500, 502, 503, 504})


def is_retryable(outcome: Outcome, status: int | None, statuses: frozenset[int]) -> bool:
    """Is this result worth another attempt (connect errors, timeouts, protocol errors,
    broken connections, and the listed HTTP statuses)?"""
    if outcome in _TRANSIENT:
        return True
    return outcome is Outcome.HTTP_ERROR and status in statuses


def is_overload(outcome: Outcome, status: int | None) -> bool:
    """Does this result say the host is overloaded (429, 5xx, timeouts, refused connections)?"""
    if outcome in (Outcome.TIMEOUT, Outcome.CONNECT):
        return True
    return status in OVERLOAD_STATUSES


def backoff_delay(attempt: int, base_s: float, max_s: float, rng: random.Random) -> float:
    """Delay before retry number ``attempt`` (1 for the first retry): ``base * 2**(attempt-1)``
    capped at ``max_s``, then jittered to between half and all of it ("equal jitter"), so
    retries of many URLs that failed together do not come back together."""
    full = min(max_s, base_s * 2.0 ** max(0, attempt - 1))
    return full / 2 + rng.uniform(0, full / 2)


def parse_retry_after(value: str | None, now_wall: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or an HTTP-date), or None
    when there is none or it cannot be read. A date in the past means 0."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None  # an HTTP-date is always GMT; a zone-less date is not one
    return max(0.0, when.timestamp() - now_wall)


@dataclass(frozen=True, slots=True)
class RetryPlan:
    """What to do after a failed request: pause its host, retry it later, both or neither."""

    pause_s: float | None  # the host's Retry-After pause (capped); None: no pause
    delay_s: float | None  # retry the URL after this long; None: settle the failure now


def plan_retry(
    *,
    retryable: bool,
    status: int | None,
    retry_after: str | None,
    attempt: int,
    retries: RetriesConfig,
    now_wall: float,
    rng: random.Random,
) -> RetryPlan:
    """The plan after request number ``attempt`` of a URL failed: a 429 / 503 with Retry-After
    pauses the host (capped by ``retry_after_max_s``) whether or not the URL is retried; a
    retryable failure with attempts left is retried after the backoff, and no sooner than the
    pause ends."""
    pause = None
    if status in (429, 503):
        pause = parse_retry_after(retry_after, now_wall)
        if pause is not None:
            pause = min(pause, retries.retry_after_max_s)
    if not retryable or attempt >= retries.attempts:
        return RetryPlan(pause, None)
    backoff = backoff_delay(attempt, retries.backoff_base_s, retries.backoff_max_s, rng)
    return RetryPlan(pause, max(backoff, pause or 0.0))


@dataclass(eq=False, slots=True)
class Throttle:
    """Adaptive limits of one host, within the job's caps (like Scrapy's AutoThrottle, but on
    concurrency and error bursts too).

    - ``limit``: requests in flight allowed, additive increase (+1 per ``limit`` successes,
      i.e. about +1 per round trip) up to ``cap``, halved on overload.
    - ``delay_s``: extra spacing between request starts: doubled on overload (at least
      ``min_delay_s``), shrunk by a quarter on each success.
    - A burst of failures from requests that were in flight together counts once: after a
      decrease, further overload signals are ignored for one smoothed round trip (as TCP
      does per window).
    - Latency: when the smoothed latency exceeds both ``slow_factor`` times the fastest seen
      and ``slow_floor_s``, the limit steps down by one per round trip instead of growing,
      so a host that slows under load is not pushed harder. On a fast host nothing changes:
      a crawl with high limits pays no cost for this.
    """

    cap: int
    limit: float = 0.0
    delay_s: float = 0.0
    latency_s: float | None = None  # smoothed (EWMA)
    fastest_s: float | None = None
    quiet_until: float = 0.0
    max_delay_s: float = 30.0
    min_delay_s: float = 0.25
    slow_factor: float = 4.0
    slow_floor_s: float = 1.0

    def __post_init__(self) -> None:
        if self.limit <= 0:
            self.limit = float(self.cap)

    @property
    def concurrency(self) -> int:
        """Requests in flight allowed now."""
        return max(1, int(self.limit))

    def _round_trip(self) -> float:
        return max(self.latency_s or 0.0, 0.5)

    def on_success(self, now: float, latency_s: float) -> None:
        """A response that did not signal overload, after ``latency_s``."""
        self.latency_s = (
            latency_s if self.latency_s is None else 0.8 * self.latency_s + 0.2 * latency_s
        )
        self.fastest_s = latency_s if self.fastest_s is None else min(self.fastest_s, latency_s)
        self.delay_s = 0.0 if self.delay_s < 0.01 else self.delay_s * 0.75
        slow = self.latency_s > max(self.slow_factor * self.fastest_s, self.slow_floor_s)
        if slow:
            if now >= self.quiet_until:
                self.limit = max(1.0, self.limit - 1.0)
                self.quiet_until = now + self._round_trip()
        else:
            self.limit = min(float(self.cap), self.limit + 1.0 / self.limit)

    def on_overload(self, now: float) -> bool:
        """A 429 / 5xx / timeout / refused connection. Returns True when the limits were cut
        (False inside the quiet period after a cut)."""
        if now < self.quiet_until:
            return False
        self.limit = max(1.0, self.limit / 2)
        self.delay_s = min(self.max_delay_s, max(self.min_delay_s, self.delay_s * 2))
        self.quiet_until = now + self._round_trip()
        return True
