"""Resume decisions: plain values in, a verdict out (no network)."""

from __future__ import annotations

from crawler.resume import (
    Action,
    ContentRange,
    Partial,
    decide,
    parse_content_range,
    range_headers,
    validators,
)

ETAG = '"v1"'
LM = "Wed, 21 Oct 2015 07:28:00 GMT"


def test_content_range_parsing() -> None:
    """Byte ranges, unknown totals and the 416 form; malformed or inconsistent ones are None."""
    assert parse_content_range("bytes 100-199/1000") == ContentRange(100, 199, 1000)
    assert parse_content_range("bytes 0-9/*") == ContentRange(0, 9, None)
    assert parse_content_range("bytes */1000") == ContentRange(None, None, 1000)
    for bad in (None, "", "bytes 10-5/100", "bytes 0-100/100", "items 0-1/2", "bytes */*"):
        assert parse_content_range(bad) is None, bad


def test_range_headers_need_a_validator() -> None:
    """A partial with a strong ETag (or Last-Modified) asks for the rest with If-Range; one
    without a validator, or an empty one, is fetched whole."""
    assert range_headers(Partial(10, etag=ETAG, last_modified=LM)) == {
        "Range": "bytes=10-",
        "If-Range": ETAG,
    }
    assert range_headers(Partial(10, last_modified=LM))["If-Range"] == LM
    assert range_headers(Partial(10)) == {}
    assert range_headers(Partial(0, etag=ETAG)) == {}
    assert range_headers(None) == {}


def test_validators_skip_weak_etags_and_encoded_bodies() -> None:
    """A weak ETag cannot be used with If-Range; an encoded body offers no validator."""
    assert validators({"etag": 'W/"x"', "last-modified": LM}) == (None, LM)
    assert validators({"etag": ETAG}) == (ETAG, None)
    assert validators({"etag": ETAG, "content-encoding": "gzip"}) == (None, None)


def test_decisions() -> None:
    """206 at the partial's size under the same validator appends; 200 writes from scratch;
    a 206 at another offset or with another ETag or total restarts; 416 with the partial's
    size as total is done, otherwise restart."""
    p = Partial(100, etag=ETAG, total=1000)
    cr = {"content-range": "bytes 100-999/1000", "etag": ETAG}
    assert decide(p, True, 206, cr).action is Action.APPEND
    assert decide(p, True, 206, cr).total == 1000
    assert (
        decide(p, True, 206, {**cr, "content-range": "bytes 0-999/1000"}).action is Action.RESTART
    )
    assert decide(p, True, 206, {**cr, "etag": '"v2"'}).action is Action.RESTART
    assert (
        decide(p, True, 206, {**cr, "content-range": "bytes 100-1999/2000"}).action
        is Action.RESTART
    )
    assert decide(p, True, 206, {"etag": ETAG}).action is Action.RESTART
    lm = Partial(100, last_modified=LM)
    changed = {
        "content-range": "bytes 100-199/200",
        "last-modified": "Thu, 22 Oct 2015 07:28:00 GMT",
    }
    assert decide(lm, True, 206, changed).action is Action.RESTART
    full = decide(p, True, 200, {"content-length": "1000"})
    assert (full.action, full.total) == (Action.WRITE, 1000)
    assert decide(None, False, 200, {"content-length": "5", "content-encoding": "br"}).total is None
    assert decide(None, False, 206, {"content-range": "bytes 0-9/10"}).action is Action.WRITE
    assert decide(None, False, 206, {"content-range": "bytes 5-9/10"}).action is Action.FAIL
    assert (
        decide(Partial(1000, etag=ETAG), True, 416, {"content-range": "bytes */1000"}).action
        is Action.DONE
    )
    assert (
        decide(Partial(1200, etag=ETAG), True, 416, {"content-range": "bytes */1000"}).action
        is Action.RESTART
    )
    assert decide(p, True, 416, {}).action is Action.RESTART
    assert decide(None, False, 416, {}).action is Action.FAIL
