"""The values that cross stages.

Stages (frontier, scheduler, fetcher, storage, extract) never import each other: they exchange
these frozen values, and ``engine`` wires them. Nothing here does I/O.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass
from typing import Any, Protocol

__all__ = [
    "BodySink",
    "CrawlRequest",
    "FetchResult",
    "Outcome",
    "PageRecord",
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
    CHECKSUM_MISMATCH = "checksum_mismatch"  # a download's sha256 differs: kept aside, not done


@dataclass(frozen=True, slots=True)
class CrawlRequest:
    """One URL to fetch, as the frontier hands it out.

    ``url`` is canonical (see :func:`crawler.urls.canonicalize`); ``depth`` counts link hops
    from a seed; ``redirects`` counts redirect hops that led here.
    """

    url: str
    host: str
    depth: int
    redirects: int = 0


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

    def to_json_dict(self) -> dict[str, Any]:
        """The record as the manifest writes it (outcome as its string value)."""
        d = asdict(self)
        d["outcome"] = self.outcome.value
        return d

    @classmethod
    def from_json_dict(cls, d: dict[str, Any]) -> PageRecord:
        """Inverse of :meth:`to_json_dict`."""
        return cls(**{**d, "outcome": Outcome(d["outcome"])})


class BodySink(Protocol):
    """Where the fetcher streams a decoded body; storage provides it.

    ``write`` is called with each decoded chunk in order; the fetcher never holds the whole body.
    """

    def write(self, chunk: bytes) -> None: ...
