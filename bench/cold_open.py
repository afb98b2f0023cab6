"""Cold open plus one point query, ltxvfs beside the real litestream-vfs extension, on one S3 server.

For each database size (default ~50 MB and ~500 MB: a rowid table of text rows with a secondary
index), the database is imported as a snapshot (`ltxctl import`'s code: TXID 1 at levels 0 and
9) into a real SeaweedFS server. Then, for each VFS, a new Python process opens the database
through a request-counting proxy (tests/s3proxy.py; optional per-request delay imitating a
region's round trip) and runs one point query. Reported per run: wall time from process start to
the first row and of open + query inside the process, requests by kind, response bytes, and the
round trips waited in sequence (from the proxy's log).

    .venv/bin/python bench/cold_open.py [--sizes 50,500] [--delay 0.02] [--runs 3] [--workdir DIR]

Databases are cached in the work directory between runs (generating 500 MB takes a minute).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.s3proxy import S3Proxy as CountingProxy  # noqa: E402
from tests.s3proxy import sequential_rounds  # noqa: E402

#: Bytes of text per row (plus an indexed key); 50 MB is about 100,000 rows.
ROW_TEXT = 420
ROWS_PER_MB = 2_000
SEED = 20260102
PAGE_SIZE = 4096
DEFAULT_SIZES_MB = (50, 500)
DEFAULT_RUNS = 3
VFS_NAMES = ("ltxvfs", "litestream-vfs")


def row(i: int, rng: random.Random) -> tuple[int, str, str]:
    return i, f"key-{rng.randrange(10**12):012d}", rng.randbytes(ROW_TEXT // 2).hex()


def make_database(path: Path, size_mb: int) -> int:
    """Create (once) a database of about `size_mb` MB; return its row count."""
    rows = size_mb * ROWS_PER_MB
    if path.exists():
        return rows
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    import apsw

    conn = apsw.Connection(str(tmp))
    conn.execute(f"PRAGMA page_size = {PAGE_SIZE}").fetchall()
    conn.execute("PRAGMA journal_mode = off").fetchall()
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT NOT NULL, v TEXT NOT NULL)")
    rng = random.Random(SEED)
    batch = 20_000
    for start in range(0, rows, batch):
        with conn:
            chunk = (row(i, rng) for i in range(start, min(rows, start + batch)))
            conn.executemany("INSERT INTO t VALUES (?, ?, ?)", chunk)
    conn.execute("CREATE INDEX t_k ON t(k)")
    conn.close()
    tmp.rename(path)
    return rows


# -- the child processes ----------------------------------------------------------------------

def child(which: str, url: str, key: int) -> None:
    """Open and query in this (new) process; print one JSON line when the first row is in."""
    import apsw

    started = time.perf_counter()
    flags = apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI
    if which == "ltxvfs":
        from urllib.parse import quote

        import vfs  # noqa: F401 - registers ltxvfs

        conn = apsw.Connection(f"file:bench.db?replica={quote(url, safe='')}&poll=0", vfs="ltxvfs", flags=flags)
    else:
        import litestream_vfs

        loader = apsw.Connection(":memory:")
        loader.enable_load_extension(True)
        loader.load_extension(litestream_vfs.loadable_path(), "sqlite3_litestreamvfs_init")
        conn = apsw.Connection("file:bench.db", vfs="litestream", flags=flags)
    opened = time.perf_counter()
    first = conn.execute("SELECT id, k, length(v) FROM t WHERE id = ?", (key,)).fetchone()
    done = time.perf_counter()
    print(json.dumps({"open_s": opened - started, "query_s": done - opened, "row": list(first or [])}), flush=True)
    sys.stdin.readline()  # the parent reads the proxy's counters before this process exits


def run_child(which: str, url: str, key: int, env: dict[str, str], proxy: CountingProxy) -> dict[str, Any]:
    proxy.reset()
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--child", which, url, str(key)], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdin is not None
    line = proc.stdout.readline()
    wall = time.perf_counter() - started
    counts = proxy.counts()
    log = list(proxy.log)
    proc.stdin.write("\n")
    proc.stdin.flush()
    _, err = proc.communicate(timeout=60)
    if not line:
        raise RuntimeError(f"{which} child failed:\n{err}")
    result: dict[str, Any] = json.loads(line)
    result.update(wall_s=wall, counts=counts, rounds=sequential_rounds(log))
    return result


# -- the parent -------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", nargs=3, metavar=("VFS", "URL", "KEY"), help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES_MB)), help="database sizes in MB")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds the proxy adds to every request")
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="new processes per VFS and size")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "ltxvfs-bench",
                        help="where databases are cached")
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return

    from ltx.importer import import_database
    from ltx.replica import Replica
    from tests.s3server import S3Server

    args.workdir.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ltxvfs-bench-s3-") as s3dir, S3Server(Path(s3dir)) as server, \
            CountingProxy(server.endpoint, delay=args.delay) as proxy:
        env = server.env()  # AWS credentials of the server, AWS_CA_BUNDLE removed (litestream needs that)
        for size in sizes:
            db = args.workdir / f"cold-{size}mb.db"
            rows = make_database(db, size)
            url = server.url(f"cold-{size}mb")
            replica = Replica.open(url)
            imported = import_database(db, replica)
            replica.close()
            proxied = url.replace(server.endpoint, proxy.url)
            key = rows * 7 // 10
            child_env = dict(env, LITESTREAM_REPLICA_URL=proxied, LITESTREAM_LOG_LEVEL="ERROR")
            runs: dict[str, list[dict[str, Any]]] = {which: [] for which in VFS_NAMES}
            for _ in range(args.runs):  # interleaved, so both see the same machine load
                for which in VFS_NAMES:
                    runs[which].append(run_child(which, proxied, key, child_env, proxy))
            for which in VFS_NAMES:
                rows_seen = {tuple(r["row"]) for r in runs[which]}
                results.append({"vfs": which, "size_mb": size, "db_bytes": os.path.getsize(db),
                                "snapshot_bytes": imported.file_size, "runs": runs[which],
                                "rows": sorted(rows_seen)})
    print_table(results, args.delay)


def print_table(results: list[dict[str, Any]], delay: float) -> None:
    print(f"\nCold open + one point query (new process; proxy delay {delay * 1000:.0f} ms per request)\n")
    print("| DB | VFS | wall to first row (median) | open + query in process | requests | GET | LIST | "
          "bytes | rounds waited |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        runs = r["runs"]
        wall = statistics.median(x["wall_s"] for x in runs)
        inner = statistics.median(x["open_s"] + x["query_s"] for x in runs)
        c = runs[-1]["counts"]
        print(f"| {r['db_bytes'] / 1e6:.0f} MB | {r['vfs']} | {wall * 1000:.0f} ms | {inner * 1000:.0f} ms | "
              f"{c.get('requests', 0)} | {c.get('GET', 0)} | {c.get('LIST', 0)} | {c.get('bytes_out', 0):,} | "
              f"{runs[-1]['rounds']} |")
    print()
    for r in results:
        print(f"{r['vfs']} {r['size_mb']} MB rows returned: {r['rows']}")


if __name__ == "__main__":
    main()
