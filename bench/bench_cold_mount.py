"""Cold mount (issue 14): from the command to the first byte of a chosen file, on a volume of
100,000 files written through `blockmap mount`, both sides at 20 ms per request.

- blockmap: `blockmap mount -d --meta s3://… --data s3://… --cache-dir EMPTY MNT`, then the first
  byte of the chosen file (the metadata cold from its replica, compacted as the mount compacts it
  by default while it wrote the volume).
- the seed's stack: `litestream restore` of the same metadata as juicefs's SQLite database (a
  replica that `litestream replicate -once` made of it), `juicefs mount -d sqlite3://…` of the
  restored file, then the first byte of the same file (the same block objects).

Both talk to the same SeaweedFS server through the counting proxy (tests/s3proxy.py: 20 ms per
request, BENCH_RTT_MS; a 100 MB/s link, BENCH_BANDWIDTH_MBPS); rounds alternate which side goes
first; medians are compared, with the store requests and bytes each side made until its first byte.
The project's bytecode is compiled before the rounds (bench/harness/runner.py `precompile`), as a
pip-installed blockmap has it: with PYTHONDONTWRITEBYTECODE set (as on this machine) each `blockmap`
process would otherwise compile ~200 modules from source, a cost no installed mount pays.

The volume is built once (writing 100,000 files through a mount takes a while) and kept with its
S3 server's data in `--cache` (default /work/scratch/coldmount, outside the repository); later runs
reuse it. What building it took and left (files, commits, metadata size, replica files per level)
is in its `volume.json`.

    .venv/bin/python bench/bench_cold_mount.py [--rounds 5] [--files 100000] [--no-write] [--rewrite]
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_mount import RESULTS_DIR, fuse_available, is_mounted, juicefs_binary, run_checked  # noqa: E402

#: Where the volume (and the S3 server's data holding it) is kept between runs.
DEFAULT_CACHE = Path("/work/scratch/coldmount")
#: The volume: FILES files, DIRS top directories of SUBDIRS directories each, sizes drawn from
#: MIN_SIZE..MAX_SIZE by a seeded generator (contents too).
FILES = 100_000
DIRS = 100
SUBDIRS = 10
MIN_SIZE, MAX_SIZE = 256, 16 << 10
SEED = 14
#: Threads writing through the mount while the volume is built.
WRITERS = 4
#: Alternating rounds per side.
ROUNDS = 5
#: Target: blockmap's time to first byte over the peer's.
TARGET = 0.3
VOLUME = "coldvol"
META_PREFIX = "coldvol-meta"
JFS_META_PREFIX = "coldvol-jfs-meta"
BLOCKMAP = "blockmap"
PEER = "litestream+juicefs"
SIDES = (BLOCKMAP, PEER)
#: Bound on one command (mount, restore, unmount).
STEP_TIMEOUT = 600
#: Prose about the figures (bench/results/), appended to the section at each write.
NOTES = "cold_mount-notes.md"
MARKDOWN_HEADING = "## Cold mount: 100,000 files, from the command to the first byte"


def venv_bin(name: str) -> str:
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found beside {sys.executable} or on PATH")
    return found


def file_path(i: int, files: int) -> str:
    """The i-th file's path in the volume: spread over DIRS x SUBDIRS directories."""
    per_dir = max(1, files // (DIRS * SUBDIRS))
    d, rest = divmod(i // per_dir, SUBDIRS)
    return f"d{d % DIRS:03d}/s{rest:02d}/f{i:06d}.dat"


def file_bytes(i: int) -> bytes:
    rng = random.Random(SEED * 1_000_003 + i)
    return rng.randbytes(rng.randint(MIN_SIZE, MAX_SIZE))


def chosen_file(files: int) -> int:
    """The file whose first byte is read: one deep in the tree, in neither the first nor the last
    directory written."""
    return (files * 2) // 3 + 7


@contextlib.contextmanager
def s3_server(cache: Path) -> Iterator[Any]:
    from tests.s3server import S3Server

    with S3Server(cache / "s3", persistent=True) as server:
        yield server


def s3_url(server: Any, endpoint: str, prefix: str) -> str:
    return f"s3://{server.bucket}/{prefix}?endpoint={endpoint}&region={server.region}&force-path-style=true"


def _blockmap(*args: str) -> list[str]:
    return [venv_bin("blockmap"), *args]


def _ltxctl(*args: str) -> list[str]:
    return [venv_bin("ltxctl"), *args]


# --- building the volume -------------------------------------------------------------------------


def write_tree(mnt: Path, files: int, log: Callable[[str], None]) -> None:
    """`files` files through the mount with real syscalls, WRITERS threads, one directory each."""
    dirs = sorted({os.path.dirname(file_path(i, files)) for i in range(files)})
    for d in dirs:
        os.makedirs(mnt / d, exist_ok=True)
    by_dir: dict[str, list[int]] = collections.defaultdict(list)
    for i in range(files):
        by_dir[os.path.dirname(file_path(i, files))].append(i)
    done = 0
    began = time.monotonic()

    def one_dir(d: str) -> int:
        for i in by_dir[d]:
            fd = os.open(mnt / file_path(i, files), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            try:
                data = file_bytes(i)
                while data:
                    data = data[os.write(fd, data):]
            finally:
                os.close(fd)
        return len(by_dir[d])

    with concurrent.futures.ThreadPoolExecutor(WRITERS) as pool:
        for n in pool.map(one_dir, dirs):
            done += n
            if done % 5000 < n:
                rate = done / (time.monotonic() - began)
                log(f"  {done:,} files written ({rate:,.0f}/s)")


def replica_levels(url: str, env: dict[str, str]) -> dict[str, int]:
    listing = json.loads(run_checked(_ltxctl("ls", url, "--json"), env).stdout)
    return dict(sorted(collections.Counter(str(f["level"]) for f in listing).items()))


def build(cache: Path, files: int, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Write the volume through a real mount (directly to the S3 server: no proxy), unmount it,
    then make the peer's replica: `ltxctl restore` of the metadata into juicefs's SQLite file and
    `litestream replicate -once` of it. Kept in `cache`; returns what it took and left."""
    info_path = cache / "volume.json"
    if info_path.exists():
        info: dict[str, Any] = json.loads(info_path.read_text())
        if info.get("files") == files:
            return info
        raise RuntimeError(f"{cache} holds a volume of {info.get('files')} files; remove it or give another --cache")
    if (cache / "s3").exists():
        shutil.rmtree(cache / "s3")  # a build that did not finish
    work = cache / "build"
    shutil.rmtree(work, ignore_errors=True)
    (work / "mnt").mkdir(parents=True)
    began = time.monotonic()
    with s3_server(cache) as server:
        env = server.env()
        meta, data = s3_url(server, server.endpoint, META_PREFIX), s3_url(server, server.endpoint, "")
        run_checked(_blockmap("format", "--meta", meta, "--data", data, VOLUME), env)
        run_checked(_blockmap("mount", "--meta", meta, str(work / "mnt"), "-d", "--cache-dir", str(work / "cache"),
                       "--log", str(work / "mount.log")), env)
        try:
            write_tree(work / "mnt", files, log)
            written = time.monotonic()
            log(f"  written in {written - began:,.0f} s; unmounting")
        finally:
            try:
                run_checked(_blockmap("umount", str(work / "mnt")), env)
            finally:
                if is_mounted(work / "mnt"):
                    subprocess.run(["fusermount3", "-u", "-z", str(work / "mnt")], check=False)
        unmounted = time.monotonic()
        state = replica_state(server, cache)
    info = {
        "files": files, "dirs": DIRS * SUBDIRS + DIRS, "seed": SEED, "sizes": [MIN_SIZE, MAX_SIZE],
        "writers": WRITERS, "chosen": file_path(chosen_file(files), files),
        "chosen_first_byte": file_bytes(chosen_file(files))[0],
        "write_s": round(written - began, 1), "unmount_s": round(unmounted - written, 1),
        "build_s": round(time.monotonic() - began, 1), **state,
        "built": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    info_path.write_text(json.dumps(info, indent=1) + "\n")
    return info


def replica_state(server: Any, cache: Path) -> dict[str, Any]:
    """What the volume's replica holds now (TXID, size, files per level; fsck), and the peer's
    replica made afresh from it: `ltxctl restore` into juicefs's SQLite file (WAL), then
    `litestream replicate -once` of that file into its own prefix (emptied first)."""
    env = server.env()
    meta = s3_url(server, server.endpoint, META_PREFIX)
    txinfo = json.loads(run_checked(_ltxctl("info", meta, "--json"), env).stdout)
    levels = replica_levels(meta, env)
    from blockmap import Volume

    with Volume.open(meta, data_url=s3_url(server, server.endpoint, ""), read_only=True) as vol:
        report = vol.fsck()  # the data URL the volume keeps names the server's port at build time
    work = cache / "build"
    work.mkdir(parents=True, exist_ok=True)
    db = work / "jfs-meta.db"
    for p in work.glob("jfs-meta.db*"):
        p.unlink()
    run_checked(_ltxctl("restore", meta, "-o", str(db)), env)
    import apsw

    conn = apsw.Connection(str(db))
    conn.execute("PRAGMA journal_mode = wal").fetchall()
    conn.close()
    client = server.client()
    for obj in list(server.objects(JFS_META_PREFIX + "/")):
        client.delete_object(Bucket=server.bucket, Key=obj["Key"])
    peer_url = s3_url(server, server.endpoint, JFS_META_PREFIX)
    done = subprocess.run([venv_bin("litestream"), "replicate", "-once", str(db), peer_url], env=env,
                          capture_output=True, text=True, timeout=STEP_TIMEOUT)
    if done.returncode != 0:
        raise RuntimeError(f"litestream replicate -once failed: {done.stderr.strip()}")
    return {
        "txid": int(txinfo["txid"], 16), "meta_db_bytes": int(txinfo["database_size"]),
        "replica_levels": levels, "replica_objects": sum(1 for _ in server.objects(META_PREFIX + "/")),
        "peer_replica_objects": sum(1 for _ in server.objects(JFS_META_PREFIX + "/")),
        "jfs_meta_db_bytes": db.stat().st_size, "fsck_ok": report.ok,
        "fsck": f"{report.files} files, {report.slices} slices, {report.blocks} blocks; problems "
                f"{report.problems[:3]}, missing blocks {report.missing_blocks[:3]}",
    }


# --- measuring -----------------------------------------------------------------------------------


@dataclass
class Round:
    side: str
    seconds: float
    requests: int
    bytes: int
    kinds: dict[str, int]
    #: Seconds from the command to: its first store request, the mount returning (and, for the
    #: peer, the restore finishing).
    marks: dict[str, float]
    #: CPU seconds (user + system) the side's processes spent until the first byte: the commands
    #: run, and the mount process they left serving.
    cpu: float = 0.0


def children_cpu() -> float:
    """CPU seconds (user + system) of this process's waited-for children so far."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def daemons_cpu(mountpoint: Path) -> float:
    """CPU seconds so far of the processes (not our children: daemons) whose command line names
    `mountpoint`: the mount process that `-d` left serving it."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if str(mountpoint).encode() not in (d / "cmdline").read_bytes().split(b"\0"):
                continue
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def first_byte(path: Path) -> int:
    fd = os.open(path, os.O_RDONLY)
    try:
        got = os.read(fd, 1)
    finally:
        os.close(fd)
    if len(got) != 1:
        raise RuntimeError(f"{path}: no first byte")
    return got[0]


def _counted(proxy: Any, start: int, began: float, until: float,
             prefixes: tuple[str, ...]) -> tuple[int, int, dict[str, int], float]:
    """Requests since `start` that left by `until`: count, bytes both ways, by kind, and when the
    first one left (seconds after `began`)."""
    reqs = [r for r in proxy.seen[start:] if r.started <= until]

    def kind(r: Any) -> str:
        where = " block" if "/chunks/" in r.path else " metadata" if any(p in r.path for p in prefixes) else ""
        return f"{r.kind}{where}"

    kinds = dict(collections.Counter(kind(r) for r in reqs))
    first = min((r.started for r in reqs), default=until) - began
    return len(reqs), sum(r.bytes_out + r.bytes_in for r in reqs), kinds, first


def _first_byte_round(side: str, proxy: Any, mnt: Path, chosen: str, expect: int, prefixes: tuple[str, ...],
                      mount: Callable[[Callable[[], float]], dict[str, float]],
                      unmount: Callable[[], None]) -> Round:
    """One round of a side: `mount(clock)` (returning when each of its phases ended, by the
    proxy's clock), then the first byte of `chosen`; timed, checked against `expect`, counted at
    the proxy; the mount is taken down whatever happens."""
    clock = proxy_clock()
    start = len(proxy.seen)
    cpu = children_cpu()
    began = clock()
    try:
        marks = mount(clock)
        got = first_byte(mnt / chosen)
        done = clock()
        cpu = children_cpu() - cpu + daemons_cpu(mnt)
        if got != expect:
            raise RuntimeError(f"{side}: first byte {got}, expected {expect}")
        n, nbytes, kinds, first = _counted(proxy, start, began, done, prefixes)
        phases = {"first_request": round(first, 3), **{k: round(t - began, 3) for k, t in marks.items()}}
        return Round(side, done - began, n, nbytes, kinds, phases, round(cpu, 3))
    finally:
        try:
            unmount()
        finally:
            if is_mounted(mnt):
                subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False)


def measure_blockmap(server: Any, proxy: Any, work: Path, expect: int, chosen: str) -> Round:
    mnt, cache = work / "mnt", work / "cache"
    mnt.mkdir(parents=True)
    env = server.env()
    meta, data = s3_url(server, proxy.endpoint, META_PREFIX), s3_url(server, proxy.endpoint, "")

    def mount(clock: Callable[[], float]) -> dict[str, float]:
        run_checked(_blockmap("mount", "--meta", meta, "--data", data, str(mnt), "-d", "--cache-dir", str(cache),
                              "--log", str(work / "mount.log")), env)
        return {"mounted": clock()}

    return _first_byte_round(BLOCKMAP, proxy, mnt, chosen, expect, (META_PREFIX,), mount,
                             lambda: _unmount(_blockmap("umount", str(mnt)), mnt, env))


def measure_peer(server: Any, proxy: Any, work: Path, expect: int, chosen: str) -> Round:
    mnt, cache = work / "mnt", work / "cache"
    mnt.mkdir(parents=True)
    env = server.env()
    env.update(ACCESS_KEY=server.access_key, SECRET_KEY=server.secret_key)
    db = work / "meta.db"
    jfs = juicefs_binary()

    def mount(clock: Callable[[], float]) -> dict[str, float]:
        run_checked([venv_bin("litestream"), "restore", "-o", str(db),
                     s3_url(server, proxy.endpoint, JFS_META_PREFIX)], env)
        restored = clock()
        run_checked([jfs, "mount", "--no-agent", f"sqlite3://{db}", str(mnt), "-d", "--cache-dir", str(cache),
                     "--bucket", f"{proxy.endpoint}/{server.bucket}", "--log", str(work / "mount.log"),
                     "--no-usage-report"], env)
        return {"restored": restored, "mounted": clock()}

    return _first_byte_round(PEER, proxy, mnt, chosen, expect, (JFS_META_PREFIX,), mount,
                             lambda: _unmount([jfs, "umount", str(mnt)], mnt, env))


def _unmount(cmd: list[str], mnt: Path, env: dict[str, str]) -> None:
    """Unmount with the side's own command if the mount is up."""
    if is_mounted(mnt):
        run_checked(cmd, env)


def proxy_clock() -> Callable[[], float]:
    """The clock the proxy stamps requests with (tests/s3proxy.py: time.monotonic)."""
    return time.monotonic


@contextlib.contextmanager
def removed_after(path: Path) -> Iterator[None]:
    """Remove `path` afterwards, unless something is still mounted under it (a removal would
    delete the volume's files through the mount)."""
    try:
        yield
    finally:
        real = os.path.realpath(path)
        with open("/proc/self/mounts", encoding="utf-8") as f:
            busy = [line.split()[1] for line in f if line.split()[1].startswith(real + "/")]
        if busy:
            print(f"left {path} in place: still mounted there: {', '.join(busy)}", file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)


def measure(cache: Path, info: dict[str, Any], rounds: int, log: Callable[[str], None] = print) -> dict[str, Any]:
    from bench.harness.network import Network, proxied
    from bench.harness.runner import precompile

    precompile()  # blockmap starts as an installed package does: its bytecode cached, not compiled each time
    runs: dict[str, list[Round]] = {s: [] for s in SIDES}
    network = Network.from_env()
    load_before = os.getloadavg()
    tmp = tempfile.mkdtemp(prefix="rounds-", dir=cache)
    with s3_server(cache) as server, proxied(server.endpoint, network) as proxy, removed_after(Path(tmp)):
        txid_before = json.loads(run_checked(_ltxctl("info", s3_url(server, server.endpoint, META_PREFIX), "--json"),
                                      server.env()).stdout)["txid"]
        for r in range(rounds):
            for side in SIDES if r % 2 == 0 else SIDES[::-1]:
                fn = measure_blockmap if side == BLOCKMAP else measure_peer
                got = fn(server, proxy, Path(tmp) / f"{side.split('+')[0]}-{r}", info["chosen_first_byte"],
                         info["chosen"])
                runs[side].append(got)
                log(f"round {r + 1} {side:18s} {got.seconds:6.3f} s  cpu {got.cpu:5.2f} s  {got.requests:5d} requests  "
                    f"{got.bytes / 1e6:7.2f} MB  {got.marks}  {got.kinds}")
        txid_after = json.loads(run_checked(_ltxctl("info", s3_url(server, server.endpoint, META_PREFIX), "--json"),
                                     server.env()).stdout)["txid"]
    med = {s: statistics.median(r.seconds for r in runs[s]) for s in SIDES}
    return {
        "context": {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": f"{platform.machine()} ({os.cpu_count()} cores), kernel {platform.release()}",
            "network": network.describe(), "rounds": rounds,
            "juicefs": run_checked([juicefs_binary(), "version"]).stdout.strip(),
            "litestream": run_checked([venv_bin("litestream"), "version"]).stdout.strip(),
            "replica_txid_before": txid_before, "replica_txid_after": txid_after,
            "load_average": [round(x, 2) for x in load_before] + [round(x, 2) for x in os.getloadavg()],
        },
        "volume": info,
        "median_s": med,
        "ratio": round(med[BLOCKMAP] / med[PEER], 3),
        "median_requests": {s: statistics.median(r.requests for r in runs[s]) for s in SIDES},
        "median_cpu_s": {s: statistics.median(r.cpu for r in runs[s]) for s in SIDES},
        "median_bytes": {s: statistics.median(r.bytes for r in runs[s]) for s in SIDES},
        "rounds": {s: [r.__dict__ for r in runs[s]] for s in SIDES},
    }


# --- reporting -----------------------------------------------------------------------------------


def markdown(s: dict[str, Any]) -> str:
    c, v = s["context"], s["volume"]
    levels = ", ".join(f"level {k}: {n}" for k, n in v["replica_levels"].items())
    met = "met" if s["ratio"] <= TARGET else "missed"
    lines = [
        MARKDOWN_HEADING, "",
        f"Measured {c['date']} on {c['machine']}; {c['juicefs']}, {c['litestream']}; S3 (SeaweedFS) behind "
        f"the counting proxy ({c['network']}), both sides. {c['rounds']} alternating rounds, medians. Produced by "
        "`bench/bench_cold_mount.py`. Load average (1, 5, 15 min) before and after the rounds: "
        f"{', '.join(f'{x:.1f}' for x in c.get('load_average', []))} on a shared machine.", "",
        f"The volume: {v['files']:,} files ({v['sizes'][0]} B to {v['sizes'][1] // 1024} KiB, seeded contents) in "
        f"{v['dirs']:,} directories, written through `blockmap mount` (defaults: group commit every second, "
        f"compaction by the mount) with real syscalls from {v['writers']} threads, straight to the S3 server, "
        f"then unmounted: {v['write_s']:,.0f} s of writing, {v['unmount_s']:,.0f} s to unmount "
        f"({v['build_s']:,.0f} s to build with the peer's replica). Its replica: TXID {v['txid']:,} "
        f"(LTX files shipped), {v['meta_db_bytes'] / 1e6:.1f} MB of metadata database, {v['replica_objects']:,} "
        f"objects after the mount's compaction ({levels}). The peer's: `ltxctl restore` of it into juicefs's "
        f"SQLite file ({v['jfs_meta_db_bytes'] / 1e6:.1f} MB, WAL), then `litestream replicate -once` "
        f"({v['peer_replica_objects']} objects). The file read: `/{v['chosen']}`.", "",
        "- **blockmap**: `blockmap mount -d --meta s3://… --data s3://… --cache-dir EMPTY MNT`, then `open` + "
        "`read` of 1 byte of the file.",
        "- **litestream + juicefs**: `litestream restore -o meta.db s3://…`, `juicefs mount -d sqlite3://meta.db "
        "MNT --bucket …`, then the same read.", "",
        "| | blockmap mount (cold) | litestream restore + juicefs mount | blockmap / peer | target |",
        "|---|---|---|---|---|",
        f"| command to first byte (median) | {s['median_s'][BLOCKMAP]:.3f} s | {s['median_s'][PEER]:.3f} s | "
        f"{s['ratio']:.3f} | <= {TARGET}: {met} |",
        f"| CPU seconds until then, all its processes (median) | {s['median_cpu_s'][BLOCKMAP]:.2f} s | "
        f"{s['median_cpu_s'][PEER]:.2f} s | "
        f"{s['median_cpu_s'][BLOCKMAP] / max(0.001, s['median_cpu_s'][PEER]):.3f} | - |",
        f"| store requests until then (median) | {s['median_requests'][BLOCKMAP]:,.0f} | "
        f"{s['median_requests'][PEER]:,.0f} | "
        f"{s['median_requests'][BLOCKMAP] / max(1, s['median_requests'][PEER]):.3f} | - |",
        f"| bytes through the proxy (median) | {s['median_bytes'][BLOCKMAP] / 1e6:.2f} MB | "
        f"{s['median_bytes'][PEER] / 1e6:.2f} MB | "
        f"{s['median_bytes'][BLOCKMAP] / max(1, s['median_bytes'][PEER]):.3f} | - |",
        "", "![cold mount](cold_mount.png)", "",
        "Every round (seconds; requests; MB; when the first request left, and when the mount command "
        "returned, from the command's start):", "",
    ]
    for side in SIDES:
        for i, r in enumerate(s["rounds"][side]):
            kinds = ", ".join(f"{k} {n}" for k, n in sorted(r["kinds"].items()))
            marks = ", ".join(f"{k} {t:.3f} s" for k, t in r["marks"].items())
            lines.append(f"- {side} round {i + 1}: {r['seconds']:.3f} s (CPU {r.get('cpu', 0):.2f} s); "
                         f"{r['requests']:,} requests ({kinds}); "
                         f"{r['bytes'] / 1e6:.2f} MB; {marks}")
    if c["replica_txid_before"] != c["replica_txid_after"]:
        lines += ["", f"The replica moved from TXID {c['replica_txid_before']} to {c['replica_txid_after']} over "
                      "the rounds (what the mounts committed)."]
    notes = RESULTS_DIR / NOTES
    if notes.exists():
        lines += ["", notes.read_text().rstrip("\n")]
    return "\n".join(lines) + "\n"


PHASES = {
    BLOCKMAP: (("first_request", "start-up (first request)"), ("mounted", "volume open, mount answers"),
               ("seconds", "lookups and read")),
    PEER: (("restored", "litestream restore"), ("mounted", "juicefs mount -d"), ("seconds", "lookups and read")),
}


def plot(s: dict[str, Any], path: Path) -> None:
    """Each round's time to first byte, split into its phases, both sides."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 3.8))
    colors = ("tab:gray", "tab:blue", "tab:green")
    y = 0.0
    ticks: list[float] = []
    labels: list[str] = []
    for side in SIDES:
        for i, r in enumerate(s["rounds"][side]):
            start = 0.0
            for (key, label), color in zip(PHASES[side], colors, strict=True):
                end = r["seconds"] if key == "seconds" else r["marks"][key]
                ax.barh(y, end - start, left=start, color=color, label=label if i == 0 else None, height=0.7)
                start = end
            ticks.append(y)
            labels.append(f"{side} {i + 1}")
            y += 1
        y += 0.5
    ax.axvline(s["median_s"][PEER] * TARGET, color="black", linestyle="dashed", linewidth=1,
               label=f"target: {TARGET} x the peer's median")
    ax.set_yticks(ticks, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("seconds from the command to the first byte (20 ms per request)")
    ax.set_title(f"Cold mount, {s['volume']['files']:,} files: blockmap / peer = {s['ratio']:.2f} (medians)",
                 fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_results(s: dict[str, Any], directory: Path = RESULTS_DIR) -> list[Path]:
    """cold_mount.json and .png, and the section in mount.md (replaced if there, else appended;
    bench_mount.py appends it too when it rewrites mount.md)."""
    js = directory / "cold_mount.json"
    js.write_text(json.dumps(s, indent=1) + "\n")
    plot(s, directory / "cold_mount.png")
    md = directory / "mount.md"
    text = md.read_text() if md.exists() else ""
    section = markdown(s)
    if MARKDOWN_HEADING in text:
        head, _, rest = text.partition(MARKDOWN_HEADING)
        nxt = rest.find("\n## ")
        text = head + section + (rest[nxt + 1:] if nxt >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    md.write_text(text)
    return [js, directory / "cold_mount.png", md]


# --- pytest-benchmark (`make bench`) ---------------------------------------------------------------

try:
    import pytest
except ImportError:  # pragma: no cover - run as a script without pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.mark.skipif(not fuse_available(), reason="no /dev/fuse or fusermount3 on this machine")
    def test_cold_mount_beside_litestream_and_juicefs(benchmark: Any) -> None:
        """The volume is built on the first run (~10 minutes) and kept in DEFAULT_CACHE."""
        DEFAULT_CACHE.mkdir(parents=True, exist_ok=True)
        info = build(DEFAULT_CACHE, FILES)
        summary = benchmark.pedantic(lambda: measure(DEFAULT_CACHE, info, ROUNDS), rounds=1, iterations=1)
        benchmark.extra_info.update({"ratio": summary["ratio"], **{f"median_s_{k}": v
                                                                   for k, v in summary["median_s"].items()}})
        write_results(summary)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default=str(DEFAULT_CACHE), help="where the volume is built once and kept")
    ap.add_argument("--files", type=int, default=FILES)
    ap.add_argument("--rounds", type=int, default=ROUNDS)
    ap.add_argument("--build-only", action="store_true")
    ap.add_argument("--no-write", action="store_true", help="print only; leave bench/results/ alone")
    ap.add_argument("--rewrite", action="store_true", help="rewrite the section, its plot and notes from "
                    "cold_mount.json (no measurement)")
    args = ap.parse_args(argv)
    if args.rewrite:
        for p in write_results(json.loads((RESULTS_DIR / "cold_mount.json").read_text())):
            print("wrote", p)
        return 0
    if not fuse_available():
        print("no /dev/fuse or fusermount3 on this machine", file=sys.stderr)
        return 1
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    info = build(cache, args.files)
    print(json.dumps(info, indent=1))
    if args.build_only:
        return 0
    summary = measure(cache, info, args.rounds)
    print(markdown(summary))
    if not args.no_write:
        for p in write_results(summary):
            print("wrote", p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
