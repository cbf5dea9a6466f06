"""Link extraction from HTML bytes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from crawler.extract import extract_links, is_html

BASE = "https://ex.com/dir/page.html"


def test_links_resolved_in_order_without_repeats() -> None:
    """a, area and link hrefs resolve against the page URL; fragments-only and non-http drop."""
    body = (
        b'<a href="a.html">1</a><a href="/b">2</a><area href="../c">'
        b'<link href="s.css" rel=stylesheet>'
        b'<a href="#top">t</a><a href="mailto:x@y">m</a><a href="a.html">dup</a>'
        b'<link rel="dns-prefetch" href="//cdn.ex.com"><a href="https://other.org/x">o</a>'
    )
    assert extract_links(body, BASE).urls == (
        "https://ex.com/dir/a.html",
        "https://ex.com/b",
        "https://ex.com/c",
        "https://ex.com/dir/s.css",
        "https://other.org/x",
    )


def test_base_href_overrides_page_url() -> None:
    """<base href> is the base for every relative link."""
    body = b'<head><base href="https://cdn.ex.com/root/"></head><a href="x">x</a>'
    assert extract_links(body, BASE).urls == ("https://cdn.ex.com/root/x",)


def test_nofollow() -> None:
    """rel=nofollow skips one link; meta robots nofollow skips them all."""
    body = b'<a href="/a" rel="nofollow ugc">a</a><a href="/b">b</a>'
    assert extract_links(body, BASE).urls == ("https://ex.com/b",)
    meta = b'<meta name="ROBOTS" content="noindex, nofollow"><a href="/b">b</a>'
    links = extract_links(meta, BASE)
    assert links.urls == ()
    assert links.nofollow
    assert links.noindex


def test_assets_only_when_asked() -> None:
    """img, script, source, srcset and iframe are links only with assets on."""
    body = (
        b'<img src="i.png" srcset="i2.png 2x, i3.png 3x"><script src="/s.js"></script>'
        b'<iframe src="f.html"></iframe><picture><source srcset="p.webp"></picture>'
    )
    assert extract_links(body, BASE).urls == ()
    assert set(extract_links(body, BASE, assets=True).urls) == {
        "https://ex.com/dir/i.png",
        "https://ex.com/dir/i2.png",
        "https://ex.com/dir/i3.png",
        "https://ex.com/s.js",
        "https://ex.com/dir/f.html",
        "https://ex.com/dir/p.webp",
    }


def test_non_utf8_and_binary_do_not_crash() -> None:
    """Latin-1, invalid UTF-8 and random binary give links or nothing, never an error."""
    latin = "<a href='/caf\xe9'>\xff</a>".encode("latin-1")
    assert len(extract_links(latin, BASE).urls) == 1
    assert extract_links(bytes(range(256)) * 10, BASE).urls == ()


@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise(body: bytes) -> None:
    """Extraction is total over bytes."""
    links = extract_links(body, BASE)
    assert all(u.startswith(("http://", "https://")) for u in links.urls)


def test_is_html() -> None:
    """Only HTML and XHTML content types are parsed for links."""
    assert is_html("text/html; charset=utf-8")
    assert is_html("application/xhtml+xml")
    assert not is_html("application/json")
    assert not is_html(None)
