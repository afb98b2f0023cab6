"""`make demo`: the main job end to end on the embedded default (file:// stores in a temp dir).

1. `blockmap format` a volume: its metadata is the SQLite database `blockmap.db` in an ltxvfs
   replica (`blockmap.db-ltx/`, the embedded default's layout), its bytes are block objects in
   `data/`. Write a few small files and one of several MiB: each operation is one commit, one LTX
   file.
2. A new process cold-boots the volume from the stores (`Volume.open` on the replica URL), reads
   every file back and checks the bytes, printing the requests and the time it took.
3. `ltxctl verify` checks the replica; `ltxctl restore` brings `blockmap.db` back as a plain
   SQLite file, and the real `juicefs fsck` accepts it.
4. `blockmap mount` (where the machine has FUSE): the volume as a file system, used with ordinary
   shell commands; the mount is killed with SIGKILL and the volume mounted again elsewhere, with
   another cache dir, from the store alone: every fsync'd file is there, byte for byte.
5. Any SQLite database works the same way: `ltxctl import` seeds a replica, and a new process
   queries it through ltxvfs.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import apsw

from blockmap import Volume

SEED = 7
SMALL_FILES = 5
BIG_FILE_MB = 6
ROWS = 5_000
META_STATS = ("gets", "lists", "bytes", "round_trips", "cache_hits", "cache_misses")
DATA_STATS = ("gets", "bytes_read")
CHILD_TIMEOUT = 60

COLD_VOLUME = r"""
import hashlib, json, sys, time
t0 = time.perf_counter()
from blockmap import Volume
expected = json.loads(sys.argv[2])
with Volume.open(sys.argv[1], read_only=True) as vol:
    opened = time.perf_counter() - t0
    digests = {p: hashlib.sha256(vol.read_file(p)).hexdigest() for p in expected}
    tree = sorted(e.name for e in vol.readdir("/docs"))
    out = {"digests": digests, "tree": tree, "txid": vol.txid, "meta": vol.meta_stats(),
           "data": vol.store.stats.snapshot(), "opened": opened, "seconds": time.perf_counter() - t0}
print(json.dumps(out))
"""

COLD_QUERY = r"""
import json, sys, time
t0 = time.perf_counter()
import apsw, vfs
con = apsw.Connection(sys.argv[1], vfs="ltxvfs", flags=apsw.SQLITE_OPEN_READONLY)
count = con.execute("SELECT count(*), sum(balance) FROM accounts").fetchone()
stats = json.loads(con.execute("PRAGMA ltxvfs_stats").fetchone()[0])
print(json.dumps({"count": count, "stats": stats, "seconds": time.perf_counter() - t0}))
"""


def say(text: str = "") -> None:
    print(text, flush=True)


def run_tool(tool: str, *args: str, show: int = 6) -> str:
    """Run a console script of this venv (ltxctl, blockmap, juicefs) and echo what it printed."""
    exe = Path(sys.executable).with_name(tool)
    say(f"$ {tool} {' '.join(args)}")
    done = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=CHILD_TIMEOUT)
    if done.returncode != 0:
        raise SystemExit(f"demo: {tool} failed:\n{done.stdout}{done.stderr}")
    for line in done.stdout.strip().splitlines()[:show]:
        say(f"    {line}")
    return done.stdout


def stats_line(stats: dict[str, int], keys: tuple[str, ...]) -> str:
    return ", ".join(f"{k}={stats.get(k, 0)}" for k in keys)


def cold_boot(child: str, *args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", child, *args], capture_output=True, text=True,
                          timeout=CHILD_TIMEOUT)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"demo: the cold-boot process failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def write_volume(meta: str) -> dict[str, str]:
    """Write the demo's files; returns path -> sha256 of what was written."""
    rnd = random.Random(SEED)
    files: dict[str, bytes] = {f"/docs/note-{i}.txt": f"note {i}: {rnd.getrandbits(64):x}\n".encode() * (i + 1)
                               for i in range(SMALL_FILES)}  # fmt: skip
    files["/media/big.bin"] = rnd.randbytes(BIG_FILE_MB << 20)
    t0 = time.perf_counter()
    with Volume.open(meta) as vol:
        commits = vol.commits
        vol.makedirs("/docs")
        vol.mkdir("/media")
        for path, data in files.items():
            vol.write_file(path, data)
        vol.symlink("media/big.bin", "/latest")
        vol.setxattr("/docs/note-0.txt", "user.origin", b"demo")
        commits = vol.commits - commits
        shipped = vol.meta_stats()
    say(f"wrote {len(files)} files ({sum(map(len, files.values())) / (1 << 20):.1f} MiB), a symlink and an "
        f"xattr in {(time.perf_counter() - t0) * 1000:.0f} ms: {commits} metadata commits -> "
        f"{shipped['write_ltx_files']} LTX files ({shipped['bytes_written']} bytes) on the replica")
    return {p: hashlib.sha256(d).hexdigest() for p, d in files.items()}


def blockmap_demo(root: Path) -> None:
    say("== blockmap: a JuiceFS-compatible file system whose metadata lives in ltxvfs ==")
    meta = f"file://{root}/blockmap.db-ltx"
    data = f"file://{root}/data"
    run_tool("blockmap", "format", "--meta", meta, "--data", data, "demo-vol")
    expected = write_volume(meta)
    run_tool("blockmap", "ls", "-l", "--meta", meta, "/docs")

    say(f"\ncold boot: a new process opens the volume from {meta} and reads every file back")
    result = cold_boot(COLD_VOLUME, meta, json.dumps(expected))
    if result["digests"] != expected:
        raise SystemExit("demo: the cold-booted volume returned different bytes")
    say(f"    {len(expected)} files, bytes identical (sha256), metadata at TXID {result['txid']}")
    say(f"    process start to volume open: {result['opened'] * 1000:.0f} ms; to every byte read: "
        f"{result['seconds'] * 1000:.0f} ms")
    say(f"    metadata requests (ltxvfs): {stats_line(result['meta'], META_STATS)}")
    say(f"    block requests (data store): {stats_line(result['data'], DATA_STATS)}")

    say()
    if not run_tool("ltxctl", "verify", meta, show=3).strip():
        say("    ok: every LTX file decodes, checksums match, each level is contiguous")
    restored = root / "restored-meta.db"
    run_tool("ltxctl", "restore", meta, "-o", str(restored), show=2)
    run_tool("juicefs", "fsck", "--no-agent", f"sqlite3://{restored}", "--path", "/", "--recursive", show=0)
    say("    juicefs fsck: ok (the binary reads the restored metadata and finds every block)")


def shell(command: str, cwd: Path) -> str:
    """Run an ordinary shell command in `cwd` and echo it and what it printed."""
    say(f"$ {command}")
    done = subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=CHILD_TIMEOUT)
    if done.returncode != 0:
        raise SystemExit(f"demo: {command!r} failed:\n{done.stdout}{done.stderr}")
    for line in done.stdout.strip().splitlines()[:8]:
        say(f"    {line}")
    return done.stdout


def mount_demo(root: Path) -> None:
    say("\n== blockmap mount: the volume as a file system; kill it, mount it elsewhere ==")
    if not os.path.exists("/dev/fuse"):
        say("    (skipped: this machine has no /dev/fuse)")
        return
    from blockmap.mount import pid_file

    meta = f"file://{root}/blockmap.db-ltx"
    first, second = root / "mnt-a", root / "mnt-b"
    first.mkdir()
    second.mkdir()
    run_tool("blockmap", "mount", "--meta", meta, str(first), "-d", "--cache-dir", str(root / "cache-a"))
    pid = int(pid_file(str(first)).read_text())
    try:
        shell("ls -l docs media | head -4", first)
        shell("mkdir -p work && seq 1 100000 > work/numbers.txt && sort -rn work/numbers.txt | head -2", first)
        shell("tar -cf work/docs.tar docs && tar -tf work/docs.tar | wc -l", first)
        shell("cp -a docs work/docs-copy && diff -r docs work/docs-copy && echo same", first)
        shell("python3 -c \"import os; fd = os.open('.', os.O_RDONLY); os.fsync(fd)\"", first)  # mount-wide sync
        expected = shell("sha256sum work/numbers.txt work/docs.tar media/big.bin", first)
        say(f"$ kill -9 {pid}   # the machine dies: nothing is unmounted, nothing shipped at exit")
        os.kill(pid, signal.SIGKILL)
    finally:
        subprocess.run(["fusermount3", "-u", "-z", str(first)], capture_output=True, timeout=CHILD_TIMEOUT)
    run_tool("blockmap", "mount", "--meta", meta, str(second), "-d", "--cache-dir", str(root / "cache-b"))
    try:
        again = shell("sha256sum work/numbers.txt work/docs.tar media/big.bin", second)
        if again != expected:
            raise SystemExit("demo: the volume mounted elsewhere holds different bytes")
        say("    the same bytes, mounted from the store alone on another mountpoint with another cache")
    finally:
        run_tool("blockmap", "umount", str(second))


def sqlite_demo(root: Path) -> None:
    say("\n== any SQLite database: ltxctl import, then a cold query through ltxvfs ==")
    source = root / "accounts.db"
    rnd = random.Random(SEED)
    con = apsw.Connection(str(source))
    con.execute("CREATE TABLE accounts(id INTEGER PRIMARY KEY, name TEXT, balance INTEGER)")
    with con:
        con.executemany("INSERT INTO accounts VALUES (?, ?, ?)",
                        ((i, f"user-{rnd.getrandbits(40):010x}", rnd.randrange(10_000)) for i in range(ROWS)))
    expected = list(con.execute("SELECT count(*), sum(balance) FROM accounts").fetchall()[0])
    con.close()
    name = root / "app.db"  # the embedded default: app.db keeps its replica in app.db-ltx/
    run_tool("ltxctl", "import", str(source), f"file://{name}-ltx", show=1)
    result = cold_boot(COLD_QUERY, str(name))
    if list(result["count"]) != expected:
        raise SystemExit("demo: the cold query returned a different answer")
    say(f"    new process: count, sum = {result['count']} in {result['seconds'] * 1000:.0f} ms; "
        f"requests: {stats_line(result['stats'], META_STATS)}")


def main() -> None:
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ltxvfs-demo-") as tmp:
        root = Path(tmp)
        blockmap_demo(root)
        mount_demo(root)
        sqlite_demo(root)
    say(f"\ndemo: ok ({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
