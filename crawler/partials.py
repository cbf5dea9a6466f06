"""Download files on disk: partial files that survive interruptions, placed only when verified.

Owns: ``.partial/`` under the output folder, where a file grows until it is complete (one data
file per URL, named by a hash of the URL, and a small JSON sidecar with the URL and the
validators the bytes were fetched under, written before the first byte); hashing each file as it
is written, across resumes (the kept prefix is re-hashed when a file is resumed: one sequential
read, no hash state to keep consistent with the bytes on disk); placing a complete, verified
file under its final name by an atomic rename; and ``.rejected/``, where a file whose sha256 is
not the expected one is kept aside. A partial file is never under a final name.
Must not: know about HTTP (it takes validators as plain strings), the frontier or scheduling.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from crawler.resume import Partial

__all__ = ["PartWriter", "PartialFiles", "Placed"]

PARTIAL_DIR = ".partial"
REJECTED_DIR = ".rejected"
_REHASH_BLOCK = 1 << 20


def _key(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8", "surrogateescape")).hexdigest()[:32]


@dataclass(eq=False)
class PartWriter:
    """A download being written (implements ``BodySink``): appends to the partial file and
    its running sha256. ``start`` is the size the file had when this writer opened it."""

    url: str
    path: Path
    file: IO[bytes]
    start: int
    size: int
    total: int | None
    _hash: hashlib._Hash = field(default_factory=hashlib.sha256)

    def write(self, chunk: bytes) -> None:
        self.file.write(chunk)
        self._hash.update(chunk)
        self.size += len(chunk)

    def close(self) -> None:
        """Flush and close; the bytes written so far stay as the partial file."""
        if not self.file.closed:
            self.file.close()

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


@dataclass(frozen=True, slots=True)
class Placed:
    """Where a finished file went (relative to the output folder) and what it is."""

    path: str
    size: int
    sha256: str
    rejected: bool


class PartialFiles:
    """The output folder's partial and rejected files. Create one per run."""

    def __init__(self, root: Path, *, buffer_bytes: int = 1 << 20, fsync: bool = False) -> None:
        self.root = root
        self.partial_dir = root / PARTIAL_DIR
        self.rejected_dir = root / REJECTED_DIR
        self._buffer = buffer_bytes
        self._fsync = fsync

    def __repr__(self) -> str:
        return f"<PartialFiles root={str(self.root)!r}>"

    def _paths(self, url: str) -> tuple[Path, Path]:
        key = _key(url)
        return self.partial_dir / key, self.partial_dir / f"{key}.json"

    def load(self, url: str) -> Partial | None:
        """The partial file of ``url`` left by an earlier attempt, if any."""
        data, meta = self._paths(url)
        try:
            size = data.stat().st_size
        except FileNotFoundError:
            return None
        try:
            info = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            info = {}
        if not isinstance(info, dict) or info.get("url") != url:
            return Partial(size)  # no trustworthy validator: it will be fetched again
        total = info.get("total")
        return Partial(
            size,
            etag=info.get("etag"),
            last_modified=info.get("last_modified"),
            total=total if isinstance(total, int) else None,
        )

    def open(
        self,
        url: str,
        *,
        append: bool,
        etag: str | None,
        last_modified: str | None,
        total: int | None,
    ) -> PartWriter:
        """A writer that continues the partial file (``append``) or starts it afresh.

        The sidecar (URL and validators) is written first, so every byte on disk is known to
        belong to the file those validators describe. Raises OSError.
        """
        self.partial_dir.mkdir(parents=True, exist_ok=True)
        data, meta = self._paths(url)
        tmp = meta.with_suffix(".json.tmp")
        info = {"url": url, "etag": etag, "last_modified": last_modified, "total": total}
        tmp.write_text(json.dumps(info), encoding="utf-8")
        os.replace(tmp, meta)
        digest = hashlib.sha256()
        size = 0
        if append:
            with data.open("rb") as f:
                while block := f.read(_REHASH_BLOCK):
                    digest.update(block)
                    size += len(block)
        file = data.open("ab" if append else "wb", buffering=self._buffer)
        return PartWriter(url, data, file, size, size, total, digest)

    def writer_for_existing(self, url: str, total: int | None) -> PartWriter:
        """A closed writer over the whole partial file (re-hashed): for a partial that turns out
        to be complete already (a 416 whose Content-Range total is its size)."""
        data, _ = self._paths(url)
        digest = hashlib.sha256()
        size = 0
        with data.open("rb") as f:
            while block := f.read(_REHASH_BLOCK):
                digest.update(block)
                size += len(block)
        file = data.open("ab")
        file.close()
        return PartWriter(url, data, file, size, size, total, digest)

    def drop(self, url: str) -> None:
        """Forget the partial file of ``url`` (the server's file changed, or it is gone)."""
        for path in self._paths(url):
            path.unlink(missing_ok=True)

    def finish(self, writer: PartWriter, name: str, expected_sha256: str | None) -> Placed:
        """Close the writer and move the file under ``name`` when its sha256 is the expected
        one (or none is expected), else under ``.rejected/name``. Atomic rename either way.

        Raises OSError when the file cannot be placed (it then stays partial).
        """
        if self._fsync and not writer.file.closed:
            writer.file.flush()
            os.fsync(writer.file.fileno())
        writer.close()
        digest = writer.hexdigest()
        rejected = expected_sha256 is not None and digest != expected_sha256
        rel = f"{REJECTED_DIR}/{name}" if rejected else name
        dest = self.root / rel
        if rejected:
            self.rejected_dir.mkdir(parents=True, exist_ok=True)
        if dest.is_dir():
            raise IsADirectoryError(f"{dest} is a folder")
        os.replace(writer.path, dest)
        self._paths(writer.url)[1].unlink(missing_ok=True)
        return Placed(rel, writer.size, digest, rejected)
