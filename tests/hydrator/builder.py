"""Build replicas for hydrator tests: a seeded SQLite workload shipped commit by commit as LTX files.

`ReplicaBuilder` runs a workload on a local database in rollback-journal mode (so the file holds
exactly the committed state), encodes each commit's changed pages as a level-0 file named after
its TXID (the first one holds every page: a snapshot), and keeps every TXID's database image so
a test can compare a hydrated file with the database it must equal.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterable
from pathlib import Path

from ltx import compaction
from ltx.encoder import Encoder
from ltx.header import Header
from ltx.plan import LTXFileInfo
from ltx.replica import Replica
from tests.ltx.sqlgen import Step, changed_pages, file_pages, open_database, workload

PAGE_SIZE = 4096


class ReplicaBuilder:
    """Ships a seeded workload's commits into `replica`; `images[txid]` is the database at each TXID."""

    def __init__(self, replica: Replica, workdir: Path, seed: int, page_size: int = PAGE_SIZE,
                 start_ms: int | None = None) -> None:
        self.replica = replica
        self.seed = seed
        self.page_size = page_size
        self.db = workdir / f"source-{seed}-{id(self):x}.db"
        self.conn = open_database(self.db, page_size, journal_mode="delete")
        self.txid = 0
        self.images: dict[int, bytes] = {}
        self.files: list[LTXFileInfo] = []
        # Header timestamps an hour in the past, a second apart: older than any retention a test sets.
        self.start_ms = int(time.time() * 1000) - 3_600_000 if start_ms is None else start_ms
        self._pages: list[bytes] = []

    def steps(self, transactions: int, grow_rows: int = 30) -> list[Step]:
        return workload(self.seed, transactions=transactions, page_size=self.page_size, grow_rows=grow_rows)

    def run(self, steps: Iterable[Step]) -> list[LTXFileInfo]:
        """Apply each step as one transaction and ship it; return the files written."""
        return [self.commit(step) for step in steps]

    def commit(self, step: Step) -> LTXFileInfo:
        step.apply(self.conn)
        return self.ship()

    def ship(self) -> LTXFileInfo:
        """Write the pages changed since the last shipped TXID as the next level-0 file."""
        pages = file_pages(self.db, self.page_size)
        changed = changed_pages(self._pages, pages) if self.txid else list(range(1, len(pages) + 1))
        if not changed:  # a step that changed nothing still commits a TXID: ship page 1
            changed = [1]
        txid = self.txid + 1
        ts = self.start_ms + txid * 1000
        header = Header(page_size=self.page_size, commit=len(pages), min_txid=txid, max_txid=txid, timestamp=ts)
        out = io.BytesIO()
        enc = Encoder(out, header, f"{txid:016x}")
        for pgno in changed:
            enc.write_page(pgno, pages[pgno - 1])
        enc.close()
        self.replica.put_file(0, txid, txid, out.getvalue(), timestamp_ms=ts)
        self.txid = txid
        self._pages = pages
        self.images[txid] = b"".join(pages)
        info = self.replica.list_level(0, txid)[0]
        self.files.append(info)
        return info

    def compact(self, level: int) -> LTXFileInfo | None:
        """Merge the level below into `level` (Litestream's rule); the file written, if any."""
        return compaction.compact_level(self.replica, level).file

    def snapshot(self) -> LTXFileInfo | None:
        """Write a level-9 snapshot of the latest state."""
        return compaction.snapshot(self.replica).file

    def delete_level(self, level: int, upto_txid: int | None = None) -> list[LTXFileInfo]:
        """Delete files of `level` ending at or before `upto_txid` (all with None): retention's work."""
        gone = [f for f in self.replica.list_level(level) if upto_txid is None or f.max_txid <= upto_txid]
        for f in gone:
            self.replica.delete_file(f)
        return gone

    def close(self) -> None:
        self.conn.close()
