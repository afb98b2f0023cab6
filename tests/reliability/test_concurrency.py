"""Things happening at once.

- Compaction (with retention that deletes as soon as it may) while a writer ships level-0 files
  (our Encoder + put_file) and readers follow: VFS connections in threads, a following hydrator.
  Every read transaction sees exactly the recorded state of the one TXID it reads, TXIDs never go
  back, and at the end everyone agrees on the last TXID.
- Many readers in threads of one process on one ltxvfs database, while the ltxvfs writer of the
  same process commits: each read transaction sees a prefix of the commits (never a torn or
  reordered one), and never fewer rows than before.
- Two writers racing for the same TXIDs with create-if-absent: each TXID is written once, by the
  writer that was told it succeeded, and the history stays contiguous.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import apsw
import pytest

from hydrator.hydrator import Hydrator
from ltx import compaction
from ltx.decoder import Decoder
from ltx.encoder import Encoder
from ltx.reader import read_header
from ltx.replica import Replica
from ltx.restore import restore
from ltx.store import ObjectExistsError
from ltx.verify import verify
from tests.litestream import wait_for
from tests.reliability.agreement import Expected, agreed_rows, agreed_state, same
from tests.reliability.rowwriter import ensure_schema, open_writer, write_rows
from tests.vfs.replicas import History, connect, pragma, run_queries

#: The longer history these tests ship while others read.
SEED = 10
TRANSACTIONS = 36
#: The writer waits for a compaction round every this many TXIDs, so rounds land in between.
ROUND_EVERY = 3
READERS = 3
THREADS = 8
ROWS = 30
DEADLINE_S = 90.0


@pytest.fixture(scope="module")
def long_history(history_of: Callable[..., History]) -> History:
    return history_of(SEED, TRANSACTIONS)


@pytest.fixture(scope="module")
def long_expected(long_history: History, tmp_path_factory: pytest.TempPathFactory) -> Expected:
    return Expected(long_history, tmp_path_factory.mktemp("expected-long"))


def far_ahead() -> datetime:
    """Retention's clock: decades ahead, so every file may go the moment the rules allow."""
    return datetime.now(UTC) + timedelta(days=365 * 20)


class Errors:
    """Exceptions of the test's threads, raised again in the test's own."""

    def __init__(self) -> None:
        self.caught: list[BaseException] = []

    def run(self, target: Callable[[], None]) -> Callable[[], None]:
        def wrapped() -> None:
            try:
                target()
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                self.caught.append(exc)
        return wrapped

    def check(self) -> None:
        if self.caught:
            raise self.caught[0]

    def run_all(self, targets: list[Callable[[], None]]) -> None:
        """Run the targets in threads until all end (within the deadline); raise the first error."""
        threads = [threading.Thread(target=self.run(t)) for t in targets]
        for t in threads:
            t.start()
        for t in threads:
            t.join(DEADLINE_S)
        self.check()
        assert not any(t.is_alive() for t in threads), "a thread did not finish in time"


def read_transaction(conn: apsw.Connection) -> tuple[int, list[list[tuple[object, ...]]]]:
    """One read transaction: the TXID it reads and the queries' results, all at that TXID."""
    conn.execute("BEGIN")
    try:
        conn.execute("SELECT count(*) FROM sqlite_schema").fetchall()  # takes the SHARED lock
        txid = int(pragma(conn, "litestream_txid"), 16)
        return txid, run_queries(conn)
    finally:
        conn.execute("COMMIT")


@pytest.mark.parametrize("backend", ["file", pytest.param("s3", marks=pytest.mark.slow)])
def test_compaction_while_a_writer_ships_and_readers_follow(backend: str, long_history: History,
                                                            long_expected: Expected, tmp_path: Path,
                                                            request: pytest.FixtureRequest) -> None:
    history = long_history
    last = history.last_txid
    url = request.getfixturevalue("s3_url") if backend == "s3" else f"file://{tmp_path / 'replica'}"
    writer_side, compactor_side = Replica.open(url), Replica.open(url)
    history.ship(writer_side, 1, 3)
    errors = Errors()
    shipped_all = threading.Event()
    rounds: list[int] = []
    seen: dict[int, list[int]] = {}

    def writer() -> None:
        try:
            for txid in range(4, last + 1):
                history.ship(writer_side, txid, txid)
                if txid % ROUND_EVERY == 0:
                    wait_for(partial(round_after, len(rounds)), "a compaction round", DEADLINE_S)
        finally:
            shipped_all.set()

    def round_after(done: int) -> bool:
        return len(rounds) > done or bool(errors.caught)

    def compactor() -> None:
        while True:
            finished = shipped_all.is_set()
            report = compaction.run(compactor_side, [1, 2, 9], l0_retention=timedelta(microseconds=1),
                                    snapshot_retention=timedelta(microseconds=1), now=far_ahead)
            rounds.append(len(report.deleted))
            if finished or errors.caught:
                return

    def reader(n: int) -> None:
        conn = connect(tmp_path / f"reader-{n}.db", url, poll=0.02)
        txids = seen.setdefault(n, [])
        try:
            deadline = time.monotonic() + DEADLINE_S
            while not txids or txids[-1] < last:
                assert time.monotonic() < deadline, f"reader {n} stuck at TXID {txids[-1] if txids else 0:x}"
                if errors.caught:
                    return
                txid, rows = read_transaction(conn)
                assert not txids or txid >= txids[-1], f"reader {n}: TXID went back from {txids[-1]:x} to {txid:x}"
                same(rows, long_expected.rows(txid), f"reader {n} at TXID {txid:x}")
                txids.append(txid)
        finally:
            conn.close()

    hydrated = tmp_path / "hydrated.db"
    follower = Hydrator(url, hydrated, follow=True, poll_interval=0.02)
    try:
        follower.start()
        errors.run_all([writer, compactor, *(partial(reader, n) for n in range(READERS))])
        assert follower.wait_txid(last, DEADLINE_S)
        same(hydrated.read_bytes(), long_expected.image(last), "following hydrator's file")
    finally:
        follower.close()
        writer_side.close()
        compactor_side.close()
    assert sum(rounds) > 0, "compaction deleted nothing: the test did not exercise retention"
    assert all(len(set(t)) > 1 for t in seen.values()), f"readers did not follow: {seen}"
    agreed_state(url, long_expected, tmp_path / "after", last)


def test_many_reader_threads_and_the_writer_of_one_process(tmp_path: Path) -> None:
    """THREADS readers, each with its own connection (an apsw connection is used by one thread at
    a time), on the database the same process's ltxvfs writer commits to, one row per
    transaction."""
    url = f"file://{tmp_path / 'replica'}"
    db = tmp_path / "db.db"
    conn = open_writer(db, url)
    ensure_schema(conn)
    errors = Errors()
    acked: set[int] = set()
    finished = threading.Event()
    counts: dict[str, list[int]] = {}

    def writer() -> None:
        try:
            write_rows(conn, ROWS, acked.add)
        finally:
            finished.set()

    def reader(name: str) -> None:
        c = connect(db, url, poll=0.02)
        seen = counts.setdefault(name, [])
        try:
            deadline = time.monotonic() + DEADLINE_S
            while not (finished.is_set() and seen and seen[-1] == ROWS):
                assert time.monotonic() < deadline, f"{name} stuck at {seen[-1] if seen else 0} rows"
                if errors.caught:
                    return
                with c:
                    rows = [int(r[0]) for r in c.execute("SELECT seq FROM t ORDER BY seq")]
                    check = c.execute("PRAGMA quick_check").fetchall()
                same(rows, list(range(len(rows))), f"{name}: rows of one read transaction")
                same(check, [("ok",)], f"{name}: quick_check")
                assert not seen or len(rows) >= seen[-1], f"{name}: {seen[-1]} rows, then {len(rows)}"
                seen.append(len(rows))
        finally:
            c.close()

    try:
        errors.run_all([writer, *(partial(reader, f"reader {n}") for n in range(THREADS))])
    finally:
        conn.close()
    assert acked == set(range(ROWS))
    assert any(len(set(s)) > 2 for s in counts.values()), f"no reader saw the commits arrive: {counts}"
    agreed_rows(url, tmp_path / "after", acked, set())


def test_two_writers_racing_for_each_txid(long_history: History, long_expected: Expected, tmp_path: Path,
                                          store_url: str) -> None:
    """Two writers ship the same history, each TXID with its own node ID in the header, each
    creating the next TXID's file if absent and moving on when the other got there first."""
    history = long_history
    last = history.last_txid
    errors = Errors()
    won: dict[int, set[int]] = {1: set(), 2: set()}

    def racer(node: int) -> None:
        replica = Replica.open(store_url)
        try:
            txid = 1
            while txid <= last:
                try:
                    replica.put_file(0, txid, txid, encode_as(history, txid, node),
                                     timestamp_ms=history.timestamp_ms(txid))
                    won[node].add(txid)
                except ObjectExistsError:
                    pass
                txid += 1
        finally:
            replica.close()

    errors.run_all([partial(racer, 1), partial(racer, 2)])
    assert won[1] | won[2] == set(range(1, last + 1)) and not won[1] & won[2], won
    replica = Replica.open(store_url)
    try:
        files = replica.list_level(0)
        assert [(f.min_txid, f.max_txid) for f in files] == [(t, t) for t in range(1, last + 1)]
        for f in files:
            node = read_header(replica.store, f.key).node_id
            assert f.min_txid in won[node], f"TXID {f.min_txid:x} is node {node}'s, but it was told it lost"
        assert verify(replica) == []
        out = tmp_path / "restored.db"
        restore(replica, out)
        same(out.read_bytes(), long_expected.image(last), "restore after the race")
    finally:
        replica.close()


def encode_as(history: History, txid: int, node: int) -> bytes:
    """TXID `txid` of the history as one level-0 file whose header carries `node` as node ID."""
    original = Decoder(io.BytesIO(history.encode(txid)), f"txid {txid}")
    out = io.BytesIO()
    enc = Encoder(out, original.header.with_(node_id=node), f"txid {txid} of node {node}")
    for pgno, page in original.pages():
        enc.write_page(pgno, page)
    enc.close()
    return out.getvalue()
