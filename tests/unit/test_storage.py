"""URL-to-path mapping and atomic body storage."""

from __future__ import annotations

import hashlib
import os
import posixpath
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crawler.models import Outcome, PageRecord
from crawler.storage import Storage, url_to_path


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("http://ex.com/", "ex.com/index.html"),
        ("http://ex.com/a/b.html", "ex.com/a/b.html"),
        ("http://ex.com/a/", "ex.com/a/index.html"),
        ("https://ex.com:8443/x", "ex.com_8443/x"),
        ("http://ex.com/a/%2e%2e/%2e%2e/etc/passwd", "ex.com/a/__/__/etc/passwd"),
    ],
)
def test_mirror_paths(url: str, path: str) -> None:
    """Mirror layout is host/path; directories get index.html; dot segments are defused."""
    assert url_to_path(url) == path


def test_query_becomes_hash_suffix() -> None:
    """Two queries of one path map to two different files that keep the extension."""
    a, b = url_to_path("http://ex.com/p.html?a=1"), url_to_path("http://ex.com/p.html?a=2")
    assert a != b
    assert a.startswith("ex.com/p~")
    assert a.endswith(".html")


@given(st.text(min_size=0, max_size=300), st.sampled_from(["mirror", "flat"]))
def test_paths_never_leave_the_output_folder(path: str, layout: str) -> None:
    """Whatever the URL's path, the relative path is normalized, relative and bounded."""
    rel = url_to_path("http://ex.com/" + path, layout)  # type: ignore[arg-type]
    assert not rel.startswith("/")
    assert posixpath.normpath(rel) == rel
    assert ".." not in rel.split("/")
    assert all(0 < len(seg.encode()) <= 255 for seg in rel.split("/"))


def test_commit_is_atomic_and_hashed(tmp_path: Path) -> None:
    """A body is invisible until committed, then sits at its path with the right sha256."""
    with Storage(tmp_path) as storage:
        writer = storage.open_body()
        writer.write(b"hello ")
        writer.write(b"world")
        assert not (tmp_path / "ex.com").exists()
        stored = storage.commit(writer, "http://ex.com/a/b.txt")
    assert stored.path == "ex.com/a/b.txt"
    assert (tmp_path / stored.path).read_bytes() == b"hello world"
    assert stored.sha256 == hashlib.sha256(b"hello world").hexdigest()
    assert not list((tmp_path / ".tmp").iterdir())


def test_discard_leaves_nothing(tmp_path: Path) -> None:
    """A discarded body leaves no file anywhere."""
    with Storage(tmp_path) as storage:
        writer = storage.open_body()
        writer.write(b"partial")
        storage.discard(writer)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files == [tmp_path / "manifest.jsonl"]


def test_file_and_directory_collision_keeps_both(tmp_path: Path) -> None:
    """/a stored as a file, then /a/b needing a folder a: both bodies are kept."""
    with Storage(tmp_path) as storage:
        for url, body in [("http://ex.com/a", b"A"), ("http://ex.com/a/b", b"B")]:
            w = storage.open_body()
            w.write(body)
            stored = storage.commit(w, url)
            assert (tmp_path / stored.path).read_bytes() == body


def test_stale_temp_files_are_removed_on_open(tmp_path: Path) -> None:
    """Temp files of an interrupted run are not kept."""
    (tmp_path / ".tmp").mkdir()
    (tmp_path / ".tmp" / "leftover").write_bytes(b"x")
    with Storage(tmp_path):
        pass
    assert not (tmp_path / ".tmp" / "leftover").exists()


def test_manifest_rewrite_replaces_lines(tmp_path: Path) -> None:
    """rewrite_manifest leaves exactly the given records."""
    rec = PageRecord("http://ex.com/", "http://ex.com/", Outcome.OK, 0)
    with Storage(tmp_path) as storage:
        storage.append(rec)
        storage.append(rec)
        assert storage.rewrite_manifest([rec]) == 1
        storage.append(rec)
    assert len((tmp_path / "manifest.jsonl").read_text().splitlines()) == 2


def test_sync_fsyncs_bodies_and_changed_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Durability power: sync fsyncs each body, its folder every time, and the folders above
    it the first time (creating a folder changed its parent). fsync's effect cannot be seen
    without pulling the power, so the calls are recorded (and still made)."""
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr("crawler.storage.os.fsync", recording_fsync)
    root = tmp_path.resolve()
    with Storage(root) as storage:
        rels = []
        for url in ("http://ex.com/a/b/one.html", "http://ex.com/a/b/two.html"):
            body = storage.open_body()
            body.write(b"x")
            rels.append(storage.commit(body, url).path)
        storage.sync(rels)
        # files first (from a few threads, in any order), then folders, deepest first
        assert set(synced[:2]) == {
            str(root / "ex.com/a/b/one.html"),
            str(root / "ex.com/a/b/two.html"),
        }
        assert synced[2:] == [
            str(root / "ex.com/a/b"),
            str(root / "ex.com/a"),
            str(root / "ex.com"),
            str(root),
        ]
        synced.clear()
        body = storage.open_body()
        body.write(b"y")
        storage.sync([storage.commit(body, "http://ex.com/a/b/three.html").path])
        assert synced == [str(root / "ex.com/a/b/three.html"), str(root / "ex.com/a/b")]


def test_remove_deletes_bodies_and_empty_folders_only(tmp_path: Path) -> None:
    """--fresh removes the listed bodies and folders left empty; never anything outside the
    output folder, never a folder that still holds something else."""
    outside = tmp_path / "precious.txt"
    outside.write_text("keep")
    root = tmp_path / "out"
    with Storage(root) as storage:
        paths = []
        for url in ("http://ex.com/a/one.html", "http://ex.com/b/two.html"):
            body = storage.open_body()
            body.write(b"x")
            paths.append(storage.commit(body, url).path)
        (root / "ex.com" / "b" / "mine.txt").write_text("user file")
        assert storage.remove([*paths, "../precious.txt", "ex.com/gone.html"]) == 2
    assert outside.read_text() == "keep"
    assert not (root / "ex.com" / "a").exists()
    assert (root / "ex.com" / "b" / "mine.txt").exists()
    assert not (root / "ex.com" / "b" / "two.html").exists()


def test_small_bodies_reach_the_disk_only_when_committed(tmp_path: Path) -> None:
    """A page-sized body is held in memory (no temp file while it is written, none left when
    discarded) and written whole at commit; a body past the spill size streams to its temp
    file; with a retain size below the spill size nothing is lost either."""
    with Storage(tmp_path) as storage:
        small = storage.open_body()
        small.write(b"a" * 1000)
        assert not list((tmp_path / ".tmp").iterdir())
        storage.discard(small)
        small = storage.open_body()
        for _ in range(3):
            small.write(b"b" * 10_000)
        stored = storage.commit(small, "http://ex.com/small")
        assert (tmp_path / stored.path).read_bytes() == b"b" * 30_000
        big = storage.open_body()
        for _ in range(40):
            big.write(b"c" * 10_000)
        assert list((tmp_path / ".tmp").iterdir())  # streaming to its temp file
        stored = storage.commit(big, "http://ex.com/big")
        assert (tmp_path / stored.path).read_bytes() == b"c" * 400_000
        assert stored.sha256 == hashlib.sha256(b"c" * 400_000).hexdigest()
    with Storage(tmp_path, retain_bytes=5) as storage:
        body = storage.open_body()
        for piece in (b"0123", b"4567", b"89"):
            body.write(piece)
        assert body.retained() is None
        stored = storage.commit(body, "http://ex.com/tiny-retain")
        assert (tmp_path / stored.path).read_bytes() == b"0123456789"
