"""Sitemaps (sitemaps.org protocol): a stored sitemap file in, page and sitemap URLs out.

Owns: reading a ``urlset`` or ``sitemapindex`` document, plain or gzipped, with defusedxml (no
entity expansion, no external entities), within the protocol's caps: 50,000 URLs and 50 MB
uncompressed per file (both settings). Pure: bytes in, URLs out.
Must not: fetch, store, or decide scope (sitemap URLs go through the same scope rules as links).
defusedxml is imported here and nowhere else.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from xml.etree.ElementTree import ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

__all__ = ["SitemapLinks", "parse_sitemap"]

_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True, slots=True)
class SitemapLinks:
    """What one sitemap file lists: pages, nested sitemaps (of an index), and a problem."""

    pages: list[str] = field(default_factory=list)
    sitemaps: list[str] = field(default_factory=list)
    error: str | None = None  # one line when the file could not be read (partly or at all)


def _gunzip(data: bytes, max_bytes: int) -> bytes | None:
    """Decompress at most ``max_bytes`` (+1 to notice more); None when it is not gzip."""
    inflater = zlib.decompressobj(wbits=31)
    try:
        return inflater.decompress(data, max_bytes + 1)
    except zlib.error:
        return None


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def parse_sitemap(
    data: bytes, *, max_urls: int = 50_000, max_bytes: int = 50_000_000
) -> SitemapLinks:
    """Read a sitemap body. More than ``max_urls`` entries: the first ``max_urls`` are taken
    and ``error`` says so; more than ``max_bytes`` uncompressed: nothing is taken."""
    if data.startswith(_GZIP_MAGIC):
        unpacked = _gunzip(data, max_bytes)
        if unpacked is None:
            return SitemapLinks(error="corrupt gzip")
        data = unpacked
    if len(data) > max_bytes:
        return SitemapLinks(error=f"larger than {max_bytes} bytes uncompressed")
    try:
        root = fromstring(data)
    except (ParseError, DefusedXmlException) as exc:
        return SitemapLinks(error=f"not a sitemap: {exc}")
    kind = _local(root.tag)
    if kind not in ("urlset", "sitemapindex"):
        return SitemapLinks(error=f"not a sitemap: root element <{kind}>")
    found: list[str] = []
    error = None
    for entry in root:
        loc = next((c.text for c in entry if _local(c.tag) == "loc" and c.text), None)
        if loc is None:
            continue
        if len(found) >= max_urls:
            error = f"more than {max_urls} URLs: the rest ignored"
            break
        found.append(loc.strip())
    if kind == "urlset":
        return SitemapLinks(pages=found, error=error)
    return SitemapLinks(sitemaps=found, error=error)
