"""Seeded, scripted SQLite workloads for tests, and ways to read a database's page images.

`workload(seed, ...)` returns a list of `Step`s (one transaction each, or a VACUUM): inserts,
updates and deletes on a table with an index and overflow-sized blobs, a growth spurt, and a
shrink (mass delete then VACUUM). The same seed gives the same SQL, so any connection (apsw
on a plain file, through a VFS, under litestream) can replay it and be compared. Helpers read
the committed page images of a database file, with its WAL applied, and dump its rows.
"""

from __future__ import annotations

import os
import random
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw

SCHEMA = (
    "CREATE TABLE kv(id INTEGER PRIMARY KEY, k TEXT NOT NULL, v BLOB)",
    "CREATE INDEX kv_k ON kv(k)",
    "CREATE TABLE events(id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, body TEXT)",
)
#: Tables created by SCHEMA, in dump order.
TABLES = ("kv", "events")

Statement = tuple[str, tuple[Any, ...]]


@dataclass(frozen=True)
class Step:
    """One transaction of a workload (or a VACUUM, which SQLite runs outside a transaction)."""

    kind: str
    statements: tuple[Statement, ...]

    @property
    def is_vacuum(self) -> bool:
        return self.kind == "vacuum"

    def apply(self, conn: apsw.Connection) -> None:
        """Run this step on `conn` as one committed transaction."""
        if self.is_vacuum:
            conn.execute("VACUUM")
            return
        with conn:
            for sql, params in self.statements:
                conn.execute(sql, params)


@dataclass
class _Model:
    """What the generator knows of the data, so updates and deletes hit existing rows."""

    rng: random.Random
    page_size: int
    ids: list[int] = field(default_factory=list)
    next_id: int = 1
    clock: int = 1_700_000_000_000

    def blob(self, big: bool = False) -> bytes:
        """Half random, half repetitive bytes; big ones span several overflow pages."""
        n = self.rng.randint(self.page_size, 4 * self.page_size) if big else self.rng.randint(0, self.page_size // 2)
        noise = self.rng.randbytes(n // 2)
        return noise + bytes([self.rng.randrange(256)]) * (n - len(noise))

    def key(self) -> str:
        return f"k{self.rng.randrange(10**9):09d}"

    def insert(self, count: int, big_share: float) -> tuple[Statement, ...]:
        out = []
        for _ in range(count):
            row_id = self.next_id
            self.next_id += 1
            self.ids.append(row_id)
            out.append(("INSERT INTO kv(id, k, v) VALUES (?, ?, ?)",
                        (row_id, self.key(), self.blob(self.rng.random() < big_share))))
        return tuple(out)

    def update(self, count: int) -> tuple[Statement, ...]:
        if not self.ids:
            return self.insert(count, 0.1)
        chosen = sorted(set(self.rng.choice(self.ids) for _ in range(count)))
        return tuple(("UPDATE kv SET k = ?, v = ? WHERE id = ?", (self.key(), self.blob(self.rng.random() < 0.2), i))
                     for i in chosen)

    def delete(self, share: float) -> tuple[Statement, ...]:
        if not self.ids:
            return ()
        n = max(1, int(len(self.ids) * share))
        start = self.rng.randrange(max(1, len(self.ids) - n + 1))
        lo, hi = self.ids[start], self.ids[min(len(self.ids), start + n) - 1]
        self.ids = [i for i in self.ids if not lo <= i <= hi]
        return (("DELETE FROM kv WHERE id BETWEEN ? AND ?", (lo, hi)),)

    def event(self) -> Statement:
        self.clock += self.rng.randint(1, 5000)
        return ("INSERT INTO events(at, body) VALUES (?, ?)", (self.clock, "e" * self.rng.randint(0, 300)))


def workload(seed: int, transactions: int = 40, page_size: int = 4096, grow_rows: int = 60) -> list[Step]:
    """A scripted workload of about `transactions` steps, the same for the same arguments.

    Order: schema; a mix of inserts, updates, deletes; a growth spurt of `grow_rows` big rows;
    more mixed traffic; a shrink (delete most rows, then VACUUM); a little traffic after it.
    """
    rng = random.Random(seed)
    model = _Model(rng, page_size)
    steps = [Step("schema", tuple((sql, ()) for sql in SCHEMA))]
    mixed = max(4, transactions - 8)
    grow_at, shrink_at = mixed // 3, 2 * mixed // 3

    def mixed_step() -> Step:
        op = rng.choices(("insert", "update", "delete"), weights=(5, 3, 1))[0]
        if op == "insert":
            stmts = model.insert(rng.randint(1, 12), big_share=0.15)
        elif op == "update":
            stmts = model.update(rng.randint(1, 6))
        else:
            stmts = model.delete(rng.uniform(0.05, 0.2))
        return Step(op, stmts + (model.event(),))

    for i in range(mixed):
        if i == grow_at:
            for _ in range(3):
                steps.append(Step("grow", model.insert(grow_rows // 3, big_share=1.0) + (model.event(),)))
        if i == shrink_at:
            steps.append(Step("shrink", model.delete(0.85) + (("DELETE FROM events WHERE id % 3 != 0", ()),)))
            steps.append(Step("vacuum", ()))
        steps.append(mixed_step())
    return steps


def open_database(path: str | os.PathLike[str], page_size: int = 4096, journal_mode: str = "wal",
                  vfs: str | None = None) -> apsw.Connection:
    """Open (creating) a database with the page size set before anything is written."""
    conn = apsw.Connection(str(path), vfs=vfs) if vfs else apsw.Connection(str(path))
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute(f"PRAGMA page_size = {int(page_size)}")
    mode = conn.execute(f"PRAGMA journal_mode = {journal_mode}").fetchall()[0][0]
    if str(mode).lower() != journal_mode.lower():
        raise RuntimeError(f"{path}: journal_mode {journal_mode} refused (got {mode})")
    return conn


def run_steps(conn: apsw.Connection, steps: Iterable[Step],
              after_each: Callable[[int, Step], None] | None = None) -> None:
    """Apply steps in order, calling `after_each(i, step)` after each commit."""
    for i, step in enumerate(steps):
        step.apply(conn)
        if after_each is not None:
            after_each(i, step)


def dump_rows(conn: apsw.Connection, tables: Sequence[str] = TABLES) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the workload's tables, ordered by rowid."""
    return {t: [tuple(r) for r in conn.execute(f"SELECT * FROM {t} ORDER BY rowid")] for t in tables}


# --- page images -----------------------------------------------------------------------------

_WAL_MAGIC_LE = 0x377F0682
_WAL_MAGIC_BE = 0x377F0683
_WAL_HEADER = struct.Struct(">IIIIIIII")
_WAL_FRAME = struct.Struct(">IIIIII")
WAL_HEADER_SIZE = 32
WAL_FRAME_HEADER_SIZE = 24


def header_page_size(first_page: bytes) -> int:
    """The page size recorded at offset 16 of a database header (1 means 65536)."""
    (raw,) = struct.unpack_from(">H", first_page, 16)
    return 65536 if raw == 1 else raw


def _wal_checksum(data: bytes, s0: int, s1: int, big_endian: bool) -> tuple[int, int]:
    """SQLite's WAL checksum over `data` (a multiple of 8 bytes), continuing from (s0, s1)."""
    words = struct.unpack(f"{'>' if big_endian else '<'}{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1


def committed_wal_frames(wal: bytes, page_size: int) -> tuple[dict[int, bytes], int | None]:
    """Pages of the WAL's valid, committed frames (latest wins) and the last commit's page count
    (None when no transaction is committed in the WAL)."""
    if len(wal) < WAL_HEADER_SIZE:
        return {}, None
    magic, _version, wal_page_size, _seq, salt1, salt2, c0, c1 = _WAL_HEADER.unpack_from(wal)
    if magic not in (_WAL_MAGIC_LE, _WAL_MAGIC_BE) or wal_page_size != page_size:
        return {}, None
    big = magic == _WAL_MAGIC_BE
    s0, s1 = _wal_checksum(wal[:24], 0, 0, big)
    if (s0, s1) != (c0, c1):
        return {}, None
    pending: dict[int, bytes] = {}
    pages: dict[int, bytes] = {}
    commit: int | None = None
    pos = WAL_HEADER_SIZE
    while pos + WAL_FRAME_HEADER_SIZE + page_size <= len(wal):
        pgno, size, f_salt1, f_salt2, f0, f1 = _WAL_FRAME.unpack_from(wal, pos)
        if (f_salt1, f_salt2) != (salt1, salt2):
            break
        body = wal[pos + WAL_FRAME_HEADER_SIZE:pos + WAL_FRAME_HEADER_SIZE + page_size]
        s0, s1 = _wal_checksum(wal[pos:pos + 8], s0, s1, big)
        s0, s1 = _wal_checksum(body, s0, s1, big)
        if (s0, s1) != (f0, f1):
            break
        pending[pgno] = body
        if size:
            pages.update(pending)
            pending.clear()
            commit = size
        pos += WAL_FRAME_HEADER_SIZE + page_size
    return pages, commit


def database_pages(path: str | os.PathLike[str]) -> list[bytes]:
    """The committed page images of a database: its file with its WAL (`path-wal`) applied.

    Read it while no checkpoint can reset the WAL (litestream holds a read lock, or hold one).
    """
    path = Path(path)
    data = path.read_bytes() if path.exists() else b""
    wal_path = Path(f"{path}-wal")
    wal = wal_path.read_bytes() if wal_path.exists() else b""
    if len(data) >= 100:
        page_size = header_page_size(data)
    elif len(wal) >= WAL_HEADER_SIZE:
        page_size = _WAL_HEADER.unpack_from(wal)[2]
    else:
        return []
    pages = [data[i:i + page_size] for i in range(0, len(data) - len(data) % page_size, page_size)]
    overlay, commit = committed_wal_frames(wal, page_size)
    if commit is not None:
        pages = pages[:commit] + [bytes(page_size)] * (commit - len(pages))
        for pgno, body in overlay.items():
            if pgno <= commit:
                pages[pgno - 1] = body
    return pages


def file_pages(path: str | os.PathLike[str], page_size: int) -> list[bytes]:
    """The page images of a database file read as it is (no WAL), in `page_size` pieces."""
    data = Path(path).read_bytes()
    return [data[i:i + page_size] for i in range(0, len(data), page_size)]


def changed_pages(before: Sequence[bytes], after: Sequence[bytes]) -> list[int]:
    """Page numbers (1-based) whose image differs, including every page past the old end."""
    return [i + 1 for i, page in enumerate(after) if i >= len(before) or before[i] != page]
