"""blockmap's metadata in ltxvfs: `blockmap.db` on a replica URL, one LTX file per commit, group
commit and what it may lose, time travel (whole-volume snapshots), and volumes side by side."""

from __future__ import annotations

import errno
import functools
import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import apsw
import pytest

from blockmap.errors import BlockError, CommitOutcomeUnknownError, CommitsLostError, InvalidMetaURLError
from blockmap.meta import META_DB_NAME, as_int, connect_meta
from blockmap.volume import Volume
from ltx.replica import Replica
from ltx.store import StoreError
from tests.blockmap.conftest import TEST_BLOCK_SIZE, meta_conn
from tests.blockmap.metacheck import metadata_problems

ROOT = Path(__file__).resolve().parents[2]
#: Another writer, in a process of its own.
_OTHER_WRITER = r"""
import sys
from blockmap.volume import Volume
with Volume.open(sys.argv[1]) as vol:
    vol.write_file("/from-another-process", b"theirs")
"""
#: Group commit that never ships by itself within a test: only flush, close or exit ship.
NEVER = "interval:1h"
CHILD_TIMEOUT = 60


def _replica_files(url: str) -> list[tuple[int, int]]:
    replica = Replica.open(url)
    try:
        return [(f.min_txid, f.max_txid) for f in replica.list_level(0)]
    finally:
        replica.close()


def _new(tmp_path: Path, name: str = "repvol", **kwargs: object) -> tuple[Volume, str, str]:
    meta, data = f"file://{tmp_path}/{name}-meta", f"file://{tmp_path}/{name}-data"
    return Volume.format(meta, data, name, block_size=TEST_BLOCK_SIZE, **kwargs), meta, data  # type: ignore[arg-type]


def test_metadata_is_blockmap_db_in_the_replica(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    vol, meta, _ = _new(tmp_path)
    with vol:
        vol.makedirs("/a/b")
        vol.write_file("/a/b/f", b"hello")
        assert vol.txid > 0
        # Each commit is one LTX file at level 0, TXIDs 1, 2, 3... without a gap.
        files = _replica_files(meta)
        assert files == [(t, t) for t in range(1, vol.txid + 1)]
        # The database is `blockmap.db` through ltxvfs; nothing lands beside the current directory.
        assert str(vol.engine.db.conn.open_vfs) == "ltxvfs"
        assert vol.engine.db.conn.filename.endswith("/" + META_DB_NAME)
    assert not list(tmp_path.glob(META_DB_NAME + "*"))
    with Volume.open(meta) as again:  # a cold open: a new connection reads the store
        assert again.read_file("/a/b/f") == b"hello"
        assert again.txid == len(files)


def test_two_volumes_coexist_in_one_process(tmp_path: Path) -> None:
    one, meta1, _ = _new(tmp_path, "vol-one")
    two, meta2, _ = _new(tmp_path, "vol-two")
    with one, two:
        for i in range(5):
            one.write_file(f"/one-{i}", b"1" * i)
            two.write_file(f"/two-{i}", b"2" * i)
        assert one.listdir("/") == [f"one-{i}" for i in range(5)]
        assert two.listdir("/") == [f"two-{i}" for i in range(5)]
    with Volume.open(meta1) as a, Volume.open(meta2) as b:
        assert (a.name, b.name) == ("vol-one", "vol-two")
        assert a.read_file("/one-4") == b"1111" and b.read_file("/two-4") == b"2222"


def test_a_meta_url_that_is_neither_replica_nor_sqlite_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidMetaURLError, match="file:// or s3://"):
        connect_meta("http://example/x.db")
    with pytest.raises(InvalidMetaURLError, match="replica URL"):
        Volume.open(f"sqlite3://{tmp_path}/m.db", txid=3)
    with pytest.raises(InvalidMetaURLError, match="replica URL"):
        Volume.format(f"sqlite3://{tmp_path}/m.db", f"file://{tmp_path}/d", "somevol", sync="interval:1s")


# --- group commit ---------------------------------------------------------------------------------


def test_group_commit_ships_many_operations_as_few_files(tmp_path: Path) -> None:
    vol, meta, _ = _new(tmp_path, sync="interval:50ms")
    with vol:
        before = len(_replica_files(meta))
        for i in range(60):
            vol.create(f"/f{i}")
        vol.flush()
        shipped = len(_replica_files(meta)) - before
        stats = vol.meta_stats()
        assert 1 <= shipped < 60, shipped
        assert stats["write_commits"] >= 60 and stats["write_pending_groups"] == 0
    with Volume.open(meta, read_only=True) as reader:
        assert len(reader.listdir("/")) == 60
        assert reader.fsck().ok


def test_group_commit_ships_reservations_before_their_ids_are_used(tmp_path: Path) -> None:
    vol, meta, _ = _new(tmp_path, sync=NEVER)
    with vol:
        attr = vol.create("/first")  # reserves an inode batch: shipped before the inode is handed out
        # A reader sees only what is in the store: the reservation, not the create.
        with Volume.open(meta, read_only=True) as reader:
            assert not reader.exists("/first")
            counter = reader.engine.read(
                lambda c: c.execute("SELECT value FROM jfs_counter WHERE name = 'nextInode'").fetchall()[0][0]
            )
            assert as_int(counter) > attr.st_ino


def test_group_commit_deletes_blocks_only_after_shipping_the_unlink(tmp_path: Path) -> None:
    vol, meta, _ = _new(tmp_path, sync=NEVER)
    with vol:
        vol.write_file("/doomed", random.Random(3).randbytes(3 * TEST_BLOCK_SIZE))
        vol.write_file("/kept", b"kept")
        vol.flush()
        vol.unlink("/doomed")  # its blocks go: first the unlink must be in the store
        assert len(list(vol.store.list("repvol/chunks/"))) == 1
        with Volume.open(meta, read_only=True) as reader:
            assert not reader.exists("/doomed")
            assert reader.read_file("/kept") == b"kept"
            assert reader.fsck().ok  # every block the stored metadata names exists


_CRASHING_WRITER = r"""
import sys
from blockmap.volume import Volume
vol = Volume.format(sys.argv[1], sys.argv[2], "crashvol", block_size=65536, sync="interval:1h")
vol.write_file("/shipped", b"in the store")
vol.flush()
vol.write_file("/unshipped", b"x" * 200000)
print("ready", flush=True)
sys.stdin.read()
"""


def test_group_commit_crash_loses_the_interval_and_nothing_else(tmp_path: Path) -> None:
    meta, data = f"file://{tmp_path}/meta", f"file://{tmp_path}/data"
    child = subprocess.Popen([sys.executable, "-c", _CRASHING_WRITER, meta, data], cwd=ROOT,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line == b"ready\n", line + (child.stderr.read() if child.stderr else b"")
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(CHILD_TIMEOUT)
    with Volume.open(meta) as vol:
        assert vol.read_file("/shipped") == b"in the store"
        assert not vol.exists("/unshipped")  # committed locally, never shipped: lost with the process
        assert metadata_problems(meta_conn(vol)) == []
        assert vol.fsck().ok
        report = vol.gc(skip_age=0, delete=True)  # its blocks went up first: leaked, never referenced
        assert len(report.leaked) == -(-200000 // 65536)
        vol.write_file("/after", b"the volume carries on")
        assert vol.read_file("/after") == b"the volume carries on"


def test_group_commit_lost_to_another_writer_is_reported(tmp_path: Path) -> None:
    grouped, meta, _ = _new(tmp_path, sync=NEVER)
    with grouped:
        grouped.write_file("/mine", b"shipped")
        grouped.flush()
        grouped.create("/lost")  # committed in this process only
        # Another process takes the next TXIDs in the store (in this process, ltxvfs would ship
        # our group first when the other connection takes the write lock).
        subprocess.run([sys.executable, "-c", _OTHER_WRITER, meta], cwd=ROOT, check=True, timeout=CHILD_TIMEOUT)
        with pytest.raises(CommitsLostError, match="lost"):
            grouped.flush()
        # The volume reads the store's state again and carries on with fresh IDs.
        assert not grouped.exists("/lost")
        grouped.create("/again")
        grouped.flush()
        assert sorted(grouped.listdir("/")) == ["again", "from-another-process", "mine"]
        assert metadata_problems(meta_conn(grouped)) == []
    with Volume.open(meta, read_only=True) as reader:
        assert sorted(reader.listdir("/")) == ["again", "from-another-process", "mine"]
        inodes = [reader.stat(f"/{n}").st_ino for n in reader.listdir("/")]
        assert len(set(inodes)) == 3


# --- failed commits -------------------------------------------------------------------------------

def test_a_commit_that_loses_the_race_is_retried_on_the_new_state(tmp_path: Path) -> None:
    meta, data = f"file://{tmp_path}/meta", f"file://{tmp_path}/data"
    not_following = functools.partial(connect_meta, params={"poll": "0"})  # learns of others only at commit
    with Volume.format(meta, data, "racevol", block_size=TEST_BLOCK_SIZE, connect=not_following) as vol:
        vol.write_file("/first", b"mine")
        subprocess.run([sys.executable, "-c", _OTHER_WRITER, meta], cwd=ROOT, check=True, timeout=CHILD_TIMEOUT)
        vol.write_file("/second", b"mine too")  # its TXID is taken: conflict, reload, run again
        assert vol.meta_stats()["write_conflicts"] >= 1
        assert sorted(vol.listdir("/")) == ["first", "from-another-process", "second"]
        assert vol.read_file("/from-another-process") == b"theirs"
        assert metadata_problems(meta_conn(vol)) == []
    assert _replica_files(meta) == [(t, t) for t in range(1, len(_replica_files(meta)) + 1)]


def test_a_commit_the_store_refused_keeps_its_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vol, meta, _ = _new(tmp_path)
    with vol:
        vol.write_file("/before", b"fine")
        real_put = Replica.put_file
        failures = [1]

        def flaky_put(self: Replica, *args: object, **kwargs: object) -> str:
            if failures:
                failures.pop()
                raise StoreError(self.url, "ltx/0/x.ltx", "injected: the store is down")
            return real_put(self, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(Replica, "put_file", flaky_put)
        with pytest.raises(CommitOutcomeUnknownError, match="injected"):
            vol.write_file("/unknown", random.Random(4).randbytes(2 * TEST_BLOCK_SIZE))
        # Whether the commit landed is unknown: its blocks stay (gc finds them if it did not).
        assert len(list(vol.store.list("repvol/chunks/"))) == 3
        assert not vol.exists("/unknown")
        vol.write_file("/after", b"the volume carries on")
        assert vol.read_file("/after") == b"the volume carries on"
        assert len(vol.gc(skip_age=0).leaked) == 2
        assert metadata_problems(meta_conn(vol)) == []


# --- time travel ----------------------------------------------------------------------------------


def _state_time(meta: str, txid: int) -> float:
    """Creation time (s) of the LTX file of `txid`."""
    replica = Replica.open(meta)
    try:
        info = next(f for f in replica.list_level(0) if f.max_txid == txid)
        return info.created_at.timestamp()
    finally:
        replica.close()


def _next_millisecond(after: float) -> None:
    """Return once the clock is past `after`'s millisecond (LTX times are whole ms)."""
    deadline = time.monotonic() + 5
    while int(time.time() * 1000) <= int(after * 1000):
        assert time.monotonic() < deadline, "the clock did not move"


def test_snapshot_opens_the_volume_at_a_past_txid_or_time(tmp_path: Path) -> None:
    vol, meta, _ = _new(tmp_path, trash_days=1)  # the trash keeps removed files' blocks
    first = random.Random(8).randbytes(2 * TEST_BLOCK_SIZE + 7)
    with vol:
        vol.write_file("/a", first)
        vol.setxattr("/a", "user.v", b"1")
        t1 = vol.txid
        _next_millisecond(_state_time(meta, t1))
        vol.mkdir("/d")
        vol.write_file("/d/b", b"second file")
        vol.pwrite("/a", b"PATCH", 10)
        vol.setxattr("/a", "user.v", b"2")
        t2 = vol.txid
        vol.unlink("/d/b")
        vol.rename("/a", "/renamed")
        latest = vol.txid
    # Files strictly older than the first one after t1 make up t1's state.
    at_time = datetime.fromtimestamp(_state_time(meta, t1 + 1), UTC)
    for snap in (Volume.open(meta, txid=t1), Volume.open(meta, timestamp=at_time)):
        with snap:
            assert snap.read_only and snap.txid == t1
            assert snap.listdir("/") == ["a"]
            assert snap.read_file("/a") == first
            assert snap.getxattr("/a", "user.v") == b"1"
            with pytest.raises(OSError) as err:
                snap.write_file("/x", b"no")
            assert err.value.errno == errno.EROFS
    with Volume.open(meta, txid=t2) as snap:
        assert sorted(snap.listdir("/")) == ["a", "d"]
        assert snap.read_file("/d/b") == b"second file"  # unlinked later, its blocks kept by the trash
        assert snap.read_file("/a") == first[:10] + b"PATCH" + first[15:]
        assert snap.getxattr("/a", "user.v") == b"2"
    with Volume.open(meta) as now:
        assert now.txid == latest
        assert not now.exists("/a") and now.read_file("/renamed") == first[:10] + b"PATCH" + first[15:]


def test_snapshot_bytes_released_since_are_an_error_not_zeros(tmp_path: Path) -> None:
    vol, meta, _ = _new(tmp_path)  # no trash: an unlink gives the blocks back at once
    with vol:
        vol.write_file("/gone", b"soon deleted")
        before = vol.txid
        vol.unlink("/gone")
    with Volume.open(meta, txid=before) as snap:
        assert snap.stat("/gone").st_size == 12
        with pytest.raises(BlockError, match="missing"):
            snap.read_file("/gone")


def test_snapshot_by_relative_time_and_datetime(tmp_path: Path) -> None:
    vol, meta, _ = _new(tmp_path)
    with vol:
        vol.write_file("/f", b"v1")
        t = vol.txid
        created = _state_time(meta, t)
        _next_millisecond(created)
        vol.pwrite("/f", b"v2", 0)  # an overwrite appends a record: the v1 slice stays referenced
    after_t = datetime.fromtimestamp(_state_time(meta, t + 1), UTC)
    with Volume.open(meta, timestamp=after_t) as snap:
        assert snap.read_file("/f") == b"v1"
    with Volume.open(meta, timestamp=after_t + timedelta(hours=1)) as snap:
        assert snap.read_file("/f") == b"v2"
    with Volume.open(meta, timestamp="0 seconds ago") as snap:  # relative times, as Litestream reads them
        assert snap.read_file("/f") == b"v2"
    with pytest.raises(apsw.CantOpenError, match="cannot restore"):  # nothing that old
        Volume.open(meta, timestamp="1 hour ago")


def test_meta_stats_count_requests(tmp_path: Path) -> None:
    vol, meta, _ = _new(tmp_path)
    with vol:
        vol.write_file("/f", b"x")
        stats = vol.meta_stats()
    assert stats["write_ltx_files"] >= 1 and stats["puts"] >= stats["write_ltx_files"]
    assert stats["bytes_written"] > 0
    assert os.path.isdir(meta[len("file://"):])
