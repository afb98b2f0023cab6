"""`make demo`: the main job end to end on the embedded default (a file:// replica in a temp dir).

1. Build a small SQLite database and seed a replica from it with `ltxctl import`.
2. A new process cold-boots from the replica through the `ltxvfs` VFS and queries it, printing
   the rows, the requests it made and the time it took.
3. `ltxctl verify` and `ltxctl restore` check the replica and bring the database back as a file.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import apsw

ROWS = 20_000
SHOWN_STATS = ("gets", "lists", "bytes", "round_trips", "cache_hits", "cache_misses")
SEED = 7

COLD_READER = r"""
import json, sys, time
t0 = time.perf_counter()
import apsw, vfs
con = apsw.Connection(sys.argv[1], vfs="ltxvfs", flags=apsw.SQLITE_OPEN_READONLY)
row = con.execute("SELECT id, name, balance FROM accounts WHERE id = ?", (int(sys.argv[2]),)).fetchone()
count = con.execute("SELECT count(*), sum(balance) FROM accounts").fetchone()
txid = con.execute("PRAGMA litestream_txid").fetchone()[0]
stats = json.loads(con.execute("PRAGMA ltxvfs_stats").fetchone()[0])
print(json.dumps({"row": row, "count": count, "txid": txid, "stats": stats,
                  "seconds": time.perf_counter() - t0}))
"""


def say(text: str) -> None:
    print(text, flush=True)


def ltxctl(*args: str) -> str:
    """Run the real `ltxctl` console script and echo what it printed."""
    exe = Path(sys.executable).with_name("ltxctl")
    say(f"$ ltxctl {' '.join(args)}")
    out = subprocess.run([str(exe), *args], check=True, capture_output=True, text=True).stdout
    for line in out.strip().splitlines()[:12]:
        say(f"    {line}")
    return out


def build_source(path: Path) -> None:
    rnd = random.Random(SEED)
    con = apsw.Connection(str(path))
    con.execute("CREATE TABLE accounts(id INTEGER PRIMARY KEY, name TEXT, balance INTEGER)")
    con.execute("CREATE INDEX accounts_name ON accounts(name)")
    with con:
        con.executemany("INSERT INTO accounts VALUES (?, ?, ?)",
                        ((i, f"user-{rnd.getrandbits(40):010x}", rnd.randrange(10_000)) for i in range(1, ROWS + 1)))
    con.close()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="ltxvfs-demo-") as tmp:
        root = Path(tmp)
        source = root / "source.db"
        build_source(source)
        say(f"built {source} ({source.stat().st_size // 1024} KiB, {ROWS} rows)")

        # The embedded default: a database name `app.db` keeps its replica in `app.db-ltx/`.
        name = root / "app.db"
        replica = f"file://{name}-ltx"
        ltxctl("import", str(source), replica)
        ltxctl("info", replica)

        say(f"\ncold boot: a new process opens {name.name} through ltxvfs (replica {replica})")
        wanted = ROWS // 2
        done = subprocess.run([sys.executable, "-c", COLD_READER, str(name), str(wanted)],
                              check=True, capture_output=True, text=True)
        result = json.loads(done.stdout)
        stats = result["stats"]
        say(f"    row {wanted}: {result['row']}")
        say(f"    count, sum: {result['count']} at TXID {result['txid']}")
        say(f"    process start to answers: {result['seconds'] * 1000:.1f} ms; requests: "
            + ", ".join(f"{k}={stats.get(k, 0)}" for k in SHOWN_STATS))

        ltxctl("verify", replica)
        restored = root / "restored.db"
        t0 = time.perf_counter()
        ltxctl("restore", replica, "-o", str(restored))
        con = apsw.Connection(str(restored))
        check = con.execute("PRAGMA integrity_check").fetchone()[0]
        total = con.execute("SELECT count(*), sum(balance) FROM accounts").fetchone()
        say(f"restored in {time.perf_counter() - t0:.2f} s: integrity_check={check}, count, sum={total}")
        if list(total) != list(result["count"]) or check != "ok":
            raise SystemExit("demo: the restored database differs from what the VFS read")
        say("\ndemo: ok")


if __name__ == "__main__":
    main()
