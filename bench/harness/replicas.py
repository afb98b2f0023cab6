"""Replica shapes on the S3 server, each with the local database that holds its latest state.

- `snapshot`: `ltxctl import` (TXID 1 at levels 0 and 9, and the hint file).
- `snapshot+l0`: that, then 1,000 level-0 files, each one real transaction (an UPDATE of one row)
  captured page by page; the hint stays at TXID 1 (stale), as it would until the next compaction.
- `litestream`: the real `litestream replicate` on the database while it takes writes, with short
  compaction intervals so levels 1-3 and a level-9 snapshot exist; no hint (Litestream writes none).
- `litestream -once`: one `litestream replicate -once` of the database (a level-0 file holding the
  whole database, TXID 1): what a new user's replica looks like after Litestream's first sync.
- `3000 commits`: the database committed through the ltxvfs writer with default settings (its
  compaction on), then 3,000 one-row transactions, each a commit: a writer's replica after hours
  of small commits.
- sqlite-s3vfs's own layout (`upload_s3vfs`): the database cut into blocks, one object each.
"""

from __future__ import annotations

import io
import os
import random
import shutil
import subprocess
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import apsw

from bench.harness.databases import PAGE_SIZE, T_TEXT_CHARS, Database
from ltx.encoder import Encoder
from ltx.header import Header
from ltx.importer import import_database
from ltx.plan import SNAPSHOT_LEVEL
from ltx.replica import Replica
from tests.litestream import LITESTREAM, Replicator, litestream_env, restore, write_config

SHAPE_SNAPSHOT = "snapshot"
SHAPE_L0 = "snapshot+1000 L0"
SHAPE_LITESTREAM = "litestream multi-level"
SHAPE_LITESTREAM_ONCE = "litestream -once"
SHAPE_COMMITS = "3000 commits"
#: One-row transactions the writer commits in the `3000 commits` shape.
WRITER_COMMITS = 3000
#: Level-0 files after the snapshot in the `snapshot+l0` shape.
L0_FILES = 1000
#: Transactions written while `litestream replicate` runs, and the pause between them.
LITESTREAM_WRITES = 300
LITESTREAM_WRITE_PAUSE_S = 0.02
#: Compaction intervals of levels 1-3 and the snapshot interval for the litestream shape.
LITESTREAM_LEVELS = ("1s", "2s", "4s")
LITESTREAM_SNAPSHOT_INTERVAL = "5s"
#: sqlite-s3vfs block size (its default is 4 KiB; 64 KiB keeps its object count and its
#: whole-prefix LISTs at every xFileSize reasonable).
S3VFS_BLOCK_SIZE = 64 * 1024
UPLOAD_PARALLELISM = 16
SEED = 7


@dataclass(frozen=True)
class Shape:
    """A replica on the server: its URL (direct, not through the proxy), the database whose keys
    the queries use, and the local file holding the replica's latest state."""

    name: str
    url: str
    db: Database
    reference: Path


def upload_snapshot(db: Database, url: str, tmpdir: Path) -> Shape:
    replica = Replica.open(url)
    try:
        import_database(db.path, replica, tmpdir=str(tmpdir))
    finally:
        replica.close()
    return Shape(SHAPE_SNAPSHOT, url, db, db.path)


class _RecordingVFS(apsw.VFS):
    """The default VFS, noting which pages of main databases each write touches."""

    def __init__(self, name: str) -> None:
        self.written: set[int] = set()
        super().__init__(name, "")

    def xOpen(self, name: Any, flags: list[int]) -> apsw.VFSFile:  # type: ignore[override]
        return _RecordingFile(self, name, flags)


class _RecordingFile(apsw.VFSFile):
    def __init__(self, vfs: _RecordingVFS, name: Any, flags: list[int]) -> None:
        self._vfs = vfs
        self._main = bool(flags[0] & apsw.SQLITE_OPEN_MAIN_DB)
        super().__init__("", name, flags)

    def xWrite(self, data: bytes, offset: int) -> None:
        if self._main:
            first = offset // PAGE_SIZE + 1
            last = (offset + len(data) - 1) // PAGE_SIZE + 1
            self._vfs.written.update(range(first, last + 1))
        super().xWrite(data, offset)


def _update_row(conn: apsw.Connection, db: Database, rng: random.Random) -> None:
    """One transaction: a new value (same length) for a random row of `t`."""
    row = rng.randrange(1, db.t_rows + 1)
    conn.execute("UPDATE t SET v = ? WHERE id = ?", (rng.randbytes(T_TEXT_CHARS // 2).hex(), row))


def upload_snapshot_l0(db: Database, url: str, tmpdir: Path, files: int = L0_FILES) -> Shape:
    """The snapshot, then `files` level-0 files (TXID 2..files+1) of real one-row transactions."""
    upload_snapshot(db, url, tmpdir)
    work = tmpdir / f"l0-{db.name}.db"
    shutil.copyfile(db.path, work)
    vfs_name = f"bench-recording-{os.getpid()}-{id(work)}"
    vfs = _RecordingVFS(vfs_name)
    conn = apsw.Connection(str(work), vfs=vfs_name)
    rng = random.Random(SEED)
    ts = int(time.time() * 1000) - files
    encoded: list[tuple[int, bytes, int]] = []
    fd = os.open(work, os.O_RDONLY)
    try:
        for txid in range(2, files + 2):
            vfs.written.clear()
            _update_row(conn, db, rng)
            commit = os.fstat(fd).st_size // PAGE_SIZE
            buf = io.BytesIO()
            enc = Encoder(buf, Header(page_size=PAGE_SIZE, commit=commit, min_txid=txid, max_txid=txid,
                                      timestamp=ts + txid))
            for pgno in sorted(p for p in vfs.written if p <= commit):
                enc.write_page(pgno, os.pread(fd, PAGE_SIZE, (pgno - 1) * PAGE_SIZE))
            enc.close()
            encoded.append((txid, buf.getvalue(), ts + txid))
    finally:
        os.close(fd)
        conn.close()
        vfs.unregister()
    replica = Replica.open(url)
    try:
        with ThreadPoolExecutor(UPLOAD_PARALLELISM) as pool:
            list(pool.map(lambda e: replica.put_file(0, e[0], e[0], e[1], timestamp_ms=e[2]), encoded))
    finally:
        replica.close()
    return Shape(SHAPE_L0, url, db, work)


def upload_litestream(db: Database, url: str, tmpdir: Path, env: Mapping[str, str]) -> Shape:
    """Replicate a copy of `db` with the real `litestream replicate` while it takes writes, until
    levels 1-3 and a newer level-9 snapshot exist; the reference is `litestream restore`'s output."""
    work = tmpdir / f"ls-{db.name}.db"
    shutil.copyfile(db.path, work)
    conn = apsw.Connection(str(work))
    conn.execute("PRAGMA journal_mode = wal")
    conn.execute("PRAGMA busy_timeout = 5000")
    config = write_config(tmpdir / f"ls-{db.name}.yml", work, url, levels=LITESTREAM_LEVELS,
                          snapshot_interval=LITESTREAM_SNAPSHOT_INTERVAL)
    replica = Replica.open(url)
    rng = random.Random(SEED)
    try:
        with Replicator(config, env=env) as rep:
            rep.wait_for(lambda: replica.list_level(0), "litestream's first level-0 file")
            for _ in range(LITESTREAM_WRITES):
                _update_row(conn, db, rng)
                time.sleep(LITESTREAM_WRITE_PAUSE_S)  # paces the writes over several compaction intervals
            def ready() -> bool:
                levels = replica.list_levels()
                tip = max(f.max_txid for f in levels[0])
                snaps = levels[SNAPSHOT_LEVEL]
                return all(levels[lvl] for lvl in (1, 2, 3)) and bool(snaps) and snaps[-1].max_txid > 1 and \
                    max(f.max_txid for f in levels[3]) == tip
            rep.wait_for(ready, "levels 1-3 and a snapshot covering the writes", deadline=120)
            rep.stop()
    finally:
        conn.close()
        replica.close()
    reference = tmpdir / f"ls-{db.name}-restored.db"
    reference.unlink(missing_ok=True)
    restore(url, reference, env=env, timeout=600)
    return Shape(SHAPE_LITESTREAM, url, db, reference)


def upload_litestream_once(db: Database, url: str, tmpdir: Path, env: Mapping[str, str]) -> Shape:
    """`litestream replicate -once` of a WAL copy of `db`; the reference is `litestream restore`'s output."""
    work = tmpdir / f"once-{db.name}.db"
    shutil.copyfile(db.path, work)
    conn = apsw.Connection(str(work))
    conn.execute("PRAGMA journal_mode = wal")
    conn.close()
    done = subprocess.run([str(LITESTREAM), "replicate", "-once", str(work), url], env=litestream_env(env),
                          capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"litestream replicate -once failed: {done.stderr.strip()}")
    for leftover in (work, work.with_name(work.name + "-wal"), work.with_name(work.name + "-shm")):
        leftover.unlink(missing_ok=True)  # replicated: at 5 GB, disk the reference needs
    reference = tmpdir / f"once-{db.name}-restored.db"
    reference.unlink(missing_ok=True)
    restore(url, reference, env=env, timeout=1200)
    return Shape(SHAPE_LITESTREAM_ONCE, url, db, reference)


def upload_commits(db: Database, url: str, tmpdir: Path, commits: int = WRITER_COMMITS) -> Shape:
    """Through the ltxvfs writer with its defaults (sync=commit, compact=auto): the database in one
    commit, then `commits` one-row UPDATEs, each a commit; a local copy takes the same updates."""
    import vfs

    work = tmpdir / f"commits-{db.name}.db"
    shutil.copyfile(db.path, work)
    local = apsw.Connection(str(work))
    writer = apsw.Connection(f"file:commits-{db.name}.db?replica={quote(url, safe='')}", vfs=vfs.VFS_NAME,
                             flags=apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE | apsw.SQLITE_OPEN_URI)
    try:
        source = apsw.Connection(str(db.path), flags=apsw.SQLITE_OPEN_READONLY)
        with writer.backup("main", source, "main") as copy:
            copy.step()
        source.close()
        rng_writer, rng_local = random.Random(SEED), random.Random(SEED)
        for _ in range(commits):
            _update_row(writer, db, rng_writer)
            _update_row(local, db, rng_local)
    finally:
        writer.close()  # ships, and finishes the compaction round its last commits asked for
        local.close()
    return Shape(SHAPE_COMMITS, url, db, work)


def upload_s3vfs(db: Database, client: Any, bucket: str, prefix: str, block_size: int = S3VFS_BLOCK_SIZE) -> str:
    """Store `db` as sqlite-s3vfs lays it out (`<prefix>/<block %010d>`); return the prefix."""
    size = db.bytes

    def put(block: int) -> None:
        with open(db.path, "rb") as f:
            f.seek(block * block_size)
            client.put_object(Bucket=bucket, Key=f"{prefix}/{block:010d}", Body=f.read(block_size))

    with ThreadPoolExecutor(UPLOAD_PARALLELISM) as pool:
        list(pool.map(put, range((size + block_size - 1) // block_size)))
    return prefix
