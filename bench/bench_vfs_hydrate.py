"""Hydration through the VFS: ltxvfs `hydrate=PATH` beside litestream-vfs hydration of the same
replica, on one S3 server, in the same run.

litestream-vfs 0.5.17 hydrates when LITESTREAM_HYDRATION_ENABLED=true at load time, into
LITESTREAM_HYDRATION_PATH (its cmd/litestream-vfs/main.go); both VFSs answer
`PRAGMA litestream_hydration_progress` (percent with one decimal). A database of text rows with
an index (bench/harness/databases.py's, cached in the work directory) is imported as a snapshot. Then, for
each VFS in turn (interleaved over the runs), a new process opens it through a request-counting
proxy (optional per-request delay imitating a region's round trip) with hydration into a fresh
path, and polls the progress pragma until it says 100.0 and the file has the database's size.
Reported: seconds from the open to complete, MB of database per second, requests and bytes the
proxy saw; then a full scan on the hydrated connection, timed, with the requests it made (0 when
reads come from the local file) and its result (equal for both).

    .venv/bin/python bench/bench_vfs_hydrate.py [--mb 100] [--delay 0.02] [--runs 3] [--workdir DIR]
    .venv/bin/python -m pytest bench/bench_vfs_hydrate.py --benchmark-only
"""

from __future__ import annotations

import argparse
import json
import os
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

from bench.harness.databases import build as build_database  # noqa: E402
from tests.s3proxy import S3Proxy  # noqa: E402

#: Database size (MB) the figures are quoted for.
DEFAULT_DB_MB = 100
DEFAULT_RUNS = 3
VFS_NAMES = ("ltxvfs", "litestream-vfs")
#: Seconds between looks at the progress pragma in the child.
PROGRESS_POLL = 0.005
#: A child that has not completed hydration after this many seconds is a failure.
CHILD_TIMEOUT = 600.0
SCAN = "SELECT count(*), sum(length(v)), max(k) FROM t"
MB = 1_000_000


# -- the child process ------------------------------------------------------------------------

def child(which: str, url: str, path: str, db_bytes: int) -> None:
    """Open with hydration into `path`, wait for 100 %, report; then scan on the parent's word."""
    import apsw

    flags = apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI
    started = time.perf_counter()
    if which == "ltxvfs":
        from urllib.parse import quote

        import vfs  # noqa: F401 - registers ltxvfs

        conn = apsw.Connection(f"file:bench.db?replica={quote(url, safe='')}&hydrate={quote(path, safe='')}"
                               "&poll=0", vfs="ltxvfs", flags=flags)
    else:
        import litestream_vfs

        loader = apsw.Connection(":memory:")
        loader.enable_load_extension(True)
        loader.load_extension(litestream_vfs.loadable_path(), "sqlite3_litestreamvfs_init")
        conn = apsw.Connection("file:bench.db", vfs="litestream", flags=flags)
    opened = time.perf_counter()
    samples: list[str] = []
    while True:
        progress = str(conn.execute("PRAGMA litestream_hydration_progress").fetchall()[0][0])
        if not samples or samples[-1] != progress:
            samples.append(progress)
        if progress == "100.0" and os.path.exists(path) and os.path.getsize(path) >= db_bytes:
            break
        if time.perf_counter() - started > CHILD_TIMEOUT:
            raise SystemExit(f"{which}: hydration not complete after {CHILD_TIMEOUT:g}s (at {progress}%)")
        time.sleep(PROGRESS_POLL)
    complete = time.perf_counter()
    print(json.dumps({"open_s": opened - started, "complete_s": complete - started,
                      "progress_values": len(samples)}), flush=True)
    sys.stdin.readline()  # the parent reads the proxy's counters, then asks for the scan
    t0 = time.perf_counter()
    row = conn.execute(SCAN).fetchone()
    print(json.dumps({"scan_s": time.perf_counter() - t0, "scan": list(row or [])}), flush=True)
    sys.stdin.readline()
    conn.close()


def run_child(which: str, url: str, path: Path, db_bytes: int, env: dict[str, str],
              proxy: S3Proxy) -> dict[str, Any]:
    proxy.reset()
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--child", which, url, str(path), str(db_bytes)], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdin is not None
    try:
        line = proc.stdout.readline()
        wall = time.perf_counter() - started
        hydration = proxy.counts()
        proc.stdin.write("\n")
        proc.stdin.flush()
        proxy.reset()
        scan_line = proc.stdout.readline()
        scan = proxy.counts()
        proc.stdin.write("\n")
        proc.stdin.flush()
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    if not line or not scan_line:
        raise RuntimeError(f"{which} child failed:\n{err}")
    result: dict[str, Any] = json.loads(line)
    result.update(json.loads(scan_line))
    result.update(wall_s=wall, gets=hydration.get("GET", 0), lists=hydration.get("LIST", 0),
                  bytes=hydration.get("bytes_out", 0), scan_requests=scan.get("requests", 0))
    return result


# -- the parent -------------------------------------------------------------------------------

def figures(url: str, endpoint: str, env: dict[str, str], db_mb: int, workdir: Path, runs: int = DEFAULT_RUNS,
            delay: float = 0.0) -> dict[str, Any]:
    """Import the database at `url` (an empty S3 location of the server at `endpoint`), then
    hydrate it through each VFS `runs` times, interleaved."""
    from ltx.importer import import_database
    from ltx.replica import Replica

    db = workdir / f"hydrate-{db_mb}mb.db"
    if not db.exists():
        build_database(db, db_mb)
    db_bytes = db.stat().st_size
    replica = Replica.open(url)
    try:
        imported = import_database(db, replica)
    finally:
        replica.close()
    measured: dict[str, list[dict[str, Any]]] = {which: [] for which in VFS_NAMES}
    with S3Proxy(endpoint, delay=delay) as proxy:
        proxied = url.replace(endpoint, proxy.url)
        child_env = dict(env, LITESTREAM_REPLICA_URL=proxied, LITESTREAM_LOG_LEVEL="ERROR",
                         LITESTREAM_HYDRATION_ENABLED="true")
        for n in range(runs):
            for which in VFS_NAMES:
                path = workdir / f"hydrated-{which}-{n}.db"
                run_env = dict(child_env, LITESTREAM_HYDRATION_PATH=str(path))
                measured[which].append(run_child(which, proxied, path, db_bytes, run_env, proxy))
                for leftover in workdir.glob(f"hydrated-{which}-{n}.db*"):
                    leftover.unlink()
    out: dict[str, Any] = {"db_MB": round(db_bytes / MB, 1), "snapshot_MB": round(imported.file_size / MB, 1),
                           "delay_ms": round(delay * 1000), "runs": runs}
    for which in VFS_NAMES:
        rs = measured[which]
        best = min(r["complete_s"] for r in rs)
        out[which] = {
            "complete_s": [round(r["complete_s"], 3) for r in rs],
            "complete_s_median": round(statistics.median(r["complete_s"] for r in rs), 3),
            "db_MB_s_best": round(db_bytes / MB / best, 1),
            "gets": rs[-1]["gets"], "lists": rs[-1]["lists"], "bytes_MB": round(rs[-1]["bytes"] / MB, 1),
            "scan_s_median": round(statistics.median(r["scan_s"] for r in rs), 3),
            "scan_requests": [r["scan_requests"] for r in rs],
            "scan": rs[-1]["scan"],
        }
    ours, theirs = out["ltxvfs"], out["litestream-vfs"]
    out["same_scan_result"] = all(r["scan"] == ours["scan"] for which in VFS_NAMES for r in measured[which])
    out["ratio_litestream_time_over_ltxvfs"] = round(theirs["complete_s_median"] / ours["complete_s_median"], 2)
    return out


def print_table(result: dict[str, Any]) -> None:
    print(f"\nHydration of a {result['db_MB']} MB database (snapshot {result['snapshot_MB']} MB), proxy delay "
          f"{result['delay_ms']} ms per request, {result['runs']} runs each, new process per run\n")
    print("| VFS | open to 100 % (median) | best MB/s of database | GET | LIST | MB fetched | "
          "full scan after (median) | scan requests |")
    print("|---|---|---|---|---|---|---|---|")
    for which in VFS_NAMES:
        r = result[which]
        print(f"| {which} | {r['complete_s_median']} s | {r['db_MB_s_best']} | {r['gets']} | {r['lists']} | "
              f"{r['bytes_MB']} | {r['scan_s_median']} s | {r['scan_requests']} |")
    print(f"\nlitestream-vfs time / ltxvfs time: {result['ratio_litestream_time_over_ltxvfs']}; "
          f"same scan result: {result['same_scan_result']}")


if "pytest" in sys.modules:
    def test_vfs_hydration_vs_litestream_vfs(benchmark: Any, s3_server: Any, s3_url: str, tmp_path: Path) -> None:
        measured = benchmark.pedantic(figures, args=(s3_url, s3_server.endpoint, s3_server.env(), DEFAULT_DB_MB,
                                                     tmp_path, 1), rounds=1, iterations=1)
        benchmark.extra_info.update(measured)
        print(json.dumps(measured))
        assert measured["same_scan_result"], measured
        assert measured["ltxvfs"]["scan_requests"] == [0], "a scan after hydration made requests"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--child", nargs=4, metavar=("VFS", "URL", "PATH", "BYTES"), help=argparse.SUPPRESS)
    parser.add_argument("--mb", type=int, default=DEFAULT_DB_MB, help="database size in MB")
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds the proxy adds to every request")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "ltxvfs-bench",
                        help="where the database is cached and copies are hydrated")
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], args.child[1], args.child[2], int(args.child[3]))
        return 0
    from tests.s3server import S3Server

    args.workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ltxvfs-bench-s3-") as s3dir, S3Server(Path(s3dir)) as server:
        result = figures(server.url(f"vfs-hydrate-{args.mb}mb"), server.endpoint, server.env(), args.mb,
                         args.workdir, args.runs, args.delay)
    print(json.dumps(result, indent=2))
    print_table(result)
    return 0 if result["same_scan_result"] else 1


if __name__ == "__main__":
    sys.exit(main())
