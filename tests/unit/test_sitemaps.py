"""Sitemap parsing: urlset, index, gzip, protocol caps, hostile XML."""

from __future__ import annotations

import gzip

from crawler.sitemaps import parse_sitemap

NS = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'


def urlset(n: int) -> bytes:
    locs = "".join(
        f"<url><loc> https://a.org/p{i} </loc><lastmod>2026-01-01</lastmod></url>" for i in range(n)
    )
    return f'<?xml version="1.0" encoding="UTF-8"?><urlset {NS}>{locs}</urlset>'.encode()


def test_urlset_pages() -> None:
    """A urlset's <loc>s are pages, whitespace trimmed."""
    found = parse_sitemap(urlset(3))
    assert found.pages == ["https://a.org/p0", "https://a.org/p1", "https://a.org/p2"]
    assert found.sitemaps == []
    assert found.error is None


def test_index_lists_sitemaps_and_gzip_is_read() -> None:
    """A sitemapindex lists nested sitemaps; a gzipped file is read the same."""
    index = (
        f"<sitemapindex {NS}><sitemap><loc>https://a.org/s1.xml.gz</loc></sitemap></sitemapindex>"
    )
    found = parse_sitemap(gzip.compress(index.encode()))
    assert found.sitemaps == ["https://a.org/s1.xml.gz"]
    assert found.pages == []


def test_caps() -> None:
    """More than max_urls: the first max_urls and a note; more than max_bytes unpacked:
    nothing (a gzip bomb is not inflated past the cap)."""
    found = parse_sitemap(urlset(10), max_urls=4)
    assert len(found.pages) == 4
    assert found.error is not None
    assert "more than 4" in found.error
    bomb = gzip.compress(b" " * 5_000_000)
    found = parse_sitemap(bomb, max_bytes=1_000_000)
    assert found.pages == []
    assert found.error is not None
    assert "larger than" in found.error


def test_hostile_and_wrong_documents() -> None:
    """Entity expansion (billion laughs) is refused; HTML and junk are reported, not raised."""
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        b"<urlset><url><loc>&b;</loc></url></urlset>"
    )
    for body in (laughs, b"<html><body>hi</body></html>", b"\x1f\x8bnot gzip", b"junk"):
        found = parse_sitemap(body)
        assert found.pages == []
        assert found.error is not None
