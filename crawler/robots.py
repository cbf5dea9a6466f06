"""robots.txt rules (RFC 9309) of one host, parsed with protego.

Owns: turning a robots.txt response (status and body) into a verdict: rules to apply (2xx),
allow-all (4xx, or too many redirects), or unreachable (5xx, 429, network failure: the host is
treated as fully disallowed for now and the engine retries later); matching a URL against the
rules for the job's user-agent token; the host's Crawl-delay / Request-rate and ``Sitemap:``
lines. protego is imported here and nowhere else.
Must not: fetch anything, wait, or know the time (the scheduler keeps the cache and its expiry).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from protego import Protego

__all__ = ["RobotsRules", "agent_token", "rules_from_response"]

_TOKEN = re.compile(r"[A-Za-z_-]+")


def agent_token(user_agent: str) -> str:
    """The product token robots.txt groups are matched against: ``crawler/0.1 (+url)`` ->
    ``crawler`` (RFC 9309 2.2.1: letters, ``_`` and ``-``)."""
    match = _TOKEN.match(user_agent.strip())
    return match.group(0).lower() if match else "*"


@dataclass(frozen=True, slots=True)
class RobotsRules:
    """What one host's robots.txt allows the job's agent. ``unreachable`` means the file
    could not be had (5xx, 429, network): everything is disallowed until it is fetched again.
    """

    agent: str
    status: int | None
    _parser: Protego | None = None  # None: allow everything
    unreachable: bool = False

    @classmethod
    def allow_all(cls, agent: str, status: int | None) -> RobotsRules:
        return cls(agent, status)

    @classmethod
    def unavailable(cls, agent: str, status: int | None) -> RobotsRules:
        return cls(agent, status, unreachable=True)

    def allowed(self, url: str) -> bool:
        """May the agent fetch ``url`` (an absolute URL of this host)?"""
        if self.unreachable:
            return False
        if self._parser is None:
            return True
        # robots.txt itself is always allowed (RFC 9309 2.2.2: implicitly allowed).
        if url.endswith("/robots.txt"):
            return True
        return bool(self._parser.can_fetch(url, self.agent))

    def crawl_delay_s(self) -> float | None:
        """The host's minimum spacing for this agent: ``Crawl-delay``, or the spacing a
        ``Request-rate`` implies, whichever is longer; None when neither is given."""
        if self._parser is None:
            return None
        delays = []
        delay = self._parser.crawl_delay(self.agent)
        if delay is not None and delay > 0:
            delays.append(float(delay))
        rate = self._parser.request_rate(self.agent)
        if rate is not None and rate.requests > 0:
            delays.append(rate.seconds / rate.requests)
        return max(delays) if delays else None

    def sitemaps(self) -> list[str]:
        """The ``Sitemap:`` URLs listed (absolute URLs, as written)."""
        if self._parser is None:
            return []
        return list(self._parser.sitemaps)


def rules_from_response(
    agent: str, status: int | None, body: bytes, *, max_bytes: int = 512_000
) -> RobotsRules:
    """The verdict for a robots.txt answer after redirects were followed.

    ``status`` None means no answer at all (DNS, connect, timeout, too many redirects are
    decided by the caller: too many redirects is :meth:`RobotsRules.allow_all`).
    """
    if status is None or status == 429 or status >= 500:
        return RobotsRules.unavailable(agent, status)
    if 400 <= status < 500 or not 200 <= status < 300:
        return RobotsRules.allow_all(agent, status)
    text = body[:max_bytes].decode("utf-8", errors="replace")
    return RobotsRules(agent, status, Protego.parse(text))
