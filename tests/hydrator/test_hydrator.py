"""The hydrator against real stores (file:// and the SeaweedFS S3 server): equality with a restore,
resume after SIGKILL, follow mode, start-over, refusal of corrupt files, the writer's own commits."""

from __future__ import annotations

import io
import os
import random
import signal
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from hydrator import hydrator as hydrator_module
from hydrator.errors import CorruptFileError, HydrationStoppedError
from hydrator.hydrator import SNAPSHOT_TMP_SUFFIX, Hydrator
from hydrator.state import PlannedFile, load_state, save_state, state_path
from ltx.decoder import Decoder
from ltx.encoder import Encoder
from ltx.header import Header
from ltx.plan import LTXFileInfo
from ltx.replica import Replica
from ltx.restore import restore
from tests.hydrator.builder import ReplicaBuilder
from tests.hydrator.hydrate_worker import SlowStore
from tests.litestream import restore as litestream_restore
from tests.litestream import wait_for

#: Upper bound for anything a test waits for (polled, never slept).
DEADLINE = 30.0
ROOT = Path(__file__).resolve().parents[2]


def hydrate(replica: Replica | str, path: Path, **kwargs: object) -> Hydrator:
    """Hydrate `path` in the calling thread; the hydrator is returned closed, stats readable."""
    h = Hydrator(replica, path, **kwargs)  # type: ignore[arg-type]
    try:
        h.run()
    finally:
        h.close()
    return h


def test_hydrated_file_equals_restore(builder: ReplicaBuilder, replica: Replica, replica_url: str,
                                      tmp_path: Path) -> None:
    steps = builder.steps(24)
    builder.run(steps[:12])
    builder.compact(1)
    builder.snapshot()
    builder.run(steps[12:])
    out = tmp_path / "hydrated.db"
    h = hydrate(replica, out)
    assert h.txid == builder.txid
    assert out.read_bytes() == builder.images[builder.txid]
    restored = tmp_path / "restored.db"
    restore(replica, restored)
    assert out.read_bytes() == restored.read_bytes()
    state = load_state(out)
    assert state is not None and state.complete and state.consistent and not state.pending
    assert state.txid == builder.txid and state.replica_url == replica.url and "@" not in state.replica_url
    assert h.progress.complete and h.progress.percent == 100.0
    assert h.progress.bytes_done == h.progress.bytes_total > 0


def test_hydrated_file_equals_litestream_restore(builder: ReplicaBuilder, replica: Replica, replica_url: str,
                                                 request: pytest.FixtureRequest, tmp_path: Path) -> None:
    builder.run(builder.steps(10))
    out = tmp_path / "hydrated.db"
    hydrate(replica, out)
    theirs = tmp_path / "litestream.db"
    env = request.getfixturevalue("s3_env") if replica_url.startswith("s3:") else None
    litestream_restore(replica_url, theirs, env=env)
    assert out.read_bytes() == theirs.read_bytes()


def test_each_file_fetched_once_whole(builder: ReplicaBuilder, replica: Replica, tmp_path: Path) -> None:
    builder.run(builder.steps(12))
    before = replica.store.stats.snapshot()
    hydrate(replica, tmp_path / "h.db")
    after = replica.store.stats.snapshot()
    files = builder.files
    # One GET per (small) file; never one per page.
    assert after["gets"] - before["gets"] == len(files)
    assert after["bytes_read"] - before["bytes_read"] == sum(f.size for f in files)


def test_resume_after_sigkill_fetches_less(builder: ReplicaBuilder, replica: Replica, replica_url: str,
                                           tmp_path: Path) -> None:
    builder.run(builder.steps(40, grow_rows=12))
    path = tmp_path / "killed.db"
    env = {k: v for k, v in os.environ.items()}
    proc = subprocess.Popen([sys.executable, "-m", "tests.hydrator.hydrate_worker", replica_url, str(path),
                             "0.03", "1", "0"], cwd=ROOT, env=env, stderr=subprocess.PIPE, start_new_session=True)
    try:
        def progressed() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"worker exited early: {proc.stderr.read().decode() if proc.stderr else ''}")
            try:
                state = load_state(path)
            except Exception:  # noqa: BLE001 - a record being replaced is read again next poll
                return False
            return state is not None and state.txid >= 8
        wait_for(progressed, "the worker to apply some files", DEADLINE, interval=0.005)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    state = load_state(path)
    assert state is not None and state.pending and not state.complete, "killed too late to test a resume"
    applied = [f for f in builder.files if f.max_txid <= state.txid]

    before = replica.store.stats.snapshot()["bytes_read"]
    h = hydrate(replica, path)
    resumed = replica.store.stats.snapshot()["bytes_read"] - before
    assert h.restarts == 0
    before = replica.store.stats.snapshot()["bytes_read"]
    hydrate(replica, tmp_path / "fresh.db")
    fresh = replica.store.stats.snapshot()["bytes_read"] - before

    assert path.read_bytes() == builder.images[builder.txid]
    assert resumed < fresh
    # Files applied before the kill are not fetched again (one header read checks the history).
    assert resumed <= fresh - sum(f.size for f in applied) + 4096
    assert not Path(f"{path}-hydrator.tmp").exists()


def test_resume_with_nothing_new_reads_the_file(builder: ReplicaBuilder, replica: Replica, tmp_path: Path) -> None:
    """A restart that finds the file already at the replica's TXID applies nothing, yet pread works."""
    builder.run(builder.steps(4))
    path = tmp_path / "again.db"
    hydrate(replica, path)
    with Hydrator(replica, path) as h:
        h.run()
        assert h.is_complete and h.txid == builder.txid
        with h.reading():
            assert h.pread(0, 1 << 20) == builder.images[builder.txid]


def test_follow_picks_up_new_files(builder: ReplicaBuilder, replica: Replica, tmp_path: Path) -> None:
    steps = builder.steps(16)
    builder.run(steps[:8])
    path = tmp_path / "follow.db"
    with Hydrator(replica, path, follow=True, poll_interval=0.02) as h:
        h.start()
        assert h.wait_complete(DEADLINE)
        assert h.txid == 8
        for step in steps[8:]:
            builder.commit(step)
        assert h.wait_txid(builder.txid, DEADLINE), f"follow stuck at {h.txid}, replica at {builder.txid}"
        with h.reading():
            assert h.txid == builder.txid
            assert h.pread(0, len(builder.images[builder.txid]) + 10) == builder.images[builder.txid]
        assert h.running
    assert path.read_bytes() == builder.images[builder.txid]
    assert not h.running


def test_follow_uses_level1_when_level0_has_gap(builder: ReplicaBuilder, replica: Replica, tmp_path: Path) -> None:
    steps = builder.steps(20)
    builder.run(steps[:6])
    path = tmp_path / "gap.db"
    with Hydrator(replica, path, follow=True) as h:
        h._hydrate()  # the thread's first part, in this thread: hydrated at TXID 6, no poll yet
        assert h.txid == 6
        builder.run(steps[6:14])
        l1 = builder.compact(1)
        assert l1 is not None and l1.max_txid == 14
        gone = builder.delete_level(0, upto_txid=14)
        assert [f.max_txid for f in gone] == list(range(1, 15))
        builder.run(steps[14:])
        assert h.poll_once() >= 2
        assert h.txid == builder.txid
    assert path.read_bytes() == builder.images[builder.txid]


def test_planned_files_removed_by_compaction_before_their_fetch_mean_listing_again(
        builder: ReplicaBuilder, replica: Replica, tmp_path: Path) -> None:
    """Compaction may remove level-0 files between a hydration's listing and its fetches (a short
    retention): the hydration lists again and finishes from the level that now covers them."""
    builder.run(builder.steps(10))
    h = Hydrator(replica, tmp_path / "h.db")
    listed = h.replica.list_levels
    calls = 0

    def list_then_compact(*args: object, **kwargs: object) -> dict[int, list[LTXFileInfo]]:
        nonlocal calls
        calls += 1
        levels = listed(*args, **kwargs)  # type: ignore[arg-type]
        if calls == 1:  # after the first listing: level 1 takes over, level 0 goes
            assert builder.compact(1) is not None
            assert builder.delete_level(0)
        return levels

    h.replica.list_levels = list_then_compact  # type: ignore[method-assign]
    try:
        h.run()
    finally:
        h.close()
    assert calls == 2 and h.relists == 1
    assert (tmp_path / "h.db").read_bytes() == builder.images[builder.txid]


def test_start_over_when_history_replaced(replica: Replica, tmp_path: Path) -> None:
    first = ReplicaBuilder(replica, tmp_path, seed=1)
    first.run(first.steps(10))
    path = tmp_path / "db"
    hydrate(replica, path)
    assert path.read_bytes() == first.images[10]
    for level in (0, 1, 9):
        first.delete_level(level)
    # A different database now lives at the same URL, with TXIDs past the ones hydrated.
    second = ReplicaBuilder(replica, tmp_path, seed=2, start_ms=first.start_ms + 500)
    second.run(second.steps(14))
    h = hydrate(replica, path)
    assert h.restarts == 1 and "replaced" in h.restart_reason
    assert path.read_bytes() == second.images[second.txid]
    first.close()
    second.close()


def test_start_over_when_history_shorter(replica: Replica, tmp_path: Path) -> None:
    first = ReplicaBuilder(replica, tmp_path, seed=3)
    first.run(first.steps(12))
    path = tmp_path / "db"
    hydrate(replica, path)
    first.delete_level(0)
    second = ReplicaBuilder(replica, tmp_path, seed=4)
    second.run(second.steps(5)[:4])
    h = hydrate(replica, path)
    assert h.restarts == 1 and "ends at TXID" in h.restart_reason
    assert path.read_bytes() == second.images[second.txid]
    first.close()
    second.close()


def test_start_over_when_no_file_continues(builder: ReplicaBuilder, replica: Replica, tmp_path: Path) -> None:
    steps = builder.steps(20)
    builder.run(steps[:6])
    path = tmp_path / "db"
    hydrate(replica, path)
    builder.run(steps[6:14])
    snap = builder.snapshot()
    assert snap is not None
    builder.delete_level(0, upto_txid=14)  # retention: only the snapshot holds TXIDs 1..14 now
    builder.run(steps[14:])
    h = hydrate(replica, path)
    assert h.restarts == 1 and "no file continues" in h.restart_reason
    assert path.read_bytes() == builder.images[builder.txid]


def _corrupt(replica: Replica, key: str) -> None:
    """Flip one byte in the middle of an object (inside a page's LZ4 block)."""
    data = bytearray(replica.store.get(key))
    data[len(data) // 2] ^= 0xFF
    replica.store.delete(key)
    replica.store.put(key, bytes(data))


def test_corrupt_file_refused(builder: ReplicaBuilder, replica: Replica, tmp_path: Path) -> None:
    steps = builder.steps(10)
    builder.run(steps[:5])
    path = tmp_path / "db"
    hydrate(replica, path)
    bad = builder.commit(steps[5])
    builder.run(steps[6:8])
    _corrupt(replica, bad.key)
    with Hydrator(replica, path) as h:
        with pytest.raises(CorruptFileError) as err:
            h.run()
    assert err.value.key == bad.key and bad.key in str(err.value) and replica.url.rstrip("/") in str(err.value)
    # Nothing of the bad file (or after it) was applied: the file still holds TXID 5, consistent.
    state = load_state(path)
    assert state is not None and state.txid == 5 and state.consistent
    assert path.read_bytes() == builder.images[5]


def test_corrupt_snapshot_leaves_no_file(builder: ReplicaBuilder, replica: Replica, tmp_path: Path) -> None:
    builder.run(builder.steps(4))
    _corrupt(replica, builder.files[0].key)
    path = tmp_path / "db"
    h = Hydrator(replica, path).start()
    with pytest.raises(CorruptFileError, match=builder.files[0].key):
        h.wait_complete(DEADLINE)
    h.close()
    assert not path.exists() and not Path(f"{path}-hydrator.tmp").exists()
    assert not h.is_complete and h.txid == 0


def test_apply_own_commit(builder: ReplicaBuilder, replica: Replica, tmp_path: Path) -> None:
    steps = builder.steps(8)
    builder.run(steps[:4])
    path = tmp_path / "db"
    with Hydrator(replica, path) as h:
        h.run()
        # The writer's commit T+1: its bytes are handed over rather than fetched back.
        info = builder.commit(steps[4])
        data = replica.store.get(info.key)
        before = replica.store.stats.snapshot()["gets"]
        with h.reading(), pytest.raises(RuntimeError, match="holds a read"):
            h.apply_ltx(io.BytesIO(data), info.key)  # it would wait for its own reader
        assert h.txid == 4 and h.is_complete and path.read_bytes() == builder.images[4]
        assert h.apply_ltx(io.BytesIO(data), info.key)
        assert h.txid == 5 and path.read_bytes() == builder.images[5]
        assert h.poll_once() == 0
        assert replica.store.stats.snapshot()["gets"] == before
        # A file that does not continue TXID 5 is declined, untouched.
        header = Header(page_size=4096, commit=len(builder.images[5]) // 4096, min_txid=9, max_txid=9)
        out = io.BytesIO()
        enc = Encoder(out, header)
        enc.write_page(1, builder.images[5][:4096])
        enc.close()
        assert not h.apply_ltx(io.BytesIO(out.getvalue()), "gap.ltx")
        assert h.txid == 5 and path.read_bytes() == builder.images[5]
        # A damaged one is refused.
        damaged = bytearray(data)
        damaged[len(damaged) // 2] ^= 0x55
        with pytest.raises(CorruptFileError, match="own.ltx"):
            h.apply_ltx(io.BytesIO(bytes(damaged)), "own.ltx")
    assert load_state(path) is not None and state_path(path).exists()


def _interrupted_apply(builder: ReplicaBuilder, path: Path, txid: int, files: list[LTXFileInfo]) -> None:
    """Leave `path` as a crash while applying `files` would: the record marked dirty up to their last
    TXID, and the pages they change garbled (worse than any real partial write)."""
    state = load_state(path)
    assert state is not None and state.txid == txid
    state.dirty_until = files[-1].max_txid
    state.pending = [PlannedFile.of(f) for f in files]
    state.complete = True
    save_state(path, state)
    touched = {pgno for f in files for pgno, _ in Decoder(io.BytesIO(builder.replica.store.get(f.key))).pages()}
    with path.open("r+b") as out:
        for pgno in touched:
            out.seek((pgno - 1) * builder.page_size)
            out.write(b"\xee" * builder.page_size)
    assert path.read_bytes() != builder.images[txid]


def test_resume_repairs_partly_applied_files(builder: ReplicaBuilder, replica: Replica, tmp_path: Path) -> None:
    steps = builder.steps(12)
    builder.run(steps[:5])
    path = tmp_path / "db"
    hydrate(replica, path)
    new = builder.run(steps[5:8])
    _interrupted_apply(builder, path, 5, new)
    h = hydrate(replica, path)
    assert h.restarts == 0 and h.txid == 8
    assert path.read_bytes() == builder.images[8]


def test_resume_repairs_from_level1_when_pending_files_are_gone(builder: ReplicaBuilder, replica: Replica,
                                                               tmp_path: Path) -> None:
    steps = builder.steps(12)
    builder.run(steps[:5])
    builder.compact(1)
    path = tmp_path / "db"
    hydrate(replica, path)
    new = builder.run(steps[5:8])
    _interrupted_apply(builder, path, 5, new)
    builder.run(steps[8:10])
    assert builder.compact(1) is not None
    builder.delete_level(0, upto_txid=9)  # the pending files are gone; level 1 covers 6..10
    h = hydrate(replica, path)
    assert h.restarts == 0 and h.txid == 10
    assert path.read_bytes() == builder.images[10]


def test_start_over_when_local_file_changed(builder: ReplicaBuilder, replica: Replica, tmp_path: Path) -> None:
    builder.run(builder.steps(6))
    path = tmp_path / "db"
    hydrate(replica, path)
    with path.open("ab") as f:
        f.write(b"x" * 100)
    h = hydrate(replica, path)
    assert h.restarts == 1 and "bytes, the record says" in h.restart_reason
    assert path.read_bytes() == builder.images[builder.txid]


def test_start_over_when_partly_applied_files_cannot_be_repaired(builder: ReplicaBuilder, replica: Replica,
                                                                 tmp_path: Path) -> None:
    steps = builder.steps(12)
    builder.run(steps[:5])
    builder.compact(1)
    path = tmp_path / "db"
    hydrate(replica, path)
    builder.run(steps[5:7])
    assert builder.compact(1) is not None  # level 1: 1..5, 6..7
    new = builder.files[5:] + [builder.commit(steps[7])]
    _interrupted_apply(builder, path, 5, new)  # pages of 6..8 garbled
    builder.run(steps[8:10])
    assert builder.snapshot() is not None
    builder.delete_level(0, upto_txid=8)
    # From 5 the history still continues (level 1 reaches 7) but nothing reaches 8 any more:
    # only a fresh start (from the snapshot) can replace the garbled pages.
    h = hydrate(replica, path)
    assert h.restarts == 1 and "partly written" in h.restart_reason
    assert path.read_bytes() == builder.images[builder.txid]


def _put_random_snapshot(replica: Replica, pages: int, seed: int) -> bytes:
    """A snapshot of incompressible pages (so the object is as large as the database); its image."""
    rng = random.Random(seed)
    images = [rng.randbytes(4096) for _ in range(pages)]
    out = io.BytesIO()
    enc = Encoder(out, Header(page_size=4096, commit=pages, min_txid=1, max_txid=1, timestamp=1_000))
    for pgno, page in enumerate(images, 1):
        enc.write_page(pgno, page)
    enc.close()
    replica.put_file(9, 1, 1, out.getvalue(), timestamp_ms=1_000)
    return b"".join(images)


def test_large_file_in_ranges_with_bounded_memory(replica: Replica, tmp_path: Path) -> None:
    image = _put_random_snapshot(replica, 8192, seed=11)  # 32 MiB
    size = replica.list_level(9)[0].size
    chunk = 256 * 1024
    before = replica.store.stats.snapshot()
    tracemalloc.start()
    try:
        hydrate(replica, tmp_path / "big.db", parallelism=2, chunk_size=chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    after = replica.store.stats.snapshot()
    assert (tmp_path / "big.db").read_bytes() == image
    assert after["gets"] - before["gets"] == -(-size // chunk)  # one GET per range, none per page
    assert peak < len(image) // 2, f"peak {peak} bytes of Python memory for a {len(image)}-byte database"


def test_stop_during_a_large_file(replica: Replica, replica_url: str, tmp_path: Path) -> None:
    _put_random_snapshot(replica, 512, seed=12)  # 2 MiB in 32 ranges of 64 KiB
    slow = Replica.open(replica_url)
    slow.store = SlowStore(slow.store, 0.02)
    path = tmp_path / "stopped.db"
    h = Hydrator(slow, path, parallelism=1, chunk_size=64 * 1024).start()
    wait_for(lambda: 0 < h.progress.bytes_done < h.progress.bytes_total, "some of the file to arrive", DEADLINE,
             interval=0.002)
    h.stop(DEADLINE)
    assert not h.running and not h.is_complete
    with pytest.raises(HydrationStoppedError):
        h.wait_complete(0)
    assert not path.exists() and not Path(f"{path}{SNAPSHOT_TMP_SUFFIX}").exists()
    h.close()
    slow.close()


class _OrderStore(SlowStore):
    """A real store that records the keys it is asked to read, in order (no delay)."""

    def __init__(self, inner: object) -> None:
        super().__init__(inner, 0.0)  # type: ignore[arg-type]
        self.keys: list[str] = []

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        self.keys.append(key)
        return super().get_range(key, offset, length)


def test_fresh_start_writes_the_files_after_the_snapshot_with_it(builder: ReplicaBuilder, replica: Replica,
                                                                 tmp_path: Path) -> None:
    builder.run(builder.steps(36, grow_rows=20))
    sizes = [len(builder.images[t]) for t in range(1, builder.txid + 1)]
    assert any(b < a for a, b in zip(sizes, sizes[1:], strict=False)), "the workload must shrink the database"
    files = builder.files
    recorder = _OrderStore(replica.store)
    replica.store = recorder  # type: ignore[assignment]
    composed = hydrate(replica, tmp_path / "composed.db")
    # The files after the snapshot were fetched first, then the snapshot; all went into one new file.
    assert recorder.keys[-1] == files[0].key and sorted(recorder.keys) == sorted(f.key for f in files)
    assert (tmp_path / "composed.db").read_bytes() == builder.images[builder.txid]
    state = load_state(tmp_path / "composed.db")
    assert state is not None and state.txid == builder.txid and state.complete and not state.pending
    assert composed.progress.files_done == len(files) and composed.progress.bytes_done == sum(f.size for f in files)
    # Without composing, the same bytes, applied file after file.
    recorder.keys.clear()
    hydrate(replica, tmp_path / "stepwise.db", compose_ahead=0)
    assert recorder.keys[0] == files[0].key
    assert (tmp_path / "stepwise.db").read_bytes() == builder.images[builder.txid]


def test_a_bad_file_fetched_ahead_of_the_snapshot_leaves_no_file(builder: ReplicaBuilder, replica: Replica,
                                                                 tmp_path: Path) -> None:
    builder.run(builder.steps(8))
    bad = builder.files[3]
    _corrupt(replica, bad.key)
    path = tmp_path / "db"
    with Hydrator(replica, path) as h:
        with pytest.raises(CorruptFileError) as err:
            h.run()
    assert err.value.key == bad.key
    assert not path.exists() and not Path(f"{path}{SNAPSHOT_TMP_SUFFIX}").exists()
    state = load_state(path)
    assert state is not None and state.txid == 0 and not state.complete


def test_files_fetched_ahead_of_the_snapshot_keep_a_bounded_share_in_memory(
        builder: ReplicaBuilder, replica: Replica, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    builder.run(builder.steps(10))
    budget = 3 * builder.page_size
    monkeypatch.setattr(hydrator_module, "APPLY_BATCH_BYTES", budget)
    given: list[int] = []
    real = hydrator_module.verify_to_spill

    def spying(*args: object, spill_memory: int, **kwargs: object) -> object:
        given.append(spill_memory)
        return real(*args, spill_memory=spill_memory, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(hydrator_module, "verify_to_spill", spying)
    hydrate(replica, tmp_path / "db")
    assert (tmp_path / "db").read_bytes() == builder.images[builder.txid]
    assert len(given) == len(builder.files) - 1  # every file after the snapshot was composed with it
    assert given[0] == budget and given[-1] == 1 and all(0 < g <= budget for g in given)


def test_a_composed_fresh_start_records_complete_with_the_snapshot(builder: ReplicaBuilder, replica: Replica,
                                                                   tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    builder.run(builder.steps(6))
    saved: list[tuple[int, bool]] = []
    real = hydrator_module.save_state

    def recording(db_path: str | os.PathLike[str], state: object) -> None:
        saved.append((state.txid, state.complete))  # type: ignore[attr-defined]
        real(db_path, state)  # type: ignore[arg-type]

    monkeypatch.setattr(hydrator_module, "save_state", recording)
    path = tmp_path / "db"
    hydrate(replica, path)
    # The fresh plan, then the snapshot with every file after it, recorded complete at once.
    assert saved == [(0, False), (builder.txid, True)]
    state = load_state(path)
    assert state is not None and state.complete and state.txid == builder.txid
    assert path.read_bytes() == builder.images[builder.txid]
    # When files remain after the composed ones, completeness waits for them.
    saved.clear()
    hydrate(replica, tmp_path / "stepwise.db", compose_ahead=0)
    assert saved[-1] == (builder.txid, True) and all(not done for _, done in saved[:-1])


def test_own_commit_applied_while_a_poll_plans(builder: ReplicaBuilder, replica: Replica, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer's commit lands in the local file between a poll's listing and its plan: the
    plan keeps only what still continues the file, so the record stays valid and the next commit
    is applied (the mount saw 'pending[0] (19-19) does not continue TXID 19' and stopped applying)."""
    import hydrator.hydrator as hydrator_mod

    steps = builder.steps(8)
    builder.run(steps[:4])
    path = tmp_path / "db"
    with Hydrator(replica, path) as h:
        h.run()
        own = builder.commit(steps[4])  # TXID 5: in the replica, and handed over by the writer
        data = replica.store.get(own.key)
        planned = hydrator_mod.continue_from

        def writer_wins_the_race(levels, txid, *args, **kwargs):  # type: ignore[no-untyped-def]
            plan = planned(levels, txid, *args, **kwargs)  # computed from TXID 4
            assert h.apply_ltx(io.BytesIO(data), own.key)  # ... while the writer's commit lands
            return plan

        monkeypatch.setattr(hydrator_mod, "continue_from", writer_wins_the_race)
        h.poll_once()
        monkeypatch.setattr(hydrator_mod, "continue_from", planned)
        assert h.txid == 5
        load_state(path)  # the record is valid
        nxt = builder.commit(steps[5])
        assert h.apply_ltx(io.BytesIO(replica.store.get(nxt.key)), nxt.key)
        assert h.txid == 6 and path.read_bytes() == builder.images[6]
