"""robots.txt verdicts (RFC 9309) for the job's agent token."""

from __future__ import annotations

import pytest

from crawler.robots import agent_token, rules_from_response

ROBOTS = b"""\
User-agent: *
Disallow: /private/
Crawl-delay: 7

User-agent: crawler
Disallow: /no-crawler/
Allow: /no-crawler/but-this
Crawl-delay: 2.5

Sitemap: https://a.org/sitemap.xml
Sitemap: https://a.org/news.xml.gz
"""


def test_agent_token_is_the_product_token() -> None:
    """``crawler/0.1 (+url)`` is matched as ``crawler``."""
    assert agent_token("crawler/0.1 (+https://example.org/bot)") == "crawler"
    assert agent_token("My_Bot-2/1.0") == "my_bot-"
    assert agent_token("") == "*"


def test_rules_of_our_group_apply() -> None:
    """Our own group wins over ``*``: its rules, its Crawl-delay; the sitemaps are listed."""
    rules = rules_from_response("crawler", 200, ROBOTS)
    assert not rules.allowed("https://a.org/no-crawler/x")
    assert rules.allowed("https://a.org/no-crawler/but-this")
    assert rules.allowed("https://a.org/private/x")  # only * is kept out of /private/
    assert rules.allowed("https://a.org/robots.txt")
    assert rules.crawl_delay_s() == 2.5
    assert rules.sitemaps() == ["https://a.org/sitemap.xml", "https://a.org/news.xml.gz"]
    other = rules_from_response("somebot", 200, ROBOTS)
    assert not other.allowed("https://a.org/private/x")
    assert other.crawl_delay_s() == 7


def test_request_rate_becomes_spacing() -> None:
    """``Request-rate: 1/5`` asks for one request per 5 s."""
    rules = rules_from_response("crawler", 200, b"User-agent: *\nRequest-rate: 1/5\n")
    assert rules.crawl_delay_s() == 5


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410])
def test_client_errors_allow_everything(status: int) -> None:
    """4xx: no rules apply (RFC 9309 2.3.1.3)."""
    rules = rules_from_response("crawler", status, b"User-agent: *\nDisallow: /\n")
    assert rules.allowed("https://a.org/anything")
    assert not rules.unreachable
    assert rules.crawl_delay_s() is None


@pytest.mark.parametrize("status", [None, 429, 500, 503])
def test_server_errors_disallow_everything_for_now(status: int | None) -> None:
    """5xx, 429 or no answer: the host is fully disallowed until robots.txt is had
    (RFC 9309 2.3.1.4)."""
    rules = rules_from_response("crawler", status, b"")
    assert rules.unreachable
    assert not rules.allowed("https://a.org/")


def test_only_the_first_max_bytes_are_parsed() -> None:
    """Rules past the size limit are ignored."""
    body = b"User-agent: *\n" + b"# padding\n" * 100 + b"Disallow: /late/\n"
    assert rules_from_response("crawler", 200, body, max_bytes=50).allowed("https://a.org/late/")
    assert not rules_from_response("crawler", 200, body).allowed("https://a.org/late/")
