"""Canonical URLs and scope decisions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from w3lib.url import canonicalize_url

from crawler.urls import (
    CanonicalURL,
    QueryPolicy,
    Scope,
    ScopeVerdict,
    canonical_parts,
    canonicalize,
    host_of,
)


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("HTTP://Example.COM:80/a/./b/../c?b=2&a=1#frag", "http://example.com/a/c?a=1&b=2"),
        ("https://example.com:443/%7Efoo/ bar", "https://example.com/~foo/%20bar"),
        ("https://example.com", "https://example.com/"),
        ("https://example.com:8443/x", "https://example.com:8443/x"),
        ("http://[::1]:8080/x#y", "http://[::1]:8080/x"),
        ("http://ex.com/a%2fb", "http://ex.com/a%2Fb"),
        ("http://ex.com/caf\u00e9", "http://ex.com/caf%C3%A9"),
    ],
)
def test_canonical_form(raw: str, canonical: str) -> None:
    """Scheme and host case, default port, dot segments, percent-encoding, query order and
    fragments all canonicalize away."""
    assert canonicalize(raw) == canonical


@pytest.mark.parametrize(
    "raw", ["mailto:a@b.c", "javascript:void(0)", "ftp://x/y", "http://", "http://ex.com:99999/"]
)
def test_non_http_or_broken_urls_are_none(raw: str) -> None:
    """Anything that is not a usable http(s) URL has no canonical form."""
    assert canonicalize(raw) is None


def test_query_policies() -> None:
    """keep keeps, drop drops, strip removes only the globbed parameters."""
    url = "http://ex.com/p?utm_source=x&ref=y&id=7&utm_medium=z"
    assert canonicalize(url, QueryPolicy("keep")) == (
        "http://ex.com/p?id=7&ref=y&utm_medium=z&utm_source=x"
    )
    assert canonicalize(url, QueryPolicy("drop")) == "http://ex.com/p"
    assert canonicalize(url, QueryPolicy("strip", ("utm_*", "ref"))) == "http://ex.com/p?id=7"
    with pytest.raises(ValueError, match="unknown query mode"):
        QueryPolicy("sometimes")


def test_host_of_keeps_non_default_port() -> None:
    """host_of is the scheduler's host key: host plus a non-default port."""
    assert host_of("https://ex.com:8443/a") == "ex.com:8443"
    assert host_of("https://ex.com/a") == "ex.com"


def test_scope_verdicts() -> None:
    """Domains (with and without subdomains), depth, include and exclude each decide."""
    scope = Scope(
        ["docs.example.org"],
        include=[r"^https://docs\.example\.org/en/"],
        exclude=[r"\.pdf$"],
        max_depth=3,
    )
    assert scope.check("https://docs.example.org/en/a", 3) is ScopeVerdict.IN
    assert scope.check("https://docs.example.org/en/a", 4) is ScopeVerdict.DEPTH
    assert scope.check("https://docs.example.org/fr/a", 0) is ScopeVerdict.EXCLUDED
    assert scope.check("https://docs.example.org/en/a.pdf", 0) is ScopeVerdict.EXCLUDED
    assert scope.check("https://a.docs.example.org/en/a", 0) is ScopeVerdict.OFFSITE
    assert scope.check("https://example.org/en/a", 0) is ScopeVerdict.OFFSITE
    sub = Scope(["example.org"], subdomains=True)
    assert sub.check("https://a.b.example.org/", 0) is ScopeVerdict.IN
    assert sub.check("https://badexample.org/", 0) is ScopeVerdict.OFFSITE


def test_trap_limits_by_shape() -> None:
    """Overlong URLs, too many segments, and a segment repeated past the limit are traps."""
    from crawler.urls import TrapLimits

    traps = TrapLimits(max_url_length=60, max_path_segments=5, max_segment_repeats=2)
    assert traps.check("https://a.org/a/b/c") is None
    assert traps.check("https://a.org/" + "x" * 60) is not None
    assert traps.check("https://a.org/1/2/3/4/5/6") is not None
    assert traps.check("https://a.org/cal/next/next") is None
    reason = traps.check("https://a.org/cal/next/next/next")
    assert reason is not None
    assert "next" in reason


def test_trap_pattern_budget() -> None:
    """With a budget per digit pattern, the (budget+1)th new URL of one pattern is a trap;
    other patterns are unaffected; without a budget nothing is counted."""
    from crawler.urls import TrapLimits

    traps = TrapLimits(max_per_pattern=3)
    assert [traps.charge(f"https://a.org/cal?month=2026-{m:02d}") for m in range(1, 4)] == [
        None
    ] * 3
    assert traps.charge("https://a.org/cal?month=2026-04") is not None
    assert traps.charge("https://a.org/item/7") is None
    unlimited = TrapLimits()
    assert all(unlimited.charge(f"https://a.org/{i}") is None for i in range(100))


_PATH_CHARS = st.sampled_from(list("aZ09/._~-%;+ é"))


@given(
    host=st.sampled_from(["a.org", "WWW.Example.COM", "127.0.0.1", "x-y.z", "[::1]", "bü.de"]),
    port=st.sampled_from(["", ":443", ":8443"]),
    path=st.lists(_PATH_CHARS, max_size=20).map(lambda cs: "/" + "".join(cs)),
    query=st.sampled_from(["", "?b=2&a=1"]),
)
def test_plain_urls_canonicalize_as_w3lib_does(host: str, port: str, path: str, query: str) -> None:
    """The shortcut for plain URLs (no query, plain host and path) agrees with w3lib's
    canonical form, and so does every URL that takes the full path."""
    url = f"https://{host}{port}{path}{query}"
    got = canonicalize(url)
    rebuilt = url.replace(":443", "", 1).strip()  # canonicalize strips surrounding blanks
    assert got == canonicalize_url(rebuilt, keep_fragments=False)


def test_canonical_parts_split_the_canonical_url() -> None:
    """canonical_parts gives the canonical URL with its host (port kept when not default),
    lower-case hostname and path; None for what is not http(s)."""
    parts = canonical_parts("HTTPS://Sub.Example.org:8443/a/../b?z=1&a=2#frag")
    assert parts == CanonicalURL(
        "https://sub.example.org:8443/b?a=2&z=1", "sub.example.org:8443", "sub.example.org", "/b"
    )
    assert canonical_parts("mailto:someone@example.org") is None
