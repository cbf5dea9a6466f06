"""What is left to crawl: the durable, deduplicating URL queue (embedded SQLite backend).

Owns: admitting canonical URLs exactly once (a UNIQUE key, so a URL seen by any route is never
queued twice), the page budget (``max_pages`` admissions), handing out leases per host in
breadth-first order, and settling a URL together with the links it produced in one transaction.
The state is one SQLite file (WAL) in the output folder, so re-running a job resumes it: leases
of a run that died go back to the queue on open. Memory does not grow with the queue: rows live
on disk and leases are asked for in small batches.
A recrawl (:meth:`SqliteFrontier.begin_recrawl`) puts every settled URL back in the queue with
its last record kept (its validators, for a conditional GET); a meta flag marks the pass, so an
interrupted recrawl resumes instead of starting over. :func:`read_status` reads a state file
read-only, without the lock, so it works while a crawl runs.
Must not: know about HTTP, timing beyond a request's ``not_before``, or scope rules (the engine
checks scope before calling :meth:`SqliteFrontier.add`).
"""

from __future__ import annotations

import fcntl
import heapq
import json
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Self
from urllib.request import pathname2url

from crawler import faults
from crawler.errors import StateError
from crawler.models import CrawlRequest, PageRecord, RequestKind

__all__ = ["FrontierStats", "SqliteFrontier", "StateStatus", "read_status"]

SCHEMA_VERSION = 2
STATE_FILE = "state.sqlite3"
_QUEUED, _LEASED, _DONE = 0, 1, 2
_SUCCESS = frozenset({"ok", "not_modified", "redirect"})  # outcome values that are not failures

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS urls (
    id         INTEGER PRIMARY KEY,
    url        TEXT NOT NULL UNIQUE,
    host       TEXT NOT NULL,
    depth      INTEGER NOT NULL,
    chain      TEXT,
    kind       INTEGER NOT NULL DEFAULT 0,
    attempts   INTEGER NOT NULL DEFAULT 0,
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
        self,
        root: Path,
        *,
        max_pages: int | None = None,
        level_barrier: bool = False,
        durable: bool = False,
    ) -> None:
        self.path = root / STATE_FILE
        # durable: every COMMIT fsyncs the WAL (synchronous=FULL), so a commit survives power
        # loss; callers batch settles into one transaction to pay that once per batch.
        self._durable = durable
        self._in_tx = False
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
        # Retries waiting for their not-before time: (not_before, host). Small: one entry per
        # pending retry, never the queue.
        self._delayed: list[tuple[float, str]] = []

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
            if self._durable:
                self._db.execute("PRAGMA synchronous=FULL")
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
        # Not-before times are clock readings of the run that set them: a new run may retry
        # at once (its scheduler still paces each host).
        db.execute("UPDATE urls SET state=?, not_before=0 WHERE state=?", (_QUEUED, _LEASED))
        db.execute("UPDATE urls SET not_before=0 WHERE state=? AND not_before>0", (_QUEUED,))
        counts = dict(db.execute("SELECT state, count(*) FROM urls GROUP BY state").fetchall())
        self._queued = counts.get(_QUEUED, 0)
        self._done = counts.get(_DONE, 0)
        self._leased = 0
        # Trapped URLs were recorded, not admitted: they do not use up the page budget.
        (trapped,) = db.execute(
            "SELECT count(*) FROM urls WHERE state=? AND json_extract(record, '$.outcome')='trap'",
            (_DONE,),
        ).fetchone()
        self._admitted = self._queued + self._done - trapped
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
        rows = [
            (r.url, r.host, r.depth, json.dumps(r.chain) if r.chain else None, int(r.kind))
            for r in requests
        ]
        if not rows:
            return 0
        sql = "INSERT OR IGNORE INTO urls (url, host, depth, chain, kind) VALUES (?, ?, ?, ?, ?)"
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

    def unknown(self, urls: Sequence[str]) -> set[str]:
        """Those of ``urls`` never admitted (nor recorded) before."""
        known: set[str] = set()
        for i in range(0, len(urls), 500):
            part = urls[i : i + 500]
            marks = ",".join("?" * len(part))
            known.update(
                u
                for (u,) in self._conn.execute(f"SELECT url FROM urls WHERE url IN ({marks})", part)  # noqa: S608
            )
        return set(urls) - known

    # -- leasing ---------------------------------------------------------------------------

    def hosts(self, now: float) -> list[str]:
        """Hosts that may have requests ready at ``now``, in round-robin order (oldest served
        first)."""
        while self._delayed and self._delayed[0][0] <= now:
            self._hosts.setdefault(heapq.heappop(self._delayed)[1])
        return list(self._hosts)

    def next_due(self) -> float | None:
        """When the soonest delayed retry becomes ready (None when none is waiting)."""
        return self._delayed[0][0] if self._delayed else None

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
            "RETURNING url, host, depth, chain, kind, attempts",
            (_LEASED, _QUEUED, host, now, 1 << 62 if max_depth is None else max_depth, limit),
        ).fetchall()
        self._hosts.pop(host, None)
        if (
            len(rows) == limit
            or self._conn.execute(
                "SELECT 1 FROM urls WHERE state=? AND host=? AND not_before<=? LIMIT 1",
                (_QUEUED, host, now),
            ).fetchone()
        ):
            self._hosts[host] = None  # rows that are only delayed come back through hosts(now)
        n = len(rows)
        self._queued -= n
        self._leased += n
        requests = [
            CrawlRequest(
                url,
                host,
                depth,
                tuple(json.loads(chain)) if chain else (),
                RequestKind(kind),
                attempts,
            )
            for url, host, depth, chain, kind, attempts in rows
        ]
        # RETURNING gives rows in no promised order: restore breadth-first order.
        return sorted(requests, key=lambda r: r.depth)

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

    def retry(self, request: CrawlRequest, not_before: float) -> None:
        """Give a leased request back to the queue for another attempt, not before
        ``not_before`` (a reading of the caller's clock), with its attempt count raised."""
        self._conn.execute(
            "UPDATE urls SET state=?, not_before=?, attempts=attempts+1 WHERE url=? AND state=?",
            (_QUEUED, not_before, request.url, _LEASED),
        )
        heapq.heappush(self._delayed, (not_before, request.host))
        self._queued += 1
        self._leased -= 1

    # -- settling --------------------------------------------------------------------------

    def settle(
        self,
        request: CrawlRequest,
        record: PageRecord,
        links: Iterable[CrawlRequest],
        refused: Iterable[tuple[CrawlRequest, PageRecord]] = (),
        *,
        payload: str | None = None,
    ) -> list[PageRecord]:
        """Mark a leased request done with its manifest record and admit the links it produced,
        in one transaction. ``refused`` are links recorded without being fetched (traps):
        settled at once with their records, unless the URL is already known; they do not count
        against the page budget. Returns the refused records actually recorded (each URL's
        only record: the manifest gets a line for these and no others). ``payload``: the
        record's :meth:`~crawler.models.PageRecord.to_json`, when the caller has it already.
        """
        db = self._conn
        if payload is None:
            payload = record.to_json()
        with self.transaction():
            db.execute(
                "UPDATE urls SET state=?, record=? WHERE url=?", (_DONE, payload, request.url)
            )
            self._insert(links)
            recorded = []
            for r, rec in refused:
                before = db.total_changes
                db.execute(
                    "INSERT OR IGNORE INTO urls (url, host, depth, state, record) "
                    "VALUES (?,?,?,?,?)",
                    (r.url, r.host, r.depth, _DONE, json.dumps(rec.to_json_dict())),
                )
                if db.total_changes > before:
                    recorded.append(rec)
            faults.hit("in_commit")
        self._done += len(recorded)
        self._by_depth[request.depth] -= 1
        self._leased -= 1
        self._done += 1
        return recorded

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One transaction around everything inside (``settle`` calls join it): a group
        commit pays one COMMIT (and, when durable, one WAL fsync) for many settles.
        Rolled back if the block raises."""
        if self._in_tx:
            yield
            return
        db = self._conn
        db.execute("BEGIN IMMEDIATE")
        self._in_tx = True
        try:
            yield
        except BaseException:
            db.execute("ROLLBACK")
            raise
        else:
            db.execute("COMMIT")
        finally:
            self._in_tx = False

    # -- recrawl and reset -----------------------------------------------------------------

    @property
    def recrawling(self) -> bool:
        """True while a recrawl pass is unfinished (queued URLs may carry a previous record)."""
        row = self._conn.execute("SELECT 1 FROM meta WHERE key='recrawl'").fetchone()
        return row is not None

    def begin_recrawl(self) -> int:
        """Queue every settled URL again (but trapped ones), keeping its record, with a fresh
        retry budget, and mark a recrawl pass.

        When a pass is already unfinished (an interrupted recrawl), nothing is requeued: the
        pass continues. Returns how many URLs were queued again.
        """
        db = self._conn
        with self.transaction():
            if self.recrawling:
                return 0
            # Trapped URLs were never fetched and stay trapped: only fetched ones come back.
            fetched = "state=? AND json_extract(record, '$.outcome') != 'trap'"
            by_depth = db.execute(
                f"SELECT depth, count(*) FROM urls WHERE {fetched} GROUP BY depth",  # noqa: S608
                (_DONE,),
            ).fetchall()
            hosts = [
                h
                for (h,) in db.execute(
                    f"SELECT DISTINCT host FROM urls WHERE {fetched}",  # noqa: S608
                    (_DONE,),
                )
            ]
            n = db.execute(
                f"UPDATE urls SET state=?, attempts=0, not_before=0 WHERE {fetched}",  # noqa: S608
                (_QUEUED, _DONE),
            ).rowcount
            db.execute("INSERT INTO meta VALUES ('recrawl', '1')")
        for depth, count in by_depth:
            self._by_depth[depth] += count
        for host in hosts:
            self._hosts.setdefault(host)
        self._queued += n
        self._done -= n
        return n

    def end_recrawl(self) -> None:
        """The recrawl pass is complete (nothing outstanding): clear its mark."""
        with self.transaction():
            self._conn.execute("DELETE FROM meta WHERE key='recrawl'")

    def previous_record(self, url: str) -> PageRecord | None:
        """The last committed record of ``url`` (during a recrawl: the one being revalidated)."""
        row = self._conn.execute("SELECT record FROM urls WHERE url=?", (url,)).fetchone()
        if row is None or row[0] is None:
            return None
        return PageRecord.from_json_dict(json.loads(row[0]))

    def reset(self) -> None:
        """Forget everything: no URL, no record, no recrawl mark (``--fresh``). Bodies are the
        caller's to remove first (see :meth:`records`)."""
        with self.transaction():
            self._conn.execute("DELETE FROM urls")
            self._conn.execute("DELETE FROM meta WHERE key != 'schema'")
        self._admitted = self._queued = self._leased = self._done = 0
        self._by_depth.clear()
        self._hosts.clear()

    def requeue_settled(self, urls: Iterable[str]) -> int:
        """Put settled URLs back in the queue, their records dropped (a download re-run retries
        what failed before). Returns how many were requeued; unknown or unsettled URLs are
        left alone."""
        db = self._conn
        requeued: list[tuple[str, int]] = []
        db.execute("BEGIN IMMEDIATE")
        try:
            for url in urls:
                row = db.execute(
                    "UPDATE urls SET state=?, record=NULL, attempts=0, not_before=0 "
                    "WHERE url=? AND state=? RETURNING host, depth",
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
        """Every committed record, in admission order: settled URLs, and URLs queued again by
        a recrawl (their last record stands until the recrawl settles them anew)."""
        cur = self._conn.execute("SELECT record FROM urls WHERE record IS NOT NULL ORDER BY id")
        for (payload,) in cur:
            yield PageRecord.from_json_dict(json.loads(payload))

    @property
    def outstanding(self) -> int:
        """Queued plus leased: the crawl is over when this is zero."""
        return self._queued + self._leased

    def statistics(self) -> FrontierStats:
        return FrontierStats(self._admitted, self._queued, self._leased, self._done)


@dataclass(frozen=True, slots=True)
class StateStatus:
    """A job's state as :func:`read_status` found it."""

    path: Path
    queued: int
    leased: int  # handed to a running crawl (or left by one that died: requeued on next start)
    done: int
    outcomes: dict[str, int] = field(default_factory=dict)  # last record of each URL, by outcome
    hosts: int = 0
    bytes: int = 0  # bytes of the stored bodies the records list
    recrawling: bool = False

    @property
    def admitted(self) -> int:
        return self.queued + self.leased + self.done

    @property
    def failed(self) -> int:
        """Records whose outcome is a failure (not ok, not_modified or redirect)."""
        return sum(n for o, n in self.outcomes.items() if o not in _SUCCESS)


def read_status(root: Path) -> StateStatus:
    """Counts from a job's state file, opened read-only and without the lock, so this works
    while a crawl runs (WAL: a reader sees the last commit). Raises StateError when there is no
    usable state file."""
    path = root / STATE_FILE
    if not path.is_file():
        raise StateError(f"{root}: no crawl state here ({STATE_FILE} not found)")
    try:
        db = sqlite3.connect(f"file:{pathname2url(str(path.resolve()))}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StateError(f"{path}: cannot open crawl state: {exc}") from None
    try:
        row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None or int(row[0]) != SCHEMA_VERSION:
            raise StateError(f"{path}: not a crawl state of schema {SCHEMA_VERSION}")
        # One read transaction, so the counts agree with each other while a crawl commits.
        db.execute("BEGIN")
        states = dict(db.execute("SELECT state, count(*) FROM urls GROUP BY state").fetchall())
        outcomes = dict(
            db.execute(
                "SELECT json_extract(record, '$.outcome') AS o, count(*) FROM urls "
                "WHERE record IS NOT NULL GROUP BY o ORDER BY o"
            ).fetchall()
        )
        hosts, size = db.execute(
            "SELECT count(DISTINCT host), "
            "coalesce(sum(json_extract(record, '$.bytes')), 0) FROM urls"
        ).fetchone()
        recrawl = db.execute("SELECT 1 FROM meta WHERE key='recrawl'").fetchone() is not None
        db.execute("COMMIT")
    except sqlite3.Error as exc:
        raise StateError(f"{path}: cannot read crawl state: {exc}") from None
    finally:
        db.close()
    return StateStatus(
        path=path,
        queued=states.get(_QUEUED, 0),
        leased=states.get(_LEASED, 0),
        done=states.get(_DONE, 0),
        outcomes=outcomes,
        hosts=hosts,
        bytes=size,
        recrawling=recrawl,
    )
