"""The open's listing on S3: the levels above 0 and level 0's first LIST page in one round trip,
then level 0 from where the levels above end, however many level-0 files wait for retention
(a whole-replica LIST would page through them one round trip per 1000 keys)."""

from __future__ import annotations

from pathlib import Path

from ltx.compaction import compact_chunks
from ltx.replica import Replica
from tests.ltx.ltxfiles import incremental, snapshot
from tests.s3proxy import S3Proxy
from tests.s3server import S3Server
from tests.vfs.replicas import connect, stats
from vfs.firstlook import LEVEL0_HEAD_FILES

PAGE = 4096
COMMIT = 8


def _ship(replica: Replica, last: int) -> dict[int, bytes]:
    """TXID 1 (a snapshot) to `last`, one level-0 file each; returns the latest pages."""
    data, pages = snapshot(PAGE, COMMIT)
    replica.put_file(0, 1, 1, data, timestamp_ms=1000)
    for txid in range(2, last + 1):
        data, changed = incremental(PAGE, COMMIT, [2 + txid % 6], txid, seed=txid, timestamp=1000 + txid)
        replica.put_file(0, txid, txid, data, timestamp_ms=1000 + txid)
        pages.update(changed)
    return pages


def _open(server: S3Server, url: str, tmp_path: Path) -> tuple[dict[str, int], int, int]:
    """(requests by kind, round trips waited, TXID) of a cold open through a counting proxy."""
    with S3Proxy(server.endpoint) as proxy:
        conn = connect(tmp_path / "x.db", url.replace(server.endpoint, proxy.url), poll=0)
        try:
            txid = int(conn.execute("PRAGMA litestream_txid").fetchall()[0][0], 16)
            waited = stats(conn)["round_trips"]
            counts = proxy.counts()
        finally:
            conn.close()
    return counts, waited, txid


def test_many_level0_files_cost_one_more_round_trip_not_one_per_page(s3_server: S3Server, s3_url: str,
                                                                     tmp_path: Path) -> None:
    last = LEVEL0_HEAD_FILES * 2 + 100
    replica = Replica.open(s3_url)
    _ship(replica, last)
    compact_chunks(replica, 1, 64)  # level 1 reaches TXID 1024; 74 level-0 files are not covered
    replica.close()
    counts, waited, txid = _open(s3_server, s3_url, tmp_path)
    assert txid == last
    # Above level 0 (one page), level 0's first page, then level 0 past TXID 1024 (one page).
    assert counts["LIST"] == 3, counts
    assert waited == 3


def test_a_gap_above_falls_back_to_the_whole_listing(s3_server: S3Server, s3_url: str, tmp_path: Path) -> None:
    last = LEVEL0_HEAD_FILES + 300
    replica = Replica.open(s3_url)
    _ship(replica, last)
    compact_chunks(replica, 1, 100)  # level 1: 1-100 ... 601-700
    doomed = next(f for f in replica.list_level(1) if f.min_txid == 501)
    replica.delete_file(doomed)  # a gap at 501-600: only the level-0 files the first page missed fill it
    replica.close()
    counts, _, txid = _open(s3_server, s3_url, tmp_path)
    assert txid == last, "the skipped level-0 files were listed after all"
    assert counts["LIST"] >= 4, counts


def test_other_keys_in_level0_first_page_still_find_every_file(s3_server: S3Server, s3_url: str,
                                                               tmp_path: Path) -> None:
    """The open's first look takes level 0's first keys raw (vfs/firstlook.py); keys that are not
    LTX files among them (sorting before every file) leave fewer files than it counts on, and the
    level is listed again, not taken as complete."""
    replica = Replica.open(s3_url)
    _ship(replica, 3)
    for i in range(2 * LEVEL0_HEAD_FILES + 1):
        replica.store.put(f"0000/.junk-{i:04d}", b"x")
    replica.close()
    counts, waited, txid = _open(s3_server, s3_url, tmp_path)
    assert txid == 3
    assert counts["LIST"] >= 3, counts
    assert waited == 3
