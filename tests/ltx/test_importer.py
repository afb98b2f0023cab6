"""ltx.importer: a consistent image of a live database (WAL included) as a TXID-1 snapshot."""

from __future__ import annotations

from pathlib import Path

import apsw
import pytest

from ltx.importer import ReplicaNotEmptyError, SourceDatabaseError, import_database
from ltx.replica import Replica
from ltx.restore import integrity_check, restore
from tests.ltx.history import record_history
from tests.ltx.sqlgen import dump_rows, open_database, run_steps, workload


def _live_wal_database(path: Path, seed: int, page_size: int = 4096) -> apsw.Connection:
    conn = open_database(path, page_size=page_size, journal_mode="wal")
    conn.execute("PRAGMA wal_autocheckpoint = 0")  # keep every commit in the WAL
    run_steps(conn, workload(seed, transactions=14, page_size=page_size, grow_rows=12))
    return conn


def test_import_live_wal_database(store_url: str, tmp_path: Path) -> None:
    src = tmp_path / "live.db"
    conn = _live_wal_database(src, seed=11)
    assert Path(f"{src}-wal").stat().st_size > 0, "the committed state must live in the WAL for this test"
    expected = dump_rows(conn)
    writer = open_database(src)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO kv(id, k, v) VALUES (999999, 'uncommitted', x'00')")
    try:
        replica = Replica.open(store_url)
        result = import_database(src, replica)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert sorted(k.rsplit("/", 1)[-1] for k in result.keys) == [f"{1:016x}-{1:016x}.ltx"] * 2
    levels = replica.list_levels()
    assert [len(levels[lvl]) for lvl in range(10)] == [1, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    out = tmp_path / "restored.db"
    restore(replica, out)
    assert integrity_check(out) is None
    check = apsw.Connection(str(out))
    assert dump_rows(check) == expected
    check.close()
    conn.close()


@pytest.mark.parametrize("page_size", [512, 65536])
def test_import_page_sizes(file_url: str, tmp_path: Path, page_size: int) -> None:
    src = tmp_path / "src.db"
    conn = _live_wal_database(src, seed=page_size, page_size=page_size)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    image = src.read_bytes()
    replica = Replica.open(file_url)
    result = import_database(src, replica)
    assert (result.page_size, result.commit) == (page_size, len(image) // page_size)
    restore(replica, tmp_path / "out.db")
    assert (tmp_path / "out.db").read_bytes()[100:] == image[100:]
    conn.close()


def test_refuses_non_empty_replica_unless_forced(file_url: str, tmp_path: Path) -> None:
    history = record_history(tmp_path, seed=5, transactions=6)
    replica = Replica.open(file_url)
    history.ship(replica)
    src = tmp_path / "other.db"
    conn = _live_wal_database(src, seed=6)
    with pytest.raises(ReplicaNotEmptyError):
        import_database(src, replica)
    assert len(replica.list_level(0)) == history.last_txid, "a refused import must not touch the replica"
    result = import_database(src, replica, force=True)
    assert result.deleted == history.last_txid
    levels = replica.list_levels()
    assert sum(len(v) for v in levels.values()) == 2
    restore(replica, tmp_path / "out.db")
    check = apsw.Connection(str(tmp_path / "out.db"))
    assert dump_rows(check) == dump_rows(conn)
    check.close()
    conn.close()


def test_bad_sources(file_url: str, tmp_path: Path) -> None:
    replica = Replica.open(file_url)
    missing = tmp_path / "missing.db"
    with pytest.raises(SourceDatabaseError, match="no such database"):
        import_database(missing, replica)
    assert not missing.exists(), "importing must never create the source"
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database at all" * 200)
    with pytest.raises(SourceDatabaseError, match="not a SQLite database"):
        import_database(junk, replica)
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    with pytest.raises(SourceDatabaseError, match="empty"):
        import_database(empty, replica)
    assert not any(replica.list_levels().values())
