"""Links out of a stored HTML page: pure, bytes and a base URL in, absolute URLs out.

Owns: HTML parsing (selectolax's Lexbor engine, imported here and nowhere else), ``<base href>``,
which elements and attributes carry links, ``rel=nofollow`` and ``<meta name=robots>``.
Must not: decide scope or dedup (the frontier does), or do I/O. Never raises on bad input: a
page that is not HTML, not UTF-8 or malformed gives whatever links can be read from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from selectolax.lexbor import LexborHTMLParser

__all__ = ["Links", "extract_links", "is_html"]

_PAGE_SELECTOR = "a[href], area[href], link[href]"
_ASSET_SELECTOR = "img[src], img[srcset], script[src], source[src], source[srcset], iframe[src]"
# <link rel> values that name no document worth fetching.
_SKIP_LINK_RELS = frozenset({"dns-prefetch", "preconnect"})
_SCHEMES = ("http:", "https:")
# Hrefs urljoin rewrites beyond joining (drops tabs, newlines, ";params", an empty query or
# fragment): they take urljoin itself. Otherwise an absolute path without dot segments joins to
# the base's origin + href, and a relative path ("../b.html?q") to the base's folder with dot
# segments resolved as urljoin resolves them (tests compare both shortcuts with urljoin).
_ODD = re.compile(r"[\t\r\n;]|\?#|[?#]$")
_RELATIVE = re.compile(r"[^:/?#\x00-\x20\x7f][^:\x00-\x20\x7f]*")
_QUERY_OR_FRAGMENT = re.compile(r"[?#]")


@dataclass(frozen=True, slots=True)
class Links:
    """What a page links to, and whether its robots meta tag lets us follow or keep it."""

    urls: tuple[str, ...]
    nofollow: bool = False  # <meta name=robots content=nofollow>: no link was taken
    noindex: bool = False


def is_html(content_type: str | None) -> bool:
    """Does a Content-Type header name an HTML (or XHTML) document?"""
    if not content_type:
        return False
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime in ("text/html", "application/xhtml+xml")


def _srcset_urls(value: str) -> list[str]:
    # "a.jpg 1x, b.jpg 2x": each candidate is a URL followed by an optional descriptor.
    return [c.split()[0] for c in value.split(",") if c.strip()]


class _Joiner:
    """``urljoin(base, href)`` for one page's base URL, without re-parsing the base per link."""

    __slots__ = ("base", "folder", "origin")

    def __init__(self, base: str) -> None:
        self.base = base
        parts = urlsplit(base)
        http = parts.scheme in ("http", "https") and not _ODD.search(base)
        self.origin = f"{parts.scheme}://{parts.netloc}" if http else None
        folder = parts.path.split("/")
        if folder[-1]:
            del folder[-1]
        self.folder = folder

    def join(self, href: str) -> str | None:
        """The absolute URL, or None when urljoin rejects it (a malformed IPv6 literal)."""
        origin = self.origin
        if origin is not None and not _ODD.search(href):
            if href[0] == "/" and href[1:2] != "/" and "/." not in href:
                return origin + href
            if _RELATIVE.fullmatch(href):
                cut = _QUERY_OR_FRAGMENT.search(href)
                path, tail = (
                    (href, "") if cut is None else (href[: cut.start()], href[cut.start() :])
                )
                segments = self.folder + path.split("/")
                segments[1:-1] = filter(None, segments[1:-1])
                resolved: list[str] = []
                for segment in segments:
                    if segment == "..":
                        if resolved:
                            resolved.pop()
                    elif segment != ".":
                        resolved.append(segment)
                if segments[-1] in (".", ".."):
                    resolved.append("")
                joined = "/".join(resolved)
                if joined[:1] != "/":  # ".." climbed past the root, or nothing is left
                    joined = "/" + joined
                return f"{origin}{joined}{tail}"
        try:
            return urljoin(self.base, href)
        except ValueError:
            return None


def extract_links(body: bytes, base_url: str, *, assets: bool = False) -> Links:
    """Absolute http(s) URLs linked from ``body`` (HTML), in document order, without repeats.

    ``base_url`` is the URL the page was fetched from; ``<base href>`` overrides it. Links with
    ``rel=nofollow`` are skipped; ``<meta name=robots content=nofollow>`` (or ``none``) gives
    no links at all. Fragments are kept: canonicalization is the frontier's job.
    """
    try:
        tree = LexborHTMLParser(body)
    except (ValueError, UnicodeError, MemoryError):
        return Links(())
    nofollow = noindex = False
    for meta in tree.css("meta[name]"):
        if (meta.attributes.get("name") or "").strip().lower() == "robots":
            content = (meta.attributes.get("content") or "").lower()
            tokens = {t.strip() for t in content.split(",")}
            nofollow |= bool(tokens & {"nofollow", "none"})
            noindex |= bool(tokens & {"noindex", "none"})
    if nofollow:
        return Links((), nofollow=True, noindex=noindex)

    base = base_url
    base_node = tree.css_first("base[href]")
    if base_node is not None:
        base_href = (base_node.attributes.get("href") or "").strip()
        if base_href:
            base = urljoin(base_url, base_href)

    raw: list[str] = []  # attribute values, in document order
    for node in tree.css(_PAGE_SELECTOR):
        attrs = node.attributes
        rel = {r.lower() for r in (attrs.get("rel") or "").split()}
        if "nofollow" in rel:
            continue
        if node.tag == "link" and rel & _SKIP_LINK_RELS:
            continue
        if link := attrs.get("href"):
            raw.append(link)
    if assets:
        for node in tree.css(_ASSET_SELECTOR):
            attrs = node.attributes
            if src := attrs.get("src"):
                raw.append(src)
            if srcset := attrs.get("srcset"):
                raw.extend(_srcset_urls(srcset))

    out: dict[str, None] = {}
    try:
        joiner = _Joiner(base)
    except ValueError:
        return Links((), noindex=noindex)
    for value in raw:
        href = value.strip()
        if not href or href[0] == "#":
            continue
        url = joiner.join(href)
        if url is not None and url[:6].lower().startswith(_SCHEMES):
            out[url] = None
    return Links(tuple(out), noindex=noindex)
