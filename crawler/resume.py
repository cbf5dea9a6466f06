"""Resume decisions for downloads: what to ask for, and what to do with the answer.

Owns: the ``Range`` / ``If-Range`` request headers for a partial file, parsing
``Content-Range``, and the verdict on a response given the partial file's size and stored
validator: append to it, write the body from scratch (a 200: the server ignored Range or the
file changed), restart with a fresh request (a 206 at the wrong offset or with another
validator), done (416 and the partial is already the whole file), or fail.
Must not: do I/O, know about httpx or the disk. Pure: plain values in, a verdict out.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "Action",
    "ContentRange",
    "Partial",
    "Verdict",
    "decide",
    "parse_content_range",
    "range_headers",
    "validators",
]

_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)", re.IGNORECASE)


class Action(enum.StrEnum):
    APPEND = "append"  # the body continues the partial file
    WRITE = "write"  # the body is the whole file: truncate the partial and write it
    RESTART = "restart"  # drop the partial, do not read this body, request again without Range
    DONE = "done"  # the partial file already is the whole file
    FAIL = "fail"  # nothing sensible to do with this response


@dataclass(frozen=True, slots=True)
class Partial:
    """What is on disk of an interrupted download, and the validators it was fetched under."""

    size: int
    etag: str | None = None
    last_modified: str | None = None
    total: int | None = None

    @property
    def resumable(self) -> bool:
        return self.size > 0 and (self.etag is not None or self.last_modified is not None)


@dataclass(frozen=True, slots=True)
class ContentRange:
    start: int | None  # None for ``bytes */TOTAL`` (a 416's answer)
    end: int | None
    total: int | None  # None for ``/*``


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    reason: str
    total: int | None = None  # the whole file's size, when the response says it


def parse_content_range(value: str | None) -> ContentRange | None:
    """``bytes 100-199/1000``, ``bytes 100-199/*`` or ``bytes */1000``; None when malformed."""
    if not value:
        return None
    m = _CONTENT_RANGE.fullmatch(value.strip())
    if m is None:
        return None
    start, end, total = m.groups()
    if start is None:
        return None if total == "*" else ContentRange(None, None, int(total))
    s, e = int(start), int(end)
    t = None if total == "*" else int(total)
    if e < s or (t is not None and e >= t):
        return None
    return ContentRange(s, e, t)


def validators(headers: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The (strong ETag, Last-Modified) a response offers for If-Range. A weak ETag cannot be
    used with If-Range (RFC 9110 13.1.5); an encoded body's offsets are not the file's, so it
    offers none."""
    if headers.get("content-encoding", "identity").lower() not in ("identity", ""):
        return None, None
    etag = headers.get("etag")
    if etag is not None and (etag.startswith("W/") or not etag.startswith('"')):
        etag = None
    return etag, headers.get("last-modified")


def range_headers(partial: Partial | None) -> dict[str, str]:
    """Headers for a request that continues ``partial`` (empty: fetch the whole file).

    Without a validator there is no safe way to know the server still has the same file, so a
    partial without one is fetched again from the start.
    """
    if partial is None or not partial.resumable:
        return {}
    validator = partial.etag if partial.etag is not None else partial.last_modified
    assert validator is not None
    return {"Range": f"bytes={partial.size}-", "If-Range": validator}


def _declared_length(headers: Mapping[str, str]) -> int | None:
    if headers.get("content-encoding", "identity").lower() not in ("identity", ""):
        return None
    value = headers.get("content-length", "")
    return int(value) if value.isdigit() else None


def decide(
    partial: Partial | None, sent_range: bool, status: int, headers: Mapping[str, str]
) -> Verdict:
    """What to do with a 2xx or 416 response to a request made with ``range_headers(partial)``
    (``sent_range`` says whether those were non-empty). ``headers`` have lower-case names."""
    if status == 206:
        cr = parse_content_range(headers.get("content-range"))
        if cr is None or cr.start is None:
            return Verdict(Action.RESTART, "206 without a usable Content-Range")
        if not sent_range or partial is None:
            if cr.start == 0:
                return Verdict(Action.WRITE, "206 from the start", cr.total)
            return Verdict(Action.FAIL, f"206 at offset {cr.start} without a Range request")
        if cr.start != partial.size:
            return Verdict(
                Action.RESTART, f"206 starts at {cr.start}, the partial file has {partial.size}"
            )
        etag, last_modified = validators(headers)
        if partial.etag is not None and etag is not None and etag != partial.etag:
            return Verdict(Action.RESTART, f"ETag changed from {partial.etag} to {etag}")
        if (
            partial.etag is None
            and partial.last_modified is not None
            and last_modified is not None
            and last_modified != partial.last_modified
        ):
            return Verdict(Action.RESTART, "Last-Modified changed")
        if partial.total is not None and cr.total is not None and cr.total != partial.total:
            return Verdict(Action.RESTART, f"size changed from {partial.total} to {cr.total}")
        return Verdict(Action.APPEND, f"resuming at {cr.start}", cr.total)
    if 200 <= status < 300:
        total = _declared_length(headers)
        if sent_range:
            return Verdict(
                Action.WRITE,
                "full body instead of a range (file changed or Range not supported)",
                total,
            )
        return Verdict(Action.WRITE, "full body", total)
    if status == 416:
        cr = parse_content_range(headers.get("content-range"))
        if not sent_range or partial is None:
            return Verdict(Action.FAIL, "416 to a request without Range")
        if cr is not None and cr.total is not None and cr.total == partial.size:
            return Verdict(Action.DONE, "416: the partial file is already complete", cr.total)
        return Verdict(Action.RESTART, "416: the partial file does not fit the server's file")
    return Verdict(Action.FAIL, f"HTTP {status}")
