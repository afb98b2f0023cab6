"""Seeded benchmark databases, built once and cached on disk between runs.

Each holds a rowid table `t(id INTEGER PRIMARY KEY, k TEXT, v TEXT)` with text rows, a secondary
index `t_k` on `k`, and a WITHOUT ROWID table `w(k TEXT PRIMARY KEY, n INTEGER, v TEXT)`. Keys
are functions of the row number, so queries can be written without reading the database.
The cache lives in $LTXVFS_BENCH_CACHE (default: <tmp>/ltxvfs-bench-cache), never in the repo.
"""

from __future__ import annotations

import os
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

import apsw

from bench.harness.keys import t_key, w_key

ENV_CACHE = "LTXVFS_BENCH_CACHE"
#: Bumped whenever the generator changes, so a cached database of an older shape is not reused.
GENERATOR_VERSION = 1
SEED = 20260301
PAGE_SIZE = 4096
#: Rows of `t` per MB of database, and characters of its text column.
T_ROWS_PER_MB = 1_800
T_TEXT_CHARS = 420
#: Rows of `w` per MB, and characters of its text column.
W_ROWS_PER_MB = 400
W_TEXT_CHARS = 120
BATCH_ROWS = 20_000

__all__ = ["Database", "build", "cache_dir", "database", "t_key", "w_key"]


def cache_dir() -> Path:
    path = Path(os.environ.get(ENV_CACHE) or Path(tempfile.gettempdir()) / "ltxvfs-bench-cache")
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class Database:
    """A built database and what queries need to know about it."""

    path: Path
    size_mb: int
    t_rows: int
    w_rows: int

    @property
    def name(self) -> str:
        return f"{self.size_mb}mb"

    @property
    def bytes(self) -> int:
        return self.path.stat().st_size


def _rows_t(start: int, stop: int, rng: random.Random) -> list[tuple[int, str, str]]:
    return [(i, t_key(i), rng.randbytes(T_TEXT_CHARS // 2).hex()) for i in range(start, stop)]


def _rows_w(start: int, stop: int, rng: random.Random) -> list[tuple[str, int, str]]:
    return [(w_key(i), i, rng.randbytes(W_TEXT_CHARS // 2).hex()) for i in range(start, stop)]


def build(path: Path, size_mb: int, seed: int = SEED) -> Database:
    """Write the database of about `size_mb` MB at `path` (through a temporary name)."""
    t_rows = size_mb * T_ROWS_PER_MB
    w_rows = size_mb * W_ROWS_PER_MB
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    conn = apsw.Connection(str(tmp))
    try:
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        conn.execute("PRAGMA journal_mode = off")
        conn.execute("PRAGMA synchronous = off")
        conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT NOT NULL, v TEXT NOT NULL)")
        conn.execute("CREATE TABLE w(k TEXT PRIMARY KEY, n INTEGER NOT NULL, v TEXT NOT NULL) WITHOUT ROWID")
        rng = random.Random(seed)
        for start in range(1, t_rows + 1, BATCH_ROWS):
            with conn:
                conn.executemany("INSERT INTO t VALUES (?, ?, ?)", _rows_t(start, min(t_rows + 1, start + BATCH_ROWS),
                                                                           rng))
        for start in range(1, w_rows + 1, BATCH_ROWS):
            with conn:
                conn.executemany("INSERT INTO w VALUES (?, ?, ?)", _rows_w(start, min(w_rows + 1, start + BATCH_ROWS),
                                                                           rng))
        conn.execute("CREATE INDEX t_k ON t(k)")
    finally:
        conn.close()
    tmp.rename(path)
    return Database(path, size_mb, t_rows, w_rows)


def database(size_mb: int, directory: Path | None = None) -> Database:
    """The cached database of about `size_mb` MB, built on first use."""
    path = (directory or cache_dir()) / f"bench-v{GENERATOR_VERSION}-s{SEED}-{size_mb}mb.db"
    if not path.exists():
        return build(path, size_mb)
    return Database(path, size_mb, size_mb * T_ROWS_PER_MB, size_mb * W_ROWS_PER_MB)
