"""A scripted database history, recorded once and shipped as LTX files with our encoder.

`record_history` runs a seeded workload (tests/ltx/sqlgen.py) on a rollback-journal database and
keeps the file's bytes after every transaction: TXID n is the state right after step n. Shipping
writes TXID 1 as a snapshot and each later TXID as the pages that changed (at level 0 unless told),
with timestamps `BASE_TIMESTAMP_MS + n * STEP_MS`, as a Litestream writer would. The VFS and
reliability tests share this `History` (tests/vfs/replicas.py).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ltx.encoder import Encoder
from ltx.header import Header
from ltx.replica import Replica
from tests.ltx.sqlgen import changed_pages, open_database, workload

BASE_TIMESTAMP_MS = 1_700_000_000_000
STEP_MS = 1000


@dataclass
class History:
    """Database images by TXID (index 0 is the empty database) and their timestamps."""

    page_size: int
    images: list[bytes]

    @property
    def last_txid(self) -> int:
        return len(self.images) - 1

    def pages(self, txid: int) -> list[bytes]:
        image = self.images[txid]
        return [image[i:i + self.page_size] for i in range(0, len(image), self.page_size)]

    @staticmethod
    def timestamp_ms(txid: int) -> int:
        return BASE_TIMESTAMP_MS + txid * STEP_MS

    @staticmethod
    def time(txid: int, plus_ms: int = 0) -> datetime:
        return datetime.fromtimestamp((BASE_TIMESTAMP_MS + txid * STEP_MS + plus_ms) / 1000, UTC)

    def encode(self, txid: int, first: int | None = None) -> bytes:
        """One LTX file taking TXID `first - 1` (default txid - 1) to `txid`; from 1 a snapshot."""
        first = txid if first is None else first
        after = self.pages(txid)
        if first == 1:
            pgnos: Sequence[int] = range(1, len(after) + 1)
        else:
            pgnos = changed_pages(self.pages(first - 1), after)
        header = Header(page_size=self.page_size, commit=len(after), min_txid=first, max_txid=txid,
                        timestamp=self.timestamp_ms(txid))
        out = io.BytesIO()
        enc = Encoder(out, header, f"txid {txid}" if first == txid else f"txid {first}-{txid}")
        for pgno in pgnos:
            enc.write_page(pgno, after[pgno - 1])
        enc.close()
        return out.getvalue()

    def ship(self, replica: Replica, first: int = 1, last: int | None = None, level: int = 0) -> None:
        """Put one file per TXID `first`..`last` (default: all) at `level`."""
        for txid in range(first, (last if last is not None else self.last_txid) + 1):
            replica.put_file(level, txid, txid, self.encode(txid), timestamp_ms=self.timestamp_ms(txid))

    def ship_range(self, replica: Replica, first: int, last: int, level: int) -> None:
        """Put one file covering TXIDs `first`..`last` at `level` (a compaction's output)."""
        replica.put_file(level, first, last, self.encode(last, first), timestamp_ms=self.timestamp_ms(last))

    def write_image(self, txid: int, path: Path) -> Path:
        """Write the database as of `txid` to `path` (to open with plain SQLite)."""
        path.write_bytes(self.images[txid])
        return path


def record_history(workdir: Path, seed: int, transactions: int = 24, page_size: int = 4096,
                   grow_rows: int = 18) -> History:
    """Run the seeded workload in DELETE journal mode, keeping the file after each step."""
    path = workdir / f"history-{seed}-{page_size}.db"
    conn = open_database(path, page_size=page_size, journal_mode="delete")
    images = [b""]
    try:
        for step in workload(seed, transactions=transactions, page_size=page_size, grow_rows=grow_rows):
            step.apply(conn)
            images.append(path.read_bytes())
    finally:
        conn.close()
    return History(page_size, images)
