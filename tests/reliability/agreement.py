"""The check every reliability test ends with: `ltxctl verify`'s checks, a restore, a hydration
and reads through the VFS agree on the replica's state; that state is exactly the recorded
database image at its TXID; and it holds every acknowledged commit (its TXID is at least the
last one acknowledged).

Any disagreement is counted in the tally as lost or wrong data before the assertion fails.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydrator.hydrator import Hydrator
from ltx.replica import Replica
from ltx.restore import restore
from ltx.verify import verify
from tests.reliability import tally
from tests.vfs.replicas import History, connect, plain, pragma, run_queries


class Expected:
    """A recorded history and the query results of each of its TXIDs (computed once, on demand)."""

    def __init__(self, history: History, workdir: Path) -> None:
        self.history = history
        self.workdir = workdir
        self._rows: dict[int, list[list[tuple[Any, ...]]]] = {}
        self._lock = threading.Lock()  # reader threads ask at once

    def image(self, txid: int) -> bytes:
        return self.history.images[txid]

    def rows(self, txid: int) -> list[list[tuple[Any, ...]]]:
        with self._lock:
            return self._rows_locked(txid)

    def _rows_locked(self, txid: int) -> list[list[tuple[Any, ...]]]:
        if txid not in self._rows:
            path = self.history.write_image(txid, self.workdir / f"expected-{txid}.db")
            conn = plain(path)
            try:
                self._rows[txid] = run_queries(conn)
            finally:
                conn.close()
        return self._rows[txid]


def same(actual: object, expected: object, what: str) -> None:
    """Assert equality; a difference is lost or wrong data, and counted as such."""
    if actual != expected:
        tally.add(tally.LOST_OR_WRONG)
        raise AssertionError(f"{what}: wrong data")


def holds(txid: int, acknowledged: int, what: str) -> None:
    """The state reached must hold every acknowledged commit."""
    if txid < acknowledged:
        tally.add(tally.LOST_OR_WRONG)
        raise AssertionError(f"{what}: reached TXID {txid:x}, but {acknowledged:x} was acknowledged")


def vfs_state(url: str, path: Path) -> tuple[int, list[list[tuple[Any, ...]]]]:
    """The TXID an ltxvfs connection opens at, and the queries' results there."""
    conn = connect(path, url, poll=0, wait=0)
    try:
        return int(pragma(conn, "litestream_txid"), 16), run_queries(conn)
    finally:
        conn.close()


def agreed_state(url: str, expected: Expected, workdir: Path, acknowledged: int,
                 hydrate_at: Path | None = None, tolerate: Sequence[str] = ()) -> int:
    """Check that verify, restore, hydration (resumed at `hydrate_at` when given, else fresh) and
    the VFS agree on one state equal to the recorded image and holding `acknowledged`; return
    its TXID. Verify problems whose message holds one of `tolerate` are expected ones."""
    workdir.mkdir(parents=True, exist_ok=True)
    replica = Replica.open(url)
    try:
        problems = [p for p in verify(replica) if not any(t in p.message for t in tolerate)]
        assert problems == [], "\n".join(map(str, problems))
        out = workdir / "restored.db"
        result = restore(replica, out, force=True)
        txid = result.txid
        holds(txid, acknowledged, "restore")
        same(out.read_bytes(), expected.image(txid), f"restore at TXID {txid:x}")
        target = hydrate_at if hydrate_at is not None else workdir / "hydrated.db"
        with Hydrator(replica, target) as hydrator:
            hydrator.run()
            same(hydrator.txid, txid, "hydrated TXID")
        same(target.read_bytes(), expected.image(txid), f"hydrated file at TXID {txid:x}")
    finally:
        replica.close()
    vfs_txid, rows = vfs_state(url, workdir / "vfs.db")
    same(vfs_txid, txid, "TXID read through the VFS")
    same(rows, expected.rows(txid), f"queries through the VFS at TXID {txid:x}")
    return txid


def agreed_rows(url: str, workdir: Path, acked: set[int], unsure: set[int]) -> dict[int, bytes]:
    """For the row writer (rowwriter.py): verify, restore, hydration and the VFS agree on one
    state; it holds every acknowledged row, and no row but those and the `unsure` ones (whose
    COMMIT failed or never returned), each with its right value. Returns the rows."""
    from ltx.plan import EmptyReplicaError
    from tests.reliability.rowwriter import payload, rows_of

    workdir.mkdir(parents=True, exist_ok=True)
    replica = Replica.open(url)
    try:
        problems = verify(replica)
        assert problems == [], "\n".join(map(str, problems))
        out = workdir / "restored.db"
        try:
            result = restore(replica, out, force=True, integrity="full")
        except EmptyReplicaError:
            holds(0, 1 if acked else 0, "restore of an empty replica")
            return {}
        local = workdir / "hydrated.db"
        with Hydrator(replica, local) as hydrator:
            hydrator.run()
            same(hydrator.txid, result.txid, "hydrated TXID")
        same(local.read_bytes(), out.read_bytes(), f"hydrated file at TXID {result.txid:x}")
    finally:
        replica.close()
    conn = plain(out)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
        rows = rows_of(conn) if "t" in tables else {}
    finally:
        conn.close()
    conn = connect(workdir / "vfs.db", url, poll=0, wait=0)
    try:
        same(int(pragma(conn, "litestream_txid"), 16), result.txid, "TXID read through the VFS")
        same(rows_of(conn) if "t" in tables else {}, rows, "rows read through the VFS")
    finally:
        conn.close()
    lost = acked - rows.keys()
    stray = rows.keys() - acked - unsure
    if lost or stray:
        tally.add(tally.LOST_OR_WRONG)
        raise AssertionError(f"acknowledged rows lost: {sorted(lost)}; rows never written: {sorted(stray)}")
    same({s: v for s, v in rows.items() if v != payload(s)}, {}, "row values")
    return rows
