"""ltx.listedreplica: a compaction round works from one listing of the replica, kept up to date
with the round's own writes and deletes, and decides exactly as with fresh listings."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from ltx.compaction import run
from ltx.listedreplica import ListedReplica
from ltx.plan import SNAPSHOT_LEVEL
from ltx.replica import Replica
from tests.ltx.ltxfiles import incremental
from tests.ltx.ltxfiles import snapshot as snapshot_file
from tests.s3proxy import S3Proxy
from tests.s3server import S3Server

COUNT = 3
LEVELS = [1, 2, 3, SNAPSHOT_LEVEL]
WEEK = {lvl: timedelta(days=7) for lvl in LEVELS}


def _layout(replica: Replica) -> dict[int, list[tuple[int, int]]]:
    return {lvl: [(f.min_txid, f.max_txid) for f in files] for lvl, files in replica.list_levels().items()}


def test_a_round_lists_once_and_decides_as_fresh_listings_do(s3_server: S3Server, s3_url: str) -> None:
    """The same level-0 files shipped to two replicas, rounds run after every COUNT files (and
    retention with a clock that makes level-0 files old): one (on the same S3 server) compacted with fresh
    listings at every look, the other by rounds of ListedReplica through the counting proxy. The two end with
    the same files at every level after every round; a round that writes nothing sends one LIST,
    one that writes sends one more per level it wrote to, where it used to send ~40."""
    with S3Proxy(s3_server.endpoint) as proxy:
        url = s3_url.replace(s3_server.endpoint, proxy.url)
        plain, listed = Replica.open(s3_server.url(f"listed-plain-{uuid.uuid4().hex[:8]}")), Replica.open(url)
        try:
            data, _ = snapshot_file(4096, 8)
            for r in (plain, listed):
                r.put_file(0, 1, 1, data, timestamp_ms=1000)
            later = datetime.now(UTC) + timedelta(hours=1)  # level 0 past its retention on both stores
            wrote_any = idle = 0
            for txid in range(2, 41):
                data, _ = incremental(4096, 8, [2 + txid % 6], txid, seed=txid, timestamp=1000 + txid)
                for r in (plain, listed):
                    r.put_file(0, txid, txid, data, timestamp_ms=1000 + txid)
                if txid % COUNT and txid % 7:
                    continue
                run(plain, LEVELS, intervals=WEEK, file_count=COUNT, now=lambda: later)
                before = proxy.counts().get("LIST", 0)
                round_replica = ListedReplica.open(url)
                try:
                    report = run(round_replica, LEVELS, intervals=WEEK, file_count=COUNT, now=lambda: later)
                finally:
                    round_replica.close()
                lists = proxy.counts().get("LIST", 0) - before
                written = {s.level for s in report.steps if s.file is not None}
                assert lists == round_replica.listings == 1 + len(written), (txid, lists, written)
                wrote_any += bool(written)
                idle += not written
                assert _layout(listed) == _layout(plain), f"after TXID {txid}"
            assert wrote_any and idle, "rounds that wrote and rounds that did not"
            assert _layout(listed)[SNAPSHOT_LEVEL] and len(_layout(listed)[0]) < 39, "compacted, retention ran"
        finally:
            plain.close()
            listed.close()
