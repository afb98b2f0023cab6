"""Interop with the real `litestream` 0.5.17 binary, both ways, on file:// and s3:// replicas.

(a) litestream replicates a WAL database through a scripted workload; our decoder reads every
    LTX file it wrote (levels 0, 1 and 9) and rebuilds the database page for page.
(b) our encoder (and compactor) write a replica; `litestream restore` rebuilds the database,
    which passes `PRAGMA integrity_check` and equals the source, row for row and page for page.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import apsw
import pytest

from ltx.compactor import compact
from ltx.decoder import Decoder
from ltx.encoder import Encoder
from ltx.header import Header
from ltx.plan import SNAPSHOT_LEVEL, LTXFileInfo, restore_plan
from ltx.replica import Replica
from tests import litestream
from tests.ltx import sqlgen

#: Compaction schedule for (a): level 1 every second, a level-9 snapshot every two.
LEVEL1_INTERVAL = "1s"
SNAPSHOT_INTERVAL = "2s"
#: Litestream checkpoints after this many WAL pages (its default, 1000, is never reached here).
MIN_CHECKPOINT_PAGES = 200
BASE_TIMESTAMP_MS = 1_767_225_600_000


class Rebuild:
    """A database rebuilt from LTX files applied in TXID order (snapshot, then incrementals)."""

    def __init__(self) -> None:
        self.pages: list[bytes] = []
        self.txid = 0

    def apply(self, stream: Any, name: str) -> Header:
        dec = Decoder(stream, name)
        header = dec.header
        if not header.is_snapshot:
            assert header.min_txid <= self.txid + 1 < header.max_txid + 1, (
                f"{name} does not continue TXID {self.txid:x}")
        pages = dict(dec.pages())  # the whole file is verified before any page is used
        base = [] if header.is_snapshot else self.pages[:header.commit]
        # A page the chain never wrote stays zero, and then differs from the source's.
        base += [bytes(header.page_size)] * (header.commit - len(base))
        for pgno, page in pages.items():
            base[pgno - 1] = page
        self.pages = base
        self.txid = header.max_txid
        return header


def first_difference(got: Sequence[bytes], want: Sequence[bytes]) -> str:
    if len(got) != len(want):
        return f"{len(got)} pages, the source has {len(want)}"
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        if a != b:
            return f"page {i + 1} differs"
    return "equal"


def rebuild(replica: Replica, files: Sequence[LTXFileInfo]) -> Rebuild:
    out = Rebuild()
    for info in files:
        with replica.open_file(info) as f:
            out.apply(f, info.key)
    return out


class Follower:
    """Applies a replica's level-0 files as they appear."""

    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self.state = Rebuild()

    def catch_up(self) -> int:
        for info in self.replica.list_level(0, self.state.txid + 1):
            if info.min_txid != self.state.txid + 1:
                break
            with self.replica.open_file(info) as f:
                self.state.apply(f, info.key)
        return self.state.txid

    def matches(self, db_path: Path) -> bool:
        self.catch_up()
        return self.state.pages == sqlgen.database_pages(db_path)


@pytest.fixture(params=["file", "s3"])
def replica_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty replica location on each backend."""
    if request.param == "file":
        return f"file://{tmp_path / 'replica'}"
    url: str = request.getfixturevalue("s3_url")
    return url


def env_for(request: pytest.FixtureRequest, url: str) -> dict[str, str]:
    """The environment litestream needs for `url`: the test S3 server's credentials for s3://."""
    if not url.startswith("s3://"):
        return {}
    env: dict[str, str] = request.getfixturevalue("s3_env")
    return env


# --- (a) litestream writes, we read -------------------------------------------------------------

@pytest.mark.parametrize("page_size", [4096, 1024])
def test_litestream_replica_decodes_and_rebuilds(request: pytest.FixtureRequest, tmp_path: Path, replica_url: str,
                                                 page_size: int) -> None:
    db_path = tmp_path / "src.db"
    conn = sqlgen.open_database(db_path, page_size)
    steps = sqlgen.workload(seed=page_size, transactions=30, page_size=page_size)
    config = litestream.write_config(
        tmp_path / "litestream.yml", db_path, replica_url, levels=(LEVEL1_INTERVAL,),
        snapshot_interval=SNAPSHOT_INTERVAL, l0_retention="1h",
        db_extra={"min-checkpoint-page-count": MIN_CHECKPOINT_PAGES})
    replica = Replica.open(replica_url)
    follower = Follower(replica)
    with litestream.Replicator(config, env=env_for(request, replica_url)) as proc:
        proc.wait_for(follower.catch_up, "litestream's first LTX file")
        # Every committed state of the source, one after another, is reproduced from level 0.
        for i, step in enumerate(steps):
            step.apply(conn)
            proc.wait_for(lambda: follower.matches(db_path), f"level 0 to reproduce step {i} ({step.kind})")

        def compacted() -> bool:
            tip = follower.catch_up()
            return all(replica.list_level(lvl) and replica.list_level(lvl)[-1].max_txid == tip
                       for lvl in (1, SNAPSHOT_LEVEL))
        proc.wait_for(compacted, "level 1 and a level-9 snapshot to reach the latest TXID")
        assert proc.stop() == 0, proc.log()

    source = sqlgen.database_pages(db_path)
    levels = replica.list_levels()
    assert levels[0] and levels[1] and levels[SNAPSHOT_LEVEL]
    assert not any(levels[lvl] for lvl in range(2, SNAPSHOT_LEVEL))

    # Every file at every level decodes, and its header agrees with its name and with the
    # timestamp litestream recorded beside it (file mtime, or S3 `litestream-timestamp` metadata).
    for lvl, files in levels.items():
        for info in files:
            with replica.open_file(info) as f:
                dec = Decoder(f, info.key)
                dec.verify()
            h = dec.header
            assert (h.min_txid, h.max_txid, h.page_size) == (info.min_txid, info.max_txid, page_size), info.key
            assert replica.store.head(info.key).timestamp_ms == h.timestamp, info.key
            if lvl == 0:
                assert h.min_txid == h.max_txid, info.key
            if lvl == SNAPSHOT_LEVEL:
                assert h.is_snapshot, info.key

    # Three ways to the latest state, each equal to the source page for page.
    level0 = levels[0]
    assert [f.min_txid for f in level0] == list(range(1, len(level0) + 1))
    by_level0 = rebuild(replica, level0)
    no_snapshot = restore_plan({lvl: fs for lvl, fs in levels.items() if lvl != SNAPSHOT_LEVEL})
    with_snapshot = restore_plan(levels)
    assert any(f.level == 1 for f in no_snapshot)
    assert with_snapshot[0].level == SNAPSHOT_LEVEL
    for how, got in [("level 0", by_level0), ("levels 0-1", rebuild(replica, no_snapshot)),
                     ("snapshot plan", rebuild(replica, with_snapshot))]:
        assert got.pages == source, f"{how}: {first_difference(got.pages, source)}"
    assert len(level0) > len(steps)  # one file per transaction at least, plus litestream's own
    replica.close()


# --- (b) we write, litestream reads ---------------------------------------------------------------

class History:
    """The source database's page images and rows after each transaction (TXID = index + 1)."""

    def __init__(self, path: Path, page_size: int, steps: Sequence[sqlgen.Step]) -> None:
        self.page_size = page_size
        self.pages: list[list[bytes]] = []
        self.rows: list[dict[str, list[tuple[Any, ...]]]] = []
        conn = sqlgen.open_database(path, page_size, journal_mode="delete")
        for step in steps:
            step.apply(conn)
            self.pages.append(sqlgen.file_pages(path, page_size))
            self.rows.append(sqlgen.dump_rows(conn))
        conn.close()

    def timestamp(self, txid: int) -> int:
        return BASE_TIMESTAMP_MS + 1000 * txid

    def encode(self, min_txid: int, max_txid: int) -> bytes:
        """One LTX file taking the database from TXID min-1 to max: a snapshot when min is 1."""
        after = self.pages[max_txid - 1]
        header = Header(page_size=self.page_size, commit=len(after), min_txid=min_txid, max_txid=max_txid,
                        timestamp=self.timestamp(max_txid))
        # Applied to the state at min-1, the changed pages (and every page past its end) give max.
        before = [] if header.is_snapshot else self.pages[min_txid - 2]
        changed = sqlgen.changed_pages(before, after)
        out = io.BytesIO()
        enc = Encoder(out, header, f"{min_txid:x}-{max_txid:x}")
        for pgno in changed:
            enc.write_page(pgno, after[pgno - 1])
        enc.close()
        return out.getvalue()


def restored(path: Path) -> tuple[str, dict[str, list[tuple[Any, ...]]]]:
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    check = conn.execute("PRAGMA integrity_check").fetchall()[0][0]
    rows = sqlgen.dump_rows(conn)
    conn.close()
    return str(check), rows


@pytest.mark.parametrize("page_size", [4096, 8192])
def test_litestream_restores_our_replica(request: pytest.FixtureRequest, tmp_path: Path, replica_url: str,
                                         page_size: int) -> None:
    steps = sqlgen.workload(seed=100 + page_size, transactions=24, page_size=page_size)
    history = History(tmp_path / "src.db", page_size, steps)
    tip = len(steps)
    replica = Replica.open(replica_url)
    # Level 0: a snapshot at TXID 1, then one incremental per transaction.
    for txid in range(1, tip + 1):
        replica.put_file(0, txid, txid, history.encode(txid, txid), history.timestamp(txid))
    # Level 1: our compactor's merge of level-0 files 2..10; level 9: a snapshot at TXID 15.
    l0 = replica.list_level(0)
    inputs = [(replica.open_file(info), info.key) for info in l0[1:10]]
    merged = io.BytesIO()
    header = compact(inputs, merged, name="l1")
    for stream, _ in inputs:
        stream.close()
    assert (header.min_txid, header.max_txid) == (2, 10)
    replica.put_file(1, 2, 10, merged.getvalue(), header.timestamp)
    replica.put_file(SNAPSHOT_LEVEL, 1, 15, history.encode(1, 15), history.timestamp(15))
    env = env_for(request, replica_url)

    targets = {"latest": tip, "in level 1": 10, "before the snapshot": 12, "at the snapshot": 15,
               "after the shrink": next(i + 1 for i, s in enumerate(steps) if s.is_vacuum)}
    for what, txid in targets.items():
        out = tmp_path / f"restored-{txid}.db"
        args = () if what == "latest" else ("-txid", f"{txid:016x}")
        litestream.restore(replica_url, out, *args, env=env)
        check, rows = restored(out)
        assert check == "ok", f"{what} (TXID {txid}): integrity_check says {check}"
        assert rows == history.rows[txid - 1], f"{what} (TXID {txid}): rows differ"
        got = sqlgen.file_pages(out, page_size)
        want = history.pages[txid - 1]
        assert got == want, f"{what} (TXID {txid}): {first_difference(got, want)}"
    replica.close()


def test_restore_plan_used_by_litestream_matches_ours(request: pytest.FixtureRequest, tmp_path: Path,
                                                      replica_url: str) -> None:
    """`litestream restore -dry-run -json` picks the same files as ltx.plan for a mixed replica."""
    steps = sqlgen.workload(seed=7, transactions=12, page_size=4096)
    history = History(tmp_path / "src.db", 4096, steps)
    replica = Replica.open(replica_url)
    for txid in range(1, len(steps) + 1):
        replica.put_file(0, txid, txid, history.encode(txid, txid), history.timestamp(txid))
    replica.put_file(1, 3, 6, history.encode(3, 6), history.timestamp(6))
    replica.put_file(SNAPSHOT_LEVEL, 1, 4, history.encode(1, 4), history.timestamp(4))
    ours = [(f.level, f.min_txid, f.max_txid) for f in restore_plan(replica.list_levels())]
    result = litestream.restore(replica_url, tmp_path / "dry.db", "-dry-run", "-json",
                                env=env_for(request, replica_url))
    theirs = dry_run_files(result.stdout)
    assert theirs == ours
    assert ours[0] == (SNAPSHOT_LEVEL, 1, 4) and (1, 3, 6) in ours
    replica.close()


def dry_run_files(stdout: str) -> list[tuple[int, int, int]]:
    plan: Mapping[str, Any] = json.loads(stdout)
    return [(int(f["level"]), int(f["min_txid"], 16), int(f["max_txid"], 16)) for f in plan["files"]]
