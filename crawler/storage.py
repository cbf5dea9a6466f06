"""Bodies to disk, atomically, and the manifest.

Owns: mapping a URL to a safe relative path under the output folder (never outside it: no
``..``, no absolute paths, bounded name length, query strings hashed); writing a body to a temp
file, hashed (sha256) while written, renamed into place only when complete, so a partial file is
never presented as done; and ``manifest.jsonl``, one line per settled URL. For the ``power``
durability level, :meth:`Storage.sync` fsyncs a batch of placed bodies and their folders (the
caller commits their records only after it returns).
Must not: know about HTTP, the frontier or scheduling.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import re
import secrets
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Literal, Self
from urllib.parse import unquote, urlsplit

from crawler import faults
from crawler.models import PageRecord

__all__ = ["BodyWriter", "Storage", "StoredBody", "url_to_path"]

_MAX_SEGMENT = 120  # bytes per path segment; most filesystems allow 255
_UNSAFE = re.compile(r"[^A-Za-z0-9._~!$&'()+,;=@%-]")
_TMP_DIR = ".tmp"
MANIFEST = "manifest.jsonl"


def _short_hash(text: str, n: int = 10) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:n]


def _safe_segment(segment: str) -> str:
    """One path segment made safe for any filesystem (bounded, no separators, no dots-only)."""
    seg = unquote(segment)
    seg = _UNSAFE.sub("_", seg)
    if seg in ("", ".", ".."):
        seg = seg.replace(".", "_") or "_"
    if seg.startswith("."):
        seg = "_" + seg[1:]  # no hidden files; also keeps clear of our .tmp folder
    if len(seg.encode()) > _MAX_SEGMENT:
        _, dot, ext = seg.rpartition(".")
        ext = ext if dot and 0 < len(ext) <= 10 else ""
        seg = f"{seg[: _MAX_SEGMENT - 24]}~{_short_hash(segment)}{'.' + ext if ext else ''}"
    return seg


def url_to_path(url: str, layout: Literal["mirror", "flat"] = "mirror") -> str:
    """A relative POSIX path for ``url``'s body.

    mirror: ``host[_port]/path``; a directory URL gets ``index.html``; a query becomes a
    ``~hash`` suffix before the extension. flat: ``host[_port]/<hash>`` plus the path's
    extension. The result never starts with ``/`` and never contains ``..``.
    """
    parts = urlsplit(url)
    host = _safe_segment((parts.hostname or "_") + (f"_{parts.port}" if parts.port else ""))
    path = parts.path or "/"
    if layout == "flat":
        ext = posixpath.splitext(path)[1]
        ext = ext if re.fullmatch(r"\.[A-Za-z0-9]{1,10}", ext) else ""
        return f"{host}/{_short_hash(url, 32)}{ext}"
    segments = [_safe_segment(s) for s in path.split("/")[1:]]
    if not segments or path.endswith("/"):
        segments = [*segments[:-1], "index.html"] if segments else ["index.html"]
    if parts.query:
        stem, ext = posixpath.splitext(segments[-1])
        segments[-1] = _safe_segment(f"{stem}~{_short_hash(parts.query, 8)}{ext}")
    return posixpath.join(host, *segments)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class StoredBody:
    """A completed body: where it is (relative to the output folder), its size and sha256."""

    path: str
    size: int
    sha256: str


_SPILL = 256 * 1024  # a body stays in memory up to this size; larger ones stream to the file


@dataclass(eq=False)
class BodyWriter:
    """A body being written, hashed as it grows. Implements ``BodySink``.

    A small body stays in memory and reaches its temp file in one write at
    :meth:`Storage.commit` (a page is a few chunks: one open and one write instead of a
    buffered write per chunk, and nothing at all on disk for a body that is discarded); past
    ``spill`` bytes the temp file is opened and the body streams into it. Keeps the first
    ``retain`` bytes in memory (for link extraction without a re-read). Owned by
    :class:`Storage`: finish with :meth:`Storage.commit` or :meth:`Storage.discard`.
    """

    tmp_path: str
    retain: int
    spill: int = _SPILL
    size: int = 0
    file: IO[bytes] | None = None
    _hash: hashlib._Hash = field(default_factory=hashlib.sha256)
    _kept: list[bytes] = field(default_factory=list)
    _kept_size: int = 0

    def write(self, chunk: bytes) -> None:
        """Append a chunk to the body and the hash."""
        faults.hit("body_write")
        self._hash.update(chunk)
        self.size += len(chunk)
        if self.file is not None:
            self.file.write(chunk)
        elif self.size > self.spill:
            self._open_file().write(chunk)
        if self._kept_size <= self.retain:
            self._kept.append(chunk)
            self._kept_size += len(chunk)
            if self._kept_size > self.retain:
                self._kept.clear()  # too big to keep: whoever needs it reads the file

    def retained(self) -> bytes | None:
        """The whole body if it fit in ``retain`` bytes, else None."""
        return b"".join(self._kept) if self._kept_size <= self.retain else None

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def _open_file(self) -> IO[bytes]:
        """Create the temp file with what was held in memory so far (all of it is kept:
        ``spill`` <= ``retain``)."""
        file = self.file = open(self.tmp_path, "wb")  # noqa: SIM115 - closed by commit / discard
        file.write(b"".join(self._kept))
        return file

    def close_file(self, *, fsync: bool = False) -> None:
        """Put the whole body in its temp file and close it (``fsync``: and sync it)."""
        file = self.file if self.file is not None else self._open_file()
        file.flush()
        if fsync:
            os.fsync(file.fileno())
        file.close()


class Storage:
    """The output folder: bodies, temp files and the manifest. An async-free context manager.

    ``open_body`` → fetcher writes → ``commit`` (fsync optional, rename into place) or
    ``discard``. ``append`` writes a manifest record; ``rewrite_manifest`` rebuilds it from
    committed records (on resume, so there is exactly one line per URL).
    """

    def __init__(
        self,
        root: Path,
        *,
        layout: Literal["mirror", "flat"] = "mirror",
        retain_bytes: int = 4 * 1024 * 1024,
        fsync: bool = False,
    ) -> None:
        self.root = root
        self.layout: Literal["mirror", "flat"] = layout
        self._retain = retain_bytes
        self._fsync = fsync
        self._tmp = root / _TMP_DIR
        self._root_str = str(root)
        self._tmp_str = str(self._tmp)
        self._manifest: IO[str] | None = None
        self._made_dirs: set[str] = set()
        self._synced_dirs: set[str] = set()  # folders whose own entry is known to be on disk
        self.bodies = 0

    def __repr__(self) -> str:
        return f"<Storage root={str(self.root)!r} layout={self.layout} bodies={self.bodies}>"

    def __enter__(self) -> Self:
        self.root.mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(exist_ok=True)
        for stale in self._tmp.iterdir():  # partial bodies of an interrupted run
            stale.unlink(missing_ok=True)
        self._manifest = (self.root / MANIFEST).open("a", encoding="utf-8", buffering=1 << 16)
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._manifest is not None:
            self._manifest.close()
            self._manifest = None

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def open_body(self) -> BodyWriter:
        """A new body to stream into (its temp file is created when it is needed)."""
        # In memory only while every byte is also retained (the kept copy is what is written).
        spill = min(_SPILL, self._retain)
        return BodyWriter(f"{self._tmp_str}/{secrets.token_hex(8)}", self._retain, spill)

    def discard(self, body: BodyWriter) -> None:
        """Drop a body that must not be presented (failed, too large, not wanted)."""
        if body.file is not None:
            body.file.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(body.tmp_path)

    def commit(self, body: BodyWriter, url: str) -> StoredBody:
        """Close, (optionally) fsync and rename the body into ``url``'s place.

        Raises OSError when the file cannot be placed (the temp file is removed then).
        """
        try:
            body.close_file(fsync=self._fsync)
            rel = self._place(body.tmp_path, url_to_path(url, self.layout), url)
        except OSError:
            self.discard(body)
            raise
        self.bodies += 1
        return StoredBody(rel, body.size, body.hexdigest())

    def _place(self, tmp: str, rel: str, url: str) -> str:
        try:
            self._rename(tmp, rel)
        except (NotADirectoryError, IsADirectoryError, FileExistsError):
            # /a stored as a file and now /a/b needs a folder "a" (or the reverse): keep both,
            # the later one under a hashed name beside it. The manifest records the real path.
            head, _, name = rel.rpartition("/")
            top = head.split("/", 1)[0]
            rel = f"{top}/_collisions/{_short_hash(url, 16)}-{name}"
            self._rename(tmp, rel)
        return rel

    def _rename(self, tmp: str, rel: str) -> None:
        dest = f"{self._root_str}/{rel}"
        parent = rel.rpartition("/")[0]
        if parent not in self._made_dirs:
            os.makedirs(f"{self._root_str}/{parent}", exist_ok=True)
            self._made_dirs.add(parent)
        # A folder in the way: rename(2) refuses a file over a folder (EISDIR).
        os.replace(tmp, dest)
        faults.hit("after_rename")

    def sync(self, rels: Iterable[str]) -> None:
        """fsync the placed bodies ``rels`` and every folder whose entries changed for them, so
        the files and their names survive a machine crash. Blocking: run it in a thread.

        A body's folder is synced every time (the rename changed it); the folders above it
        only the first time they are seen, since creating a folder is what changes its parent.
        """
        rels = list(rels)
        # fsyncs issued together are merged by the filesystem's journal (one commit for
        # several files), so the batch's files are synced from a few threads at once.
        with ThreadPoolExecutor(max_workers=min(4, len(rels) or 1)) as pool:
            list(pool.map(_fsync_path, (self.root / rel for rel in rels)))
        folders: set[str] = set()
        for rel in rels:
            parent = rel.rpartition("/")[0]
            folders.add(parent)
            while parent and parent not in self._synced_dirs:
                self._synced_dirs.add(parent)
                parent = parent.rpartition("/")[0]
                folders.add(parent)
        for folder in sorted(folders, key=len, reverse=True):
            _fsync_path(self.root / folder if folder else self.root)

    def remove(self, rels: Iterable[str]) -> int:
        """Delete stored bodies (``--fresh``) and the folders left empty; returns how many
        files were removed. Paths outside the output folder are refused, silently skipped."""
        root = self.root.resolve()
        removed = 0
        folders: set[Path] = set()
        for rel in rels:
            path = (self.root / rel).resolve()
            if not path.is_relative_to(root) or path == root:
                continue
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            removed += 1
            folders.update(p for p in path.parents if p.is_relative_to(root) and p != root)
        for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):  # not empty: something else lives there
                folder.rmdir()
        self._made_dirs.clear()
        return removed

    def read(self, rel: str, limit: int) -> bytes:
        """The first ``limit`` bytes of a stored body."""
        with (self.root / rel).open("rb") as f:
            return f.read(limit)

    def append(self, record: PageRecord, line: str | None = None) -> None:
        """Write one manifest line (buffered; flushed on close). ``line``: the record's
        :meth:`~crawler.models.PageRecord.to_json`, when the caller has it already."""
        assert self._manifest is not None, "Storage is not open"
        self._manifest.write((record.to_json() if line is None else line) + "\n")

    def rewrite_manifest(self, records: Iterable[PageRecord]) -> int:
        """Replace the manifest with ``records`` (atomically); returns how many were written."""
        assert self._manifest is not None, "Storage is not open"
        self._manifest.close()
        tmp = self._tmp / "manifest.rebuild"
        count = 0
        with tmp.open("w", encoding="utf-8") as f:
            for record in records:
                f.write(record.to_json() + "\n")
                count += 1
        os.replace(tmp, self.manifest_path)
        self._manifest = self.manifest_path.open("a", encoding="utf-8", buffering=1 << 16)
        return count
