"""`ltxctl restore` against `litestream restore` on the same ~500 MB replica in S3, in one run.

A real SQLite database of about 500 MB (rows of half-random, half-repetitive blobs, about 2:1
under LZ4) is seeded into a SeaweedFS S3 replica with `ltxctl import` (snapshot at levels 0 and
9); then update transactions run in WAL mode, and each one's WAL frames become a level-0 file
(as a Litestream writer ships them); `ltxctl compact --level 1` merges most of them. Both tools
then restore the latest state, alternately, each as its own process: wall time and peak RSS
(from wait4) per run, best time of each compared, outputs compared byte for byte.

Target: ltxctl at most litestream's time, under 150 MB resident.

    .venv/bin/python bench/bench_restore.py [--mb 500] [--rounds 2] [--parallelism 8]
    .venv/bin/python -m pytest bench/bench_restore.py --benchmark-only
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import apsw  # noqa: E402

from ltx.encoder import Encoder  # noqa: E402
from ltx.header import Header  # noqa: E402
from ltx.plan import restore_plan  # noqa: E402
from ltx.replica import Replica  # noqa: E402
from ltx.restore import DEFAULT_RESTORE_PARALLELISM  # noqa: E402

DEFAULT_DB_MB = 500
PAGE_SIZE = 4096
#: Two rows fill a 4 KiB page.
ROW_BYTES = 1900
#: Level-0 files after the import, each an update of this many rows.
INCREMENTS = 60
ROWS_PER_INCREMENT = 200
#: Increments left uncompacted at level 0 (the rest go to level 1).
TAIL_INCREMENTS = 10
ROUNDS = 2
SEED = 20260303
MB = 1_000_000
TARGET_RSS_MB = 150
LITESTREAM = Path(sys.executable).parent / "litestream"
WAL_HEADER = 32
WAL_FRAME_HEADER = 24


def _blob(rng: random.Random) -> bytes:
    noise = rng.randbytes(ROW_BYTES // 2)
    return noise + bytes([rng.randrange(256)]) * (ROW_BYTES - len(noise))


def make_database(path: Path, db_mb: int, rng: random.Random) -> int:
    """A WAL database of about `db_mb` MB; return its row count."""
    conn = apsw.Connection(str(path))
    conn.execute(f"PRAGMA page_size = {PAGE_SIZE}; PRAGMA journal_mode = wal; PRAGMA wal_autocheckpoint = 0")
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB NOT NULL)")
    rows = db_mb * MB // (PAGE_SIZE // 2)
    batch = 2000
    for start in range(0, rows, batch):
        with conn:
            conn.executemany("INSERT INTO t(id, v) VALUES (?, ?)",
                             ((i + 1, _blob(rng)) for i in range(start, min(rows, start + batch))))
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return rows


def _wal_frames(wal: Path, start: int, page_size: int) -> tuple[dict[int, bytes], int]:
    """Pages of the frames from byte `start` of the WAL (one transaction) and its commit size."""
    pages: dict[int, bytes] = {}
    commit = 0
    with wal.open("rb") as f:
        f.seek(start)
        while True:
            head = f.read(WAL_FRAME_HEADER)
            if len(head) < WAL_FRAME_HEADER:
                break
            pgno, size = struct.unpack_from(">II", head)
            pages[pgno] = f.read(page_size)
            if size:
                commit = size
    return pages, commit


def ship_updates(db: Path, replica: Replica, rows: int, rng: random.Random, first: int, count: int) -> int:
    """Run `count` update transactions as TXIDs `first`..; ship each one's WAL frames as a
    level-0 file (as a Litestream writer would); return the last TXID."""
    conn = apsw.Connection(str(db))
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    wal = Path(f"{db}-wal")
    ts = int(time.time() * 1000) - 3_600_000
    for txid in range(first, first + count):
        before = max(wal.stat().st_size if wal.exists() else 0, WAL_HEADER)
        with conn:
            for _ in range(ROWS_PER_INCREMENT):
                conn.execute("UPDATE t SET v = ? WHERE id = ?", (_blob(rng), rng.randrange(1, rows + 1)))
        pages, commit = _wal_frames(wal, before, PAGE_SIZE)
        header = Header(page_size=PAGE_SIZE, commit=commit, min_txid=txid, max_txid=txid, timestamp=ts + txid)
        buf = io.BytesIO()
        enc = Encoder(buf, header)
        for pgno in sorted(pages):
            enc.write_page(pgno, pages[pgno])
        enc.close()
        replica.put_file(0, txid, txid, buf.getvalue(), timestamp_ms=ts + txid)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return first + count - 1


def _ltxctl(cmd: list[str], env: dict[str, str]) -> None:
    """Run one ltxctl step of the build; a failure names the step and quotes its error line."""
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[2:4])} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")


def _timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run `cmd`; return (wall seconds, peak RSS in MB) of that process alone."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {err}")
    return elapsed, usage.ru_maxrss / 1024 * 1.048576  # KiB -> MB


#: Header fields SQLite's backup API rewrites in the imported image (file change counter and
#: version-valid-for): masked when comparing with the source, not between the two restores.
BACKUP_HEADER_FIELDS = ((24, 28), (92, 96))


def _digest(path: Path, mask_header: bool = False) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        first = True
        while chunk := f.read(1 << 20):
            if first and mask_header:
                buf = bytearray(chunk)
                for lo, hi in BACKUP_HEADER_FIELDS:
                    buf[lo:hi] = bytes(hi - lo)
                chunk = bytes(buf)
            first = False
            h.update(chunk)
    return h.hexdigest()


def figures(url: str, env: dict[str, str], db_mb: int, workdir: Path, rounds: int = ROUNDS,
            parallelism: int = DEFAULT_RESTORE_PARALLELISM) -> dict[str, Any]:
    rng = random.Random(SEED)
    src = workdir / "source.db"
    t0 = time.perf_counter()
    rows = make_database(src, db_mb, rng)
    ltxctl = [sys.executable, "-m", "ltx.cli"]
    _ltxctl([*ltxctl, "import", str(src), url], env)
    replica = Replica.open(url)
    # A replica as a running writer and compactor leave it: a snapshot (L9, from `compact
    # --all`), an L1 file of later increments, a tail of L0 files. Both tools read the same plan.
    half = (INCREMENTS - TAIL_INCREMENTS) // 2
    done = ship_updates(src, replica, rows, rng, 2, half)
    _ltxctl([*ltxctl, "compact", url, "--all", "--no-retention"], env)
    done = ship_updates(src, replica, rows, rng, done + 1, INCREMENTS - TAIL_INCREMENTS - half)
    _ltxctl([*ltxctl, "compact", url, "--level", "1", "--no-retention"], env)
    last_txid = ship_updates(src, replica, rows, rng, done + 1, TAIL_INCREMENTS)
    build_s = time.perf_counter() - t0
    plan = restore_plan(replica.list_levels(), url=url)
    object_bytes = sum(f.size for f in plan)
    replica.close()

    conn = apsw.Connection(str(src))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    source_digest = _digest(src, mask_header=True)
    ours_out, theirs_out = workdir / "ltxctl.db", workdir / "litestream.db"
    ours: list[tuple[float, float]] = []
    theirs: list[tuple[float, float]] = []
    digests = set()
    for _ in range(rounds):
        for out in (ours_out, theirs_out):
            out.unlink(missing_ok=True)
        theirs.append(_timed([str(LITESTREAM), "restore", "-o", str(theirs_out), url], env))
        ours.append(_timed([*ltxctl, "restore", url, "-o", str(ours_out), "--parallelism", str(parallelism),
                            "--no-progress"], env))
        digests.add((_digest(ours_out), _digest(theirs_out), _digest(ours_out, mask_header=True)))
    same = all(a == b for a, b, _ in digests)
    best_ours, best_theirs = min(t for t, _ in ours), min(t for t, _ in theirs)
    return {
        "db_MB": round(src.stat().st_size / MB, 1),
        "replica_MB_read": round(object_bytes / MB, 1),
        "plan": [f"L{f.level} {f.min_txid:x}-{f.max_txid:x}" for f in plan],
        "txid": f"{last_txid:016x}",
        "build_s": round(build_s, 1),
        "ltxctl_s": [round(t, 2) for t, _ in ours],
        "litestream_s": [round(t, 2) for t, _ in theirs],
        "ltxctl_rss_MB": round(max(r for _, r in ours), 1),
        "litestream_rss_MB": round(max(r for _, r in theirs), 1),
        "ratio_ltxctl_over_litestream": round(best_ours / best_theirs, 3),
        "identical_outputs": same,
        "matches_source": all(m == source_digest for _, _, m in digests),
        "parallelism": parallelism,
    }


@contextmanager
def _s3() -> Iterator[tuple[str, dict[str, str]]]:
    from tests.s3server import S3Server  # type: ignore[import-not-found]

    # 2000 volumes of 32 MB: a 5 GB database's snapshot, its compacted copy and the increments.
    with tempfile.TemporaryDirectory() as tmp, S3Server(Path(tmp), volume_max=2000) as server:
        yield server.url("bench-restore"), server.env()


if "pytest" in sys.modules:
    def test_restore_vs_litestream(benchmark: Any, s3_url: str, s3_env: dict[str, str], tmp_path: Path) -> None:
        measured = benchmark.pedantic(figures, args=(s3_url, s3_env, DEFAULT_DB_MB, tmp_path), rounds=1,
                                      iterations=1)
        benchmark.extra_info.update(measured)
        print(json.dumps(measured))
        assert measured["identical_outputs"] and measured["matches_source"], measured
        assert measured["ltxctl_rss_MB"] < TARGET_RSS_MB, measured


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--mb", type=int, default=DEFAULT_DB_MB, help="database size in MB")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--parallelism", type=int, default=DEFAULT_RESTORE_PARALLELISM)
    parser.add_argument("--workdir", help="where the database and restores go (default: a temp dir)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.workdir) as work, _s3() as (url, env):
        result = figures(url, env, args.mb, Path(work), args.rounds, args.parallelism)
    print(json.dumps(result, indent=2))
    print(f"ltxctl restore {min(result['ltxctl_s'])}s / litestream restore {min(result['litestream_s'])}s "
          f"= {result['ratio_ltxctl_over_litestream']:.2f}; peak RSS ltxctl {result['ltxctl_rss_MB']} MB "
          f"(target < {TARGET_RSS_MB}), litestream {result['litestream_rss_MB']} MB")
    return 0 if result["identical_outputs"] and result["matches_source"] else 1


if __name__ == "__main__":
    sys.exit(main())
