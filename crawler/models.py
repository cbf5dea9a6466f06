"""The values that cross stages.

Stages (frontier, scheduler, fetcher, storage, extract) never import each other: they exchange
these frozen values, and ``engine`` wires them. Nothing here does I/O.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, fields
from typing import Any, Protocol

__all__ = [
    "BodySink",
    "CrawlRequest",
    "FetchResult",
    "Outcome",
    "PageRecord",
    "RequestKind",
]


class Outcome(enum.StrEnum):
    """What happened to one URL: the manifest's ``outcome`` field.

    ``OK`` is a 2xx body stored on disk; every other value is a recorded result, not an error
    of the crawler.
    """

    OK = "ok"
    HTTP_ERROR = "http_error"  # a non-2xx, non-redirect status: body stored, links not followed
    REDIRECT = "redirect"  # a 3xx with Location: the target went back to the frontier
    TOO_MANY_REDIRECTS = "too_many_redirects"
    DNS = "dns"
    CONNECT = "connect"
    TLS = "tls"
    TIMEOUT = "timeout"
    NETWORK = "network"  # the connection broke after it was made (reset, closed early)
    PROTOCOL = "protocol"
    TOO_LARGE = "too_large"
    INVALID_URL = "invalid_url"
    STORAGE = "storage"  # the body could not be written (disk full, permissions)
    ROBOTS_DISALLOWED = "robots_disallowed"  # robots.txt forbids it (or stayed unreachable)
    REDIRECT_LOOP = "redirect_loop"  # a redirect back to a URL of its own chain
    TRAP = "trap"  # a crawler-trap limit (URL length, path depth, repeats, pattern budget)
    NOT_MODIFIED = "not_modified"  # a recrawl's conditional GET got 304: the stored body is kept
    CHECKSUM_MISMATCH = "checksum_mismatch"  # a download's sha256 differs: kept aside, not done


class RequestKind(enum.IntEnum):
    """What a request is for: the body of a page, or a sitemap to read URLs from."""

    PAGE = 0
    SITEMAP = 1
    ROBOTS = 2  # never queued in the frontier: the scheduler makes it when a host needs rules


@dataclass(frozen=True, slots=True)
class CrawlRequest:
    """One URL to fetch, as the frontier hands it out.

    ``url`` is canonical (see :func:`crawler.urls.canonicalize`); ``depth`` counts link hops
    from a seed; ``chain`` holds the URLs whose redirects led here, the originally requested
    one first; ``attempts`` counts earlier tries that ended in a retryable failure.
    """

    url: str
    host: str
    depth: int
    chain: tuple[str, ...] = ()
    kind: RequestKind = RequestKind.PAGE
    attempts: int = 0

    @property
    def redirects(self) -> int:
        """Redirect hops that led here."""
        return len(self.chain)


@dataclass(frozen=True, slots=True)
class FetchResult:
    """What the fetcher saw for one request; the body itself went to a :class:`BodySink`."""

    outcome: Outcome
    status: int | None = None
    http_version: str | None = None
    content_type: str | None = None
    location: str | None = None  # absolute redirect target, for 3xx
    error: str | None = None  # one line for the manifest when the outcome is a failure
    elapsed_s: float = 0.0
    headers: tuple[tuple[str, str], ...] = ()

    def header(self, name: str) -> str | None:
        """The first response header called ``name`` (lower case), or None."""
        return next((v for k, v in self.headers if k.lower() == name), None)


@dataclass(frozen=True, slots=True)
class PageRecord:
    """One manifest line: exactly one per URL the frontier admitted and settled."""

    url: str
    final_url: str
    outcome: Outcome
    depth: int
    status: int | None = None
    content_type: str | None = None
    bytes: int = 0
    sha256: str | None = None
    path: str | None = None
    http_version: str | None = None
    elapsed_s: float = 0.0
    error: str | None = None
    origin: str | None = None  # the URL first requested, when redirects led here
    attempts: int = 1  # requests made for this URL (more than one after retries)
    etag: str | None = None  # validators of the stored body, sent back when it is recrawled
    last_modified: str | None = None

    def to_json_dict(self) -> dict[str, Any]:
        """The record as the manifest writes it (outcome as its string value)."""
        # Every field is a scalar: a plain read beats asdict's recursive deep copy (this runs
        # twice per page: the state's record and the manifest line).
        d = {name: getattr(self, name) for name in _RECORD_FIELDS}
        d["outcome"] = self.outcome.value
        return d

    def to_json(self) -> str:
        """The record as one compact JSON line (no newline): the state and the manifest
        store this same text."""
        return json.dumps(self.to_json_dict(), separators=(",", ":"))

    @classmethod
    def from_json_dict(cls, d: dict[str, Any]) -> PageRecord:
        """Inverse of :meth:`to_json_dict` (records written before a field existed load too)."""
        return cls(**{**d, "outcome": Outcome(d["outcome"])})


_RECORD_FIELDS = tuple(f.name for f in fields(PageRecord))


class BodySink(Protocol):
    """Where the fetcher streams a decoded body; storage provides it.

    ``write`` is called with each decoded chunk in order; the fetcher never holds the whole body.
    """

    def write(self, chunk: bytes) -> None: ...
