"""The child process of a cold-boot run: open one database with one peer and run one scenario.

    python -m bench.harness.peers '<json config>'

Prints one JSON line when the scenario's rows are in (`connect`, just before the database is
opened (`apsw.Connection`, or `litestream restore` for the restore peer), `opened` and `done` are
time.monotonic() values, comparable with the parent's on Linux), then, for the warm scenario, answers each "q"
line on stdin with one timed batch of repeats (WARM_BATCH_S); "x" (or the end of stdin) exits. The parent reads the
proxy's counters before it lets the child go, so nothing after the scenario is counted.

Peers:
- ltxvfs: `import vfs`, URI parameter `replica=` (default options otherwise).
- litestream-vfs: the real extension loaded through apsw; it reads LITESTREAM_REPLICA_URL at load.
- sqlite-s3vfs: its APSW VFS over a boto3 Bucket, on its own block layout.
- restore: `litestream restore` into a local file, then plain SQLite.
"""

from __future__ import annotations

import time

STARTED = time.monotonic()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

LTXVFS = "ltxvfs"
LITESTREAM_VFS = "litestream-vfs"
S3VFS = "sqlite-s3vfs"
RESTORE = "restore"
PEERS = (LTXVFS, LITESTREAM_VFS, S3VFS, RESTORE)
READ_ONLY = 0x00000001 | 0x00000040  # SQLITE_OPEN_READONLY | SQLITE_OPEN_URI
#: A timed warm repeat runs the query back to back for at least this long (and at most this many
#: times) and reports the mean: one repeat takes 10-1,000 µs, too short to time alone.
WARM_BATCH_S = 0.02
WARM_BATCH_MAX = 10_000
#: When the peer began opening the database (set by each opener, after its imports and setup).
CONNECT = [0.0]


def _connecting() -> None:
    CONNECT[0] = time.monotonic()


def open_ltxvfs(config: dict[str, Any]) -> Any:
    from urllib.parse import quote

    import apsw

    import vfs  # noqa: F401 - registers ltxvfs

    _connecting()
    return apsw.Connection(f"file:bench.db?replica={quote(config['url'], safe='')}", vfs="ltxvfs", flags=READ_ONLY)


def open_litestream_vfs(config: dict[str, Any]) -> Any:
    import apsw
    import litestream_vfs

    loader = apsw.Connection(":memory:")
    loader.enable_load_extension(True)
    loader.load_extension(litestream_vfs.loadable_path(), "sqlite3_litestreamvfs_init")
    _connecting()
    return apsw.Connection("file:bench.db", vfs="litestream", flags=READ_ONLY)


def open_s3vfs(config: dict[str, Any]) -> Any:
    import apsw
    import boto3
    import botocore.config
    import sqlite_s3vfs

    s3 = config["s3vfs"]
    bucket = boto3.resource("s3", endpoint_url=s3["endpoint"], region_name=s3["region"],
                            config=botocore.config.Config(s3={"addressing_style": "path"})).Bucket(s3["bucket"])
    fs = sqlite_s3vfs.S3VFS(bucket=bucket, block_size=s3["block_size"])
    open_s3vfs.keep = fs  # type: ignore[attr-defined]  # the VFS must outlive the connection
    _connecting()
    return apsw.Connection(s3["prefix"], vfs=fs.name, flags=apsw.SQLITE_OPEN_READONLY)


def open_restored(config: dict[str, Any]) -> Any:
    import subprocess

    import apsw

    out = os.path.join(config["workdir"], f"restored-{os.getpid()}.db")
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    _connecting()
    done = subprocess.run([config["litestream"], "restore", "-o", out, config["url"]], env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"litestream restore failed: {done.stderr.strip()}")
    return apsw.Connection(out, flags=apsw.SQLITE_OPEN_READONLY)


OPENERS = {LTXVFS: open_ltxvfs, LITESTREAM_VFS: open_litestream_vfs, S3VFS: open_s3vfs, RESTORE: open_restored}


def main(raw: str) -> None:
    from bench.harness.scenarios import WARM, run, workload

    config = json.loads(raw)
    work = workload(config["scenario"], config["t_rows"])
    conn = OPENERS[config["peer"]](config)
    opened = time.monotonic()
    rows = run(conn, work)
    done = time.monotonic()
    print(json.dumps({"started": STARTED, "connect": CONNECT[0], "opened": opened, "done": done, "rows": rows}),
          flush=True)
    for line in sys.stdin:
        if line.strip() != "q" or config["scenario"] != WARM:
            break
        # One timed repeat is a batch: repeats back to back until WARM_BATCH_S has passed (or
        # WARM_BATCH_MAX were run), so that a repeat of a few microseconds is timed to well below
        # a microsecond; a slow repeat (a peer without a cache) is a batch of one.
        start = time.monotonic()
        repeats = 0
        same = True
        while True:
            again = run(conn, work)
            repeats += 1
            same = same and again == rows
            end = time.monotonic()
            if end - start >= WARM_BATCH_S or repeats >= WARM_BATCH_MAX:
                break
        print(json.dumps({"start": start, "end": end, "same": same, "repeats": repeats}), flush=True)
    if config["peer"] == RESTORE:
        conn.close()
        os.unlink(os.path.join(config["workdir"], f"restored-{os.getpid()}.db"))


if __name__ == "__main__":
    main(sys.argv[1])
