"""What is left to crawl: the durable, deduplicating URL queue (embedded SQLite backend).

Owns: admitting canonical URLs exactly once (a UNIQUE key, so a URL seen by any route is never
queued twice), the page budget (``max_pages`` admissions), handing out leases per host in
breadth-first order, and settling a URL together with the links it produced in one transaction.
The state is one SQLite file (WAL) in the output folder, so re-running a job resumes it: leases
of a run that died go back to the queue on open. Memory does not grow with the queue: rows live
on disk and leases are asked for in small batches.
Must not: know about HTTP, timing beyond a request's ``not_before``, or scope rules (the engine
checks scope before calling :meth:`SqliteFrontier.add`).
"""

from __future__ import annotations

import fcntl
import json
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from crawler.errors import StateError
from crawler.models import CrawlRequest, PageRecord

__all__ = ["FrontierStats", "SqliteFrontier"]

SCHEMA_VERSION = 1
STATE_FILE = "state.sqlite3"
_QUEUED, _LEASED, _DONE = 0, 1, 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS urls (
    id         INTEGER PRIMARY KEY,
    url        TEXT NOT NULL UNIQUE,
    host       TEXT NOT NULL,
    depth      INTEGER NOT NULL,
    redirects  INTEGER NOT NULL DEFAULT 0,
    state      INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0,
    record     TEXT
);
CREATE INDEX IF NOT EXISTS urls_queue ON urls (host, depth, id) WHERE state = 0;
CREATE INDEX IF NOT EXISTS urls_leased ON urls (state) WHERE state = 1;
"""


@dataclass(frozen=True, slots=True)
class FrontierStats:
    """Counts by state. ``outstanding`` is queued + leased: the crawl ends when it is zero."""

    admitted: int
    queued: int
    leased: int
    done: int

    @property
    def outstanding(self) -> int:
        return self.queued + self.leased


class SqliteFrontier:
    """The embedded frontier. A sync context manager; every method is short and non-blocking
    in practice (one small transaction), so the engine calls it from the event loop.

    Only one process may hold a job's state at a time (an exclusive lock file).
    """

    def __init__(
        self, root: Path, *, max_pages: int | None = None, level_barrier: bool = False
    ) -> None:
        self.path = root / STATE_FILE
        self._lock_path = root / "state.lock"
        self._max_pages = max_pages
        # Strict breadth-first: nothing of depth d+1 is leased while anything of depth d is
        # outstanding, so a page's depth is its true link distance (exact max_depth). Without
        # it, concurrency can first discover a page through a longer path.
        self._barrier = level_barrier
        self._by_depth: Counter[int] = Counter()  # outstanding (queued + leased) per depth
        self._db: sqlite3.Connection | None = None
        self._lock: IO[bytes] | None = None
        self._admitted = self._queued = self._leased = self._done = 0
        self._hosts: dict[str, None] = {}  # hosts that may have queued rows, in round-robin order

    def __repr__(self) -> str:
        return (
            f"<SqliteFrontier admitted={self._admitted} queued={self._queued} "
            f"leased={self._leased} done={self._done}>"
        )

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self._lock_path.open("wb")
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise StateError(
                f"{self.path.parent}: another crawl is using this output folder"
            ) from None
        self._lock = lock
        try:
            self._db = self._open_db()
        except sqlite3.DatabaseError as exc:
            self._release_lock()
            raise StateError(f"{self.path}: cannot open crawl state: {exc}") from None
        return self

    def _open_db(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA temp_store=MEMORY")
        db.executescript(_SCHEMA)
        row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None:
            db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) != SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"schema version {row[0]}, expected {SCHEMA_VERSION}")
        # Leases of a run that stopped or died were never settled: they go back to the queue.
        db.execute("UPDATE urls SET state=? WHERE state=?", (_QUEUED, _LEASED))
        counts = dict(db.execute("SELECT state, count(*) FROM urls GROUP BY state").fetchall())
        self._queued = counts.get(_QUEUED, 0)
        self._done = counts.get(_DONE, 0)
        self._leased = 0
        self._admitted = self._queued + self._done
        self._by_depth = Counter(
            dict(
                db.execute(
                    "SELECT depth, count(*) FROM urls WHERE state=? GROUP BY depth", (_QUEUED,)
                )
            )
        )
        self._hosts = dict.fromkeys(
            h for (h,) in db.execute("SELECT DISTINCT host FROM urls WHERE state=?", (_QUEUED,))
        )
        return db

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        self._release_lock()

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the descriptor drops the flock
            self._lock = None

    @property
    def _conn(self) -> sqlite3.Connection:
        assert self._db is not None, "frontier is not open"
        return self._db

    # -- admission -------------------------------------------------------------------------

    def _insert(self, requests: Iterable[CrawlRequest]) -> int:
        db = self._conn
        rows = [(r.url, r.host, r.depth, r.redirects) for r in requests]
        if not rows:
            return 0
        sql = "INSERT OR IGNORE INTO urls (url, host, depth, redirects) VALUES (?, ?, ?, ?)"
        admitted = 0
        # Rows are grouped by depth (a page's links all share one) to count admissions per depth.
        for depth in sorted({row[2] for row in rows}):
            group = [row for row in rows if row[2] == depth]
            budget = None if self._max_pages is None else self._max_pages - self._admitted
            if budget is not None and budget <= 0:
                break
            before = db.total_changes
            if budget is None or budget >= len(group):
                db.executemany(sql, group)
            else:
                for row in group:
                    if db.total_changes - before >= budget:
                        break
                    db.execute(sql, row)
            n = db.total_changes - before
            if n:
                self._by_depth[depth] += n
                self._admitted += n
                self._queued += n
                admitted += n
                for row in group:
                    self._hosts.setdefault(row[1])
        return admitted

    def add(self, requests: Iterable[CrawlRequest]) -> int:
        """Admit the requests whose URL was never seen, within the page budget.

        Returns how many were admitted (the rest were duplicates or over budget).
        """
        db = self._conn
        db.execute("BEGIN IMMEDIATE")
        try:
            n = self._insert(requests)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return n

    # -- leasing ---------------------------------------------------------------------------

    def hosts(self) -> list[str]:
        """Hosts that may have queued requests, in round-robin order (oldest served first)."""
        return list(self._hosts)

    def level(self) -> int | None:
        """The shallowest depth with outstanding work (None when nothing is outstanding)."""
        return min((d for d, n in self._by_depth.items() if n > 0), default=None)

    def lease(self, host: str, limit: int, now: float) -> list[CrawlRequest]:
        """Up to ``limit`` queued requests for ``host``, breadth-first, marked leased.

        With the level barrier, only requests of the current :meth:`level`. The host moves to
        the back of the round-robin order, and is forgotten when it has no queued rows left.
        """
        max_depth = self.level() if self._barrier else None
        rows = self._conn.execute(
            "UPDATE urls SET state=? WHERE id IN (SELECT id FROM urls WHERE state=? AND host=? "
            "AND not_before<=? AND depth<=? ORDER BY depth, id LIMIT ?) "
            "RETURNING url, host, depth, redirects",
            (_LEASED, _QUEUED, host, now, 1 << 62 if max_depth is None else max_depth, limit),
        ).fetchall()
        self._hosts.pop(host, None)
        if (
            len(rows) == limit
            or self._conn.execute(
                "SELECT 1 FROM urls WHERE state=? AND host=? LIMIT 1", (_QUEUED, host)
            ).fetchone()
        ):
            self._hosts[host] = None
        n = len(rows)
        self._queued -= n
        self._leased += n
        # RETURNING gives rows in no promised order: restore breadth-first order.
        return sorted((CrawlRequest(*row) for row in rows), key=lambda r: r.depth)

    def unlease(self, requests: Sequence[CrawlRequest]) -> None:
        """Give leased requests back to the queue (a stopping crawl that will not fetch them)."""
        urls = [(_QUEUED, r.url) for r in requests]
        if not urls:
            return
        db = self._conn
        db.execute("BEGIN IMMEDIATE")
        db.executemany("UPDATE urls SET state=? WHERE url=? AND state=1", urls)
        db.execute("COMMIT")
        for r in requests:
            self._hosts.setdefault(r.host)
        self._queued += len(urls)
        self._leased -= len(urls)

    # -- settling --------------------------------------------------------------------------

    def settle(
        self, request: CrawlRequest, record: PageRecord, links: Iterable[CrawlRequest]
    ) -> int:
        """Mark a leased request done with its manifest record and admit the links it produced,
        in one transaction. Returns how many links were admitted.
        """
        db = self._conn
        payload = json.dumps(record.to_json_dict(), separators=(",", ":"))
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "UPDATE urls SET state=?, record=? WHERE url=?", (_DONE, payload, request.url)
            )
            admitted = self._insert(links)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        self._by_depth[request.depth] -= 1
        self._leased -= 1
        self._done += 1
        return admitted

    def retry(self, urls: Iterable[str]) -> int:
        """Put settled URLs back in the queue, their records dropped (a download re-run retries
        what failed before). Returns how many were requeued; unknown or unsettled URLs are
        left alone."""
        db = self._conn
        requeued: list[tuple[str, int]] = []
        db.execute("BEGIN IMMEDIATE")
        try:
            for url in urls:
                row = db.execute(
                    "UPDATE urls SET state=?, record=NULL WHERE url=? AND state=? "
                    "RETURNING host, depth",
                    (_QUEUED, url, _DONE),
                ).fetchone()
                if row is not None:
                    requeued.append((row[0], row[1]))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        for host, depth in requeued:
            self._hosts.setdefault(host)
            self._by_depth[depth] += 1
        self._queued += len(requeued)
        self._done -= len(requeued)
        return len(requeued)

    # -- reading ---------------------------------------------------------------------------

    def records(self) -> Iterator[PageRecord]:
        """Every settled URL's record, in admission order."""
        cur = self._conn.execute("SELECT record FROM urls WHERE state=? ORDER BY id", (_DONE,))
        for (payload,) in cur:
            yield PageRecord.from_json_dict(json.loads(payload))

    @property
    def outstanding(self) -> int:
        """Queued plus leased: the crawl is over when this is zero."""
        return self._queued + self._leased

    def statistics(self) -> FrontierStats:
        return FrontierStats(self._admitted, self._queued, self._leased, self._done)
