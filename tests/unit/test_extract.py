"""Link extraction from HTML bytes."""

from __future__ import annotations

import html
from urllib.parse import urljoin

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


_HREF_CHARS = st.sampled_from(list("abcXYZ019/._~-?#&=%:;@!$'()*+, \t\n\"<>"))


@given(
    href=st.lists(_HREF_CHARS, max_size=25).map(lambda cs: "/" + "".join(cs)),
    base=st.sampled_from(
        ["https://a.org:8443/x/y.html", "http://u:p@b.org/", "https://c.org/q?x#y", "HTTP://D.org"]
    ),
)
def test_absolute_path_links_join_exactly_as_urljoin(href: str, base: str) -> None:
    """The shortcut for absolute-path hrefs (origin + href) gives exactly urljoin's URL, for
    any mix of queries, fragments, dot segments, params, whitespace and odd characters."""
    body = f'<a href="{html.escape(href)}">x</a>'.encode()
    got = extract_links(body, base).urls
    stripped = href.strip()
    expected = () if not stripped or stripped.startswith("#") else (urljoin(base, stripped),)
    assert got == expected


_REL_PIECES = st.sampled_from(
    ["a", "b1", "/", ".", "..", "./", "../", "?", "#", ";", ":", "%", "="]
)


@given(
    href=st.lists(_REL_PIECES, min_size=1, max_size=12).map("".join),
    base=st.sampled_from(
        [
            "https://a.org:8443/x/y.html",
            "http://u:p@b.org/",
            "https://c.org/q/r/?x#y",
            "HTTP://D.org",
            "https://e.org/a;p/b",
            "https://g.org/a//b/c",
            "https://h.org/a/b/..",
        ]
    ),
)
def test_relative_links_join_exactly_as_urljoin(href: str, base: str) -> None:
    """The shortcut for relative hrefs (the base's folder, dot segments resolved) gives exactly
    urljoin's URL, including ".." past the root, empty segments, queries and fragments."""
    body = f'<a href="{html.escape(href)}">x</a>'.encode()
    got = extract_links(body, base).urls
    joined = urljoin(base, href)
    web = joined[:6].lower().startswith(("http:", "https:"))  # "a:b" is a URL of scheme a
    expected = (joined,) if web and not href.startswith("#") else ()
    assert got == expected
