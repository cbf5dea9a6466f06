"""Download lists: parse ``URL [sha256=HEX] [NAME]`` lines and ``SHA256SUMS`` files; file names.

Owns: the list syntax (one URL per line, an optional ``sha256=HEX`` and an optional output name
after it, ``#`` comments and blank lines ignored), reporting each bad line as one
``FILE:LINE: problem`` (the rest of the list goes on), merging duplicate URLs (fetched once),
the ``HEX  NAME`` checksum file format, and turning a URL or a server-given name into a safe,
collision-free file name inside the output folder.
Must not: do I/O beyond what its callers hand it (text in, values out), know about HTTP, the
frontier or the disk layout beyond a name. Pure: unit-tested without files or network.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit

__all__ = [
    "RESERVED_NAMES",
    "ListEntry",
    "ListProblem",
    "UrlList",
    "assign_names",
    "disposition_name",
    "name_from_url",
    "parse_checksums",
    "parse_url_list",
    "sanitize_name",
]

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_UNSAFE = re.compile(r"[^A-Za-z0-9._~+,=@()\[\]-]")
_MAX_NAME = 200  # bytes; most filesystems allow 255, and a ~hash suffix may be added
# Names the output folder already uses for its own files (compared case-insensitively).
RESERVED_NAMES = frozenset({"manifest.jsonl", "state.sqlite3", "state.lock"})


@dataclass(frozen=True, slots=True)
class ListEntry:
    """One URL to download: where it was listed, its expected sha256 (lower-case) and the name
    the list gave it (unsanitized; None: derive it from the URL)."""

    url: str
    sha256: str | None
    name: str | None
    source: str
    line: int


@dataclass(frozen=True, slots=True)
class ListProblem:
    """A bad line: reported and skipped."""

    source: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.message}"


@dataclass(frozen=True, slots=True)
class UrlList:
    """A parsed list: entries in first-seen order (each URL once), problems, and how many
    lines repeated an earlier URL."""

    entries: tuple[ListEntry, ...]
    problems: tuple[ListProblem, ...]
    duplicates: int


def _clean_url(raw: str) -> tuple[str | None, str | None]:
    """The URL without its fragment, or a problem."""
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        return None, f"bad URL: {exc}"
    if not parts.scheme or not parts.netloc:
        return None, "not a URL"
    if parts.scheme.lower() not in ("http", "https"):
        return None, f"unsupported scheme {parts.scheme!r} (http and https only)"
    if not parts.hostname:
        return None, "URL has no host"
    return urlunsplit(parts._replace(fragment="")), None


def parse_url_list(lines: Iterable[str], source: str) -> UrlList:
    """Parse a download list. Never raises for bad content: each bad line is a problem."""
    entries: dict[str, ListEntry] = {}
    problems: list[ListProblem] = []
    duplicates = 0
    for lineno, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        url_text, *rest = line.split()

        def problem(message: str, n: int = lineno) -> None:
            problems.append(ListProblem(source, n, message))

        url, why = _clean_url(url_text)
        if url is None:
            problem(f"{url_text!r}: {why}")
            continue
        sha: str | None = None
        name: str | None = None
        bad = False
        for token in rest:
            key, eq, value = token.partition("=")
            if eq and key.lower() == "sha256":
                if not _HEX64.fullmatch(value) or sha is not None:
                    problem(f"bad checksum {token!r}: want sha256= and 64 hex digits, once")
                    bad = True
                    break
                sha = value.lower()
            elif eq and key.lower() in ("md5", "sha1", "sha512", "sha384", "sha224"):
                problem(f"unsupported checksum {key!r} (sha256 only)")
                bad = True
                break
            elif name is None:
                name = token
            else:
                problem(f"unexpected {token!r}: a line is URL [sha256=HEX] [NAME]")
                bad = True
                break
        if bad:
            continue
        earlier = entries.get(url)
        if earlier is not None:
            duplicates += 1
            if sha is not None and earlier.sha256 is not None and sha != earlier.sha256:
                problem(f"{url}: sha256 differs from line {earlier.line}; the first one is kept")
            elif sha is not None and earlier.sha256 is None:
                entries[url] = ListEntry(url, sha, earlier.name, earlier.source, earlier.line)
            continue
        entries[url] = ListEntry(url, sha, name, source, lineno)
    return UrlList(tuple(entries.values()), tuple(problems), duplicates)


def parse_checksums(lines: Iterable[str], source: str) -> tuple[dict[str, str], list[ListProblem]]:
    """A ``sha256sum`` output file (``HEX  NAME`` or ``HEX *NAME``): name -> lower-case hex."""
    sums: dict[str, str] = {}
    problems: list[ListProblem] = []
    for lineno, raw in enumerate(lines, 1):
        line = raw.rstrip("\r\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        hexdigest, _, name = line.strip().partition(" ")
        name = name.lstrip(" ").removeprefix("*")
        if not _HEX64.fullmatch(hexdigest) or not name:
            problems.append(ListProblem(source, lineno, "want 64 hex digits, spaces, a file name"))
            continue
        sums[posixpath.basename(name)] = hexdigest.lower()
    return sums, problems


def _short_hash(text: str, n: int = 8) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:n]


def sanitize_name(name: str) -> str:
    """A file name safe on any filesystem: the last path component only, no control or
    separator characters, no leading dot, not reserved, bounded length, never empty."""
    name = unicodedata.normalize("NFC", name.replace("\\", "/")).rpartition("/")[2]
    name = _UNSAFE.sub("_", name).strip(" _") or "_"
    name = re.sub(r"_{2,}", "_", name)
    if name.startswith("."):
        name = "_" + name[1:]  # no hidden files; keeps clear of .partial / .rejected / .tmp
    if name.lower() in RESERVED_NAMES:
        name = "_" + name
    if len(name.encode()) > _MAX_NAME:
        stem, ext = posixpath.splitext(name)
        ext = ext if 0 < len(ext) <= 11 else ""
        name = f"{stem[: _MAX_NAME - 20]}~{_short_hash(name)}{ext}"
    return name


def name_from_url(url: str) -> str:
    """The file name a URL's path suggests (``index.html`` for a folder); a query string adds a
    ``~hash`` before the extension so ``get?id=1`` and ``get?id=2`` differ."""
    parts = urlsplit(url)
    base = unquote(parts.path.rpartition("/")[2]) or "index.html"
    name = sanitize_name(base)
    if parts.query:
        stem, ext = posixpath.splitext(name)
        name = sanitize_name(f"{stem}~{_short_hash(parts.query)}{ext}")
    return name


_DISP_PARAM = re.compile(r';\s*(filename\*?)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)', re.IGNORECASE)


def disposition_name(header: str | None) -> str | None:
    """The sanitized file name a Content-Disposition header suggests (``filename*`` first,
    RFC 6266), or None."""
    if not header:
        return None
    found: dict[str, str] = {}
    for key, value in _DISP_PARAM.findall(header):
        value = value.strip()
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        found[key.lower()] = value
    if "filename*" in found:
        charset, _, rest = found["filename*"].partition("'")
        _, _, encoded = rest.partition("'")
        try:
            name = unquote(encoded, encoding=charset or "utf-8", errors="strict")
        except (LookupError, UnicodeDecodeError):
            name = ""
        if name:
            return sanitize_name(name)
    if found.get("filename"):
        return sanitize_name(found["filename"])
    return None


def _with_suffix(name: str, url: str) -> str:
    stem, ext = posixpath.splitext(name)
    return sanitize_name(f"{stem}~{_short_hash(url)}{ext}")


def assign_names(
    entries: Iterable[ListEntry], taken: Mapping[str, str] | None = None
) -> dict[str, str]:
    """URL -> file name, in list order: the list's name or the URL's, sanitized; a name already
    used (case-insensitively, as on macOS / Windows filesystems) by another URL gets a
    ``~hash-of-URL`` suffix. ``taken`` (URL -> name) are names fixed by an earlier run, kept as
    they were so a re-run never renames a finished file."""
    names: dict[str, str] = dict(taken or {})
    used = {n.casefold(): u for u, n in names.items()}
    for entry in entries:
        if entry.url in names:
            continue
        name = sanitize_name(entry.name) if entry.name else name_from_url(entry.url)
        owner = used.get(name.casefold())
        if owner is not None and owner != entry.url:
            name = _with_suffix(name, entry.url)
        names[entry.url] = name
        used[name.casefold()] = entry.url
    return names
