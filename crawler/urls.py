"""URL canonical form and crawl scope: pure functions, no I/O.

Owns: what two spellings of one page have in common (the canonical URL that the frontier dedups
on), and whether a URL is in the job's scope. Must not: know about HTTP, timing or storage.
w3lib is imported here and nowhere else.
"""

from __future__ import annotations

import enum
import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from w3lib.url import canonicalize_url

__all__ = [
    "CanonicalURL",
    "QueryPolicy",
    "Scope",
    "ScopeVerdict",
    "TrapLimits",
    "canonical_parts",
    "canonicalize",
    "host_of",
    "hostname_of",
    "origin_of",
]

_DEFAULT_PORTS = {"http": 80, "https": 443}
# A URL made only of these is already in w3lib's canonical form once its scheme and host are
# lower-case and it has no query: nothing to percent-encode or decode, no dot segment to resolve
# (checked apart), so the costly w3lib call is skipped (tests check both paths agree).
_PLAIN_PATH = re.compile(r"[A-Za-z0-9/._~-]*")
_PLAIN_HOST = re.compile(r"[a-z0-9-]+(?:\.[a-z0-9-]+)*")


@dataclass(frozen=True, slots=True)
class QueryPolicy:
    """How query strings are treated: ``keep``, ``drop``, or ``strip`` the listed globs."""

    mode: str = "keep"
    strip_params: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in ("keep", "drop", "strip"):
            raise ValueError(f"unknown query mode {self.mode!r}")

    def apply(self, query: str) -> str:
        """The query string this policy keeps of ``query``."""
        if not query or self.mode == "keep":
            return query
        if self.mode == "drop":
            return ""
        pairs = parse_qsl(query, keep_blank_values=True)
        kept = [
            (k, v)
            for k, v in pairs
            if not any(fnmatch.fnmatchcase(k, g) for g in self.strip_params)
        ]
        return query if len(kept) == len(pairs) else urlencode(kept)


def canonicalize(url: str, policy: QueryPolicy = QueryPolicy()) -> str | None:
    """The canonical form of an absolute http(s) URL, or None when it is not one.

    Lower-case scheme and host, default port removed, dot segments resolved, percent-encoding
    normalized, query parameters sorted (after ``policy``), fragment dropped. Memoized: pages
    of one site repeat the same links (navigation), and w3lib's canonicalization is the
    costliest step per link.
    """
    found = _canonical_parts(url, policy)
    return None if found is None else found.url


def _canonicalize(url: str, policy: QueryPolicy) -> str | None:
    try:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            return None
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None
    if not host:
        return None
    netloc = host if ":" not in host else f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    if parts.username is not None or parts.password is not None:
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@{netloc}"
    query = policy.apply(parts.query)
    path = parts.path or "/"
    if (
        not query
        and "@" not in netloc
        and _PLAIN_HOST.fullmatch(host)
        and _PLAIN_PATH.fullmatch(path)
        and "/." not in path
    ):
        return f"{scheme}://{netloc}{path}"
    rebuilt = urlunsplit((scheme, netloc, path, query, ""))
    try:
        return str(canonicalize_url(rebuilt, keep_fragments=False))
    except ValueError:
        return None


class CanonicalURL(NamedTuple):
    """A canonical URL with the parts scope and trap checks look at, split once."""

    url: str
    host: str  # with the port when it is not the default: ``a.org:8443``
    hostname: str  # lower-case, no port or brackets
    path: str


def canonical_parts(url: str, policy: QueryPolicy = QueryPolicy()) -> CanonicalURL | None:
    """:func:`canonicalize`, with the canonical URL's host, hostname and path (memoized:
    pages of a site repeat their navigation links)."""
    return _canonical_parts(url, policy)


@lru_cache(maxsize=16384)
def _canonical_parts(url: str, policy: QueryPolicy) -> CanonicalURL | None:
    canonical = _canonicalize(url, policy)
    if canonical is None:
        return None
    parts = urlsplit(canonical)
    return CanonicalURL(
        canonical, parts.netloc.rpartition("@")[2], parts.hostname or "", parts.path
    )


def host_of(url: str) -> str:
    """Host of a canonical URL, with the port when it is not the default (``a.org:8443``)."""
    return urlsplit(url).netloc.rpartition("@")[2]


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL (where its ``/robots.txt`` lives)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def hostname_of(url: str) -> str:
    """Lower-case host name of a URL, without port or brackets (``::1``, ``a.org``)."""
    return urlsplit(url).hostname or ""


class ScopeVerdict(enum.StrEnum):
    """Why a URL is kept out of the crawl (``IN`` when it is not)."""

    IN = "in"
    OFFSITE = "offsite"
    DEPTH = "depth"
    EXCLUDED = "excluded"  # matched an exclude pattern, or none of the include patterns


class Scope:
    """The job's scope rules. ``check`` is pure and cheap; compile once, call per link."""

    __slots__ = ("_domains", "_exclude", "_include", "_max_depth", "_subdomains")

    def __init__(
        self,
        domains: Iterable[str],
        *,
        subdomains: bool = False,
        include: Iterable[str] = (),
        exclude: Iterable[str] = (),
        max_depth: int | None = None,
    ) -> None:
        self._domains = frozenset(d.lower() for d in domains)
        self._subdomains = subdomains
        self._include = [re.compile(p) for p in include]
        self._exclude = [re.compile(p) for p in exclude]
        self._max_depth = max_depth

    def __repr__(self) -> str:
        return (
            f"<Scope domains={sorted(self._domains)} subdomains={self._subdomains} "
            f"max_depth={self._max_depth}>"
        )

    def host_allowed(self, hostname: str) -> bool:
        """Is a bare hostname (no port) one of the scope's domains (or a subdomain of one)?"""
        if hostname in self._domains:
            return True
        if self._subdomains:
            return any(hostname.endswith("." + d) for d in self._domains)
        return False

    def check(self, url: str, depth: int, hostname: str | None = None) -> ScopeVerdict:
        """Verdict for a canonical URL found at ``depth`` link hops from a seed (``hostname``:
        the URL's, when the caller has it already)."""
        if not self.host_allowed(hostname_of(url) if hostname is None else hostname):
            return ScopeVerdict.OFFSITE
        if self._max_depth is not None and depth > self._max_depth:
            return ScopeVerdict.DEPTH
        if self._include and not any(p.search(url) for p in self._include):
            return ScopeVerdict.EXCLUDED
        if any(p.search(url) for p in self._exclude):
            return ScopeVerdict.EXCLUDED
        return ScopeVerdict.IN


_DIGITS = re.compile(r"[0-9]+")


class TrapLimits:
    """Crawler-trap limits: URL length, path depth, repeated path segments, and optionally a
    budget of URLs per pattern (digits replaced), the one limit that cuts an infinite calendar
    whose URLs stay short. :meth:`check` is cheap and pure but for the pattern counts it keeps
    (in memory: one counter per pattern seen, and only when a budget is set)."""

    __slots__ = ("_counts", "max_path_segments", "max_per_pattern", "max_repeats", "max_url_length")

    def __init__(
        self,
        *,
        max_url_length: int = 2048,
        max_path_segments: int = 32,
        max_segment_repeats: int = 3,
        max_per_pattern: int | None = None,
    ) -> None:
        self.max_url_length = max_url_length
        self.max_path_segments = max_path_segments
        self.max_repeats = max_segment_repeats
        self.max_per_pattern = max_per_pattern
        self._counts: dict[str, int] = {}

    def check(self, url: str, path: str | None = None) -> str | None:
        """Why a canonical URL is a trap by its shape (one line), or None when it is not
        (``path``: the URL's, when the caller has it already)."""
        if len(url) > self.max_url_length:
            return f"URL longer than {self.max_url_length} characters"
        if path is None:
            path = urlsplit(url).path
        if path.count("/") <= min(self.max_path_segments, self.max_repeats):
            return None  # too few segments to break either limit
        segments = [s for s in path.split("/") if s]
        if len(segments) > self.max_path_segments:
            return f"more than {self.max_path_segments} path segments"
        if len(segments) > self.max_repeats:
            seen: dict[str, int] = {}
            for segment in segments:
                n = seen[segment] = seen.get(segment, 0) + 1
                if n > self.max_repeats:
                    return (
                        f"path segment {segment[:40]!r} repeated more than {self.max_repeats} times"
                    )
        return None

    def charge(self, url: str) -> str | None:
        """Count a URL new to the crawl against its pattern's budget; why it is over budget,
        or None (always None without a budget)."""
        if self.max_per_pattern is None:
            return None
        pattern = _DIGITS.sub("0", url)
        n = self._counts.get(pattern, 0)
        if n >= self.max_per_pattern:
            return f"more than {self.max_per_pattern} URLs of pattern {pattern[:80]}"
        self._counts[pattern] = n + 1
        return None
