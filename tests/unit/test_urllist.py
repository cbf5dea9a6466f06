"""The download list parser, SHA256SUMS files and file names (pure, no files)."""

from __future__ import annotations

from crawler.urllist import (
    ListEntry,
    assign_names,
    disposition_name,
    name_from_url,
    parse_checksums,
    parse_url_list,
    sanitize_name,
)

HEX = "ab" * 32


def test_list_lines_good_bad_duplicate() -> None:
    """Comments and blank lines are ignored; a bad line is one FILE:LINE problem and the rest
    goes on; a duplicate URL is kept once (fragment dropped); checksums are lower-cased."""
    lines = [
        "# downloads",
        "",
        f"https://a.example/x.tar.gz sha256={HEX.upper()} x.tgz",
        "ftp://a.example/file",
        "not a url",
        "https://a.example/y sha256=1234",
        "https://a.example/z md5=00",
        "https://a.example/w one two",
        "https://a.example/x.tar.gz#frag",
        "  http://b.example:8080/q?id=1  ",
        "http://b.example:99999/",
    ]
    parsed = parse_url_list(lines, "urls.txt")
    assert [e.url for e in parsed.entries] == [
        "https://a.example/x.tar.gz",
        "http://b.example:8080/q?id=1",
    ]
    first = parsed.entries[0]
    assert (first.sha256, first.name, first.line) == (HEX, "x.tgz", 3)
    assert parsed.duplicates == 1
    assert [str(p).split(": ")[0] for p in parsed.problems] == [
        "urls.txt:4",
        "urls.txt:5",
        "urls.txt:6",
        "urls.txt:7",
        "urls.txt:8",
        "urls.txt:11",
    ]
    assert "unsupported scheme 'ftp'" in str(parsed.problems[0])
    assert "bad checksum" in str(parsed.problems[2])
    assert "sha256 only" in str(parsed.problems[3])


def test_duplicate_with_conflicting_checksum_is_reported() -> None:
    """The same URL with two different checksums keeps the first and reports the second;
    a later line may add a checksum the first line lacked."""
    other = "cd" * 32
    parsed = parse_url_list(
        [
            f"http://a/x sha256={HEX}",
            f"http://a/x sha256={other}",
            "http://a/y",
            f"http://a/y sha256={other}",
        ],
        "l",
    )
    assert [(e.url, e.sha256) for e in parsed.entries] == [
        ("http://a/x", HEX),
        ("http://a/y", other),
    ]
    assert len(parsed.problems) == 1
    assert str(parsed.problems[0]).startswith("l:2: http://a/x: sha256 differs from line 1")


def test_checksums_file() -> None:
    """sha256sum's two formats (text and binary '*'), comments; bad lines are problems."""
    sums, problems = parse_checksums(
        [f"{HEX}  a.bin", f"{HEX.upper()} *dir/b.bin", "# c", "zz  c.bin", f"{HEX}"], "SUMS"
    )
    assert sums == {"a.bin": HEX, "b.bin": HEX}
    assert [str(p).split(": ")[0] for p in problems] == ["SUMS:4", "SUMS:5"]


def test_names_are_safe() -> None:
    """Names never leave the folder, are not hidden or reserved, and stay bounded."""
    assert sanitize_name("../../etc/passwd") == "passwd"
    assert sanitize_name("..\\..\\boot.ini") == "boot.ini"
    assert sanitize_name("..") == "_."
    assert sanitize_name(".bashrc") == "_bashrc"
    assert sanitize_name("manifest.jsonl") == "_manifest.jsonl"
    assert sanitize_name("a\x00b\nc") == "a_b_c"
    long = sanitize_name("x" * 500 + ".iso")
    assert len(long.encode()) <= 200
    assert long.endswith(".iso")
    assert "/" not in sanitize_name("a/b/c")


def test_name_from_url() -> None:
    """The path's last segment, decoded and sanitized; index.html for a folder; a query adds a
    hash so two queries of one path differ."""
    assert name_from_url("https://h/releases/v1/tool%20v1.tar.gz") == "tool_v1.tar.gz"
    assert name_from_url("https://h/") == "index.html"
    one, two = name_from_url("https://h/get?id=1"), name_from_url("https://h/get?id=2")
    assert one != two
    assert one.startswith("get~")


def test_assign_names_is_collision_safe_and_stable() -> None:
    """Two URLs never share a name (case-insensitively); names fixed earlier are kept."""
    entries = [
        ListEntry("http://a/x/data.bin", None, None, "l", 1),
        ListEntry("http://b/y/data.bin", None, None, "l", 2),
        ListEntry("http://c/DATA.BIN", None, None, "l", 3),
        ListEntry("http://d/z", None, "../named.bin", "l", 4),
    ]
    names = assign_names(entries)
    assert names["http://a/x/data.bin"] == "data.bin"
    assert names["http://d/z"] == "named.bin"
    assert len({n.casefold() for n in names.values()}) == 4
    again = assign_names(list(reversed(entries)), {"http://a/x/data.bin": "data.bin"})
    assert again["http://a/x/data.bin"] == "data.bin"
    assert again["http://b/y/data.bin"] == names["http://b/y/data.bin"]


def test_content_disposition_names() -> None:
    """filename* (RFC 5987) wins over filename; both are sanitized; none gives None."""
    assert disposition_name('attachment; filename="../../x.bin"') == "x.bin"
    assert disposition_name("attachment; filename=a.bin; filename*=UTF-8''b%20c.bin") == "b_c.bin"
    assert disposition_name("inline") is None
    assert disposition_name(None) is None
