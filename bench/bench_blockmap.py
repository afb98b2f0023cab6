"""blockmap metadata and data speed, beside `juicefs mdtest` on sqlite3 metadata, same machine, same run.

Figures:
- creates per second: the tree `juicefs mdtest --dirs D --depth 1 --files F` builds (1 + D
  directories, F files each, path-based `Volume.create`, one thread), timed like mdtest times it
  (file creates only); mdtest itself runs on a volume made with
  `juicefs format sqlite3://… --storage file`, no mount. Rounds alternate mdtest and the variants;
  the best of each is compared. Target: blockmap with group commit >= half of mdtest's creates/s.
- stats per second: path-based `stat` of every file of that tree.
- readdir of 10,000 entries: one directory, names only and with attributes, warm (the writer's
  page cache) and cold (a new `Volume.open` reading the metadata from the store).
- sequential write and read MB/s: one file through `File.write`/`File.read` with the default
  4 MiB blocks on a file:// store (metadata in a file:// replica), beside the store's own put/get
  of the same bytes as 4 MiB objects (reads come from the page cache: the blocks were just written).

Where the metadata lives (the variants):
- `sqlite`: a local SQLite file, `connect_meta` as shipped (rollback journal, synchronous=FULL).
- `sqlite-wal`: the same in WAL mode with synchronous=NORMAL, how the juicefs binary runs SQLite
  (it fsyncs only at checkpoints): the two implementations at equal durability.
- `ltxvfs-file` / `ltxvfs-s3`: `blockmap.db` in an ltxvfs replica on file:// / on the real
  SeaweedFS server (localhost, no imitated round trip), `sync=commit`: every create is one LTX
  file, one PUT, in the store before `create` returns.
- `ltxvfs-file-group` / `ltxvfs-s3-group`: the same with group commit (`sync=interval:10ms`): the
  creates of each 10 ms ship as one LTX file; a crash may lose the last interval. The timed window
  ends with `flush()`, so every create is in the store when the clock stops.

    .venv/bin/python -m pytest bench/bench_blockmap.py --benchmark-only   # pytest-benchmark
    .venv/bin/python bench/bench_blockmap.py [--files 500] [--mb 256]     # print the figures
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from blockmap.meta import connect_meta  # noqa: E402
from blockmap.volume import Volume  # noqa: E402
from ltx.store import open_store  # noqa: E402

#: mdtest's tree: 1 + DIRS directories (depth 1), FILES files in each.
DIRS = 10
FILES = 500
#: Entries in the readdir directory.
READDIR_ENTRIES = 10_000
#: Size of the sequential file (MiB) and of each write call.
SEQ_MB = 256
WRITE_PIECE = 1 << 20
READ_PIECE = 4 << 20
#: Alternating rounds of the create/stat figures (best of each is kept).
ROUNDS = 3
#: blockmap with group commit must reach this share of mdtest's creates per second (issue 7).
TARGET_RATIO = 0.5
#: The group commit the `-group` variants use.
GROUP_SYNC = "interval:10ms"
MIB = 1 << 20
MDTEST_TIMEOUT = 600
SEED = 20261129

ConnectFn = Callable[..., apsw.Connection]


def connect_wal(meta_url: str, **kwargs: Any) -> apsw.Connection:
    """`connect_meta`, then WAL with synchronous=NORMAL: the juicefs binary's SQLite settings."""
    conn = connect_meta(meta_url, **kwargs)
    if not kwargs.get("read_only"):
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    return conn


@dataclass(frozen=True)
class Variant:
    """Where a benchmark volume keeps its metadata: `home` is sqlite, file (an ltxvfs replica on
    file://) or s3 (an ltxvfs replica on the S3 server); `sync` is ltxvfs's sync=."""

    name: str
    home: str
    sync: str | None = None
    connect: ConnectFn = connect_meta

    @property
    def group(self) -> bool:
        return self.sync is not None and self.sync.startswith("interval:")


SQLITE = Variant("sqlite", "sqlite")
SQLITE_WAL = Variant("sqlite-wal", "sqlite", connect=connect_wal)
LTXVFS_FILE = Variant("ltxvfs-file", "file", "commit")
LTXVFS_FILE_GROUP = Variant("ltxvfs-file-group", "file", GROUP_SYNC)
LTXVFS_S3 = Variant("ltxvfs-s3", "s3", "commit")
LTXVFS_S3_GROUP = Variant("ltxvfs-s3-group", "s3", GROUP_SYNC)
VARIANTS = (SQLITE, SQLITE_WAL, LTXVFS_FILE, LTXVFS_FILE_GROUP, LTXVFS_S3, LTXVFS_S3_GROUP)


def juicefs_binary() -> str:
    from tests.blockmap.juicefs_cli import juicefs_path  # type: ignore[import-not-found]

    return str(juicefs_path())


# --- juicefs mdtest ------------------------------------------------------------------------------

_GO_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?)(ns|us|µs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_duration(text: str) -> float:
    """Seconds in a Go duration as mdtest prints it (`154.096186ms`, `1.6053s`, `1m2.5s`)."""
    parts = list(_GO_DURATION_PART.finditer(text))
    if not parts or "".join(m.group(0) for m in parts) != text:
        raise ValueError(f"not a Go duration: {text!r}")
    return sum(float(m.group(1)) * _GO_UNITS[m.group(2)] for m in parts)


_CREATED = re.compile(r"Created (\d+) (files|dirs) in (\S+) \((\d+) \2/s\)")


def run_mdtest(workdir: Path, dirs: int = DIRS, files: int = FILES) -> dict[str, float]:
    """Format a fresh sqlite3 + file volume with the binary and run `juicefs mdtest` on it."""
    workdir.mkdir(parents=True)
    meta = f"sqlite3://{workdir}/meta.db"
    jfs = juicefs_binary()
    common = ["--no-agent"]
    subprocess.run([jfs, "format", *common, meta, "benchjfs", "--storage", "file", "--bucket", f"{workdir}/data/",
                    "--trash-days", "0"], check=True, capture_output=True, timeout=MDTEST_TIMEOUT)  # fmt: skip
    proc = subprocess.run(
        [jfs, "mdtest", *common, meta, "/test", "--threads", "1", "--dirs", str(dirs), "--depth", "1",
         "--files", str(files), "--cache-dir", f"{workdir}/cache", "--metrics", "127.0.0.1:0", "--no-bgjob",
         "--no-usage-report"],
        capture_output=True, text=True, timeout=MDTEST_TIMEOUT,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"juicefs mdtest exited {proc.returncode}:\n{out[-2000:]}")
    found = {m.group(2): (int(m.group(1)), go_duration(m.group(3))) for m in _CREATED.finditer(out)}
    if "files" not in found:
        raise RuntimeError(f"no 'Created … files' line in juicefs mdtest output:\n{out[-2000:]}")
    n, seconds = found["files"]
    if n != (1 + dirs) * files:
        raise RuntimeError(f"juicefs mdtest created {n} files, expected {(1 + dirs) * files}")
    return {"files": n, "seconds": seconds, "creates_per_s": n / seconds}


# --- blockmap ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Place:
    """Where benchmark volumes go: a local work directory, and an S3 server for the s3 variants."""

    workdir: Path
    s3: Any = None  # tests.s3server.S3Server

    def urls(self, sub: str, variant: Variant) -> tuple[str, str, str]:
        """(meta URL, data URL, volume name) of a fresh volume. On S3 the data URL is the bucket
        (the only form the juicefs binary reads) and the unique name keeps volumes apart."""
        local = self.workdir / sub
        local.mkdir(parents=True)
        if variant.home == "sqlite":
            (local / "data").mkdir()
            return f"sqlite3://{local}/meta.db", f"file://{local}/data", "benchvol"
        if variant.home == "file":
            return f"file://{local}/meta", f"file://{local}/data", "benchvol"
        if self.s3 is None:
            raise RuntimeError(f"variant {variant.name} needs an S3 server")
        unique = uuid.uuid4().hex[:8]
        prefix = f"bench-blockmap-{sub.replace('/', '-')}-{unique}"
        return self.s3.url(prefix + "-meta"), self.s3.url(""), f"benchvol-{unique}"


def fresh_volume(place: Place, sub: str, variant: Variant, block_size: int | None = None) -> Volume:
    meta, data, name = place.urls(sub, variant)
    kwargs: dict[str, Any] = {"connect": variant.connect}
    if variant.sync is not None:
        kwargs["sync"] = variant.sync
    if block_size is not None:
        kwargs["block_size"] = block_size
    return Volume.format(meta, data, name, **kwargs)


def mdtest_tree(vol: Volume, dirs: int, files: int) -> list[str]:
    """mdtest's directories (created, untimed); returns the directories files go into."""
    root = "/test/test-dir.0-0/mdtest_tree.0"
    vol.makedirs(root)
    subdirs = [f"{root}/mdtest_tree.{i}" for i in range(dirs)]
    for d in subdirs:
        vol.mkdir(d)
    vol.flush()
    return [root, *subdirs]


def run_blockmap_creates(place: Place, sub: str, variant: Variant, dirs: int = DIRS,
                         files: int = FILES) -> dict[str, float]:  # fmt: skip
    """The mdtest tree through `Volume.create` (path-based), then `stat` of each file. The create
    window ends once every create is in the store (`flush`, for group commit)."""
    with fresh_volume(place, sub, variant) as vol:
        paths = [f"{d}/file.mdtest.0.{i}" for d in mdtest_tree(vol, dirs, files) for i in range(files)]
        before = vol.meta_stats()
        start = time.perf_counter()
        for p in paths:
            vol.create(p)
        vol.flush()
        created = time.perf_counter() - start
        after = vol.meta_stats()
        start = time.perf_counter()
        for p in paths:
            vol.stat(p)
        stated = time.perf_counter() - start
        if vol.usage().total_inodes != len(paths) + dirs + 3:  # files + the mdtest directories
            raise RuntimeError(f"expected {len(paths) + dirs + 3} inodes, the volume counts {vol.usage()}")
    shipped = after.get("write_ltx_files", 0) - before.get("write_ltx_files", 0)
    return {
        "files": len(paths),
        "seconds": created,
        "creates_per_s": len(paths) / created,
        "stats_per_s": len(paths) / stated,
        "ltx_files": shipped,
        "puts_per_create": (after.get("puts", 0) - before.get("puts", 0)) / len(paths),
    }


def run_readdir(place: Place, sub: str, variant: Variant, entries: int = READDIR_ENTRIES,
                rounds: int = ROUNDS) -> dict[str, float]:  # fmt: skip
    """List one directory of `entries` files: names only, and with attributes (best of `rounds`),
    then once cold from a new `Volume.open` (a replica's pages come from the store)."""

    def listing(vol: Volume) -> tuple[float, float]:
        start = time.perf_counter()
        n = sum(1 for _ in vol.readdir("/r"))
        plain = time.perf_counter() - start
        start = time.perf_counter()
        m = sum(1 for e in vol.readdir("/r", with_attrs=True) if e.attr is not None)
        full = time.perf_counter() - start
        if n != entries or m != entries:
            raise RuntimeError(f"readdir returned {n} names and {m} attributes, expected {entries}")
        return plain, full

    setup = Variant(variant.name, variant.home, GROUP_SYNC if variant.home != "sqlite" else None, variant.connect)
    with fresh_volume(place, sub, setup) as vol:
        vol.mkdir("/r")
        for i in range(entries):
            vol.create(f"/r/entry-{i:06d}")
        vol.flush()
        meta = vol.meta_url
        plain, full = float("inf"), float("inf")
        for _ in range(rounds):
            p, f = listing(vol)
            plain, full = min(plain, p), min(full, f)
    start = time.perf_counter()
    with Volume.open(meta, read_only=True, connect=variant.connect) as cold:
        cold_names = sum(1 for _ in cold.readdir("/r"))
        cold_s = time.perf_counter() - start
        gets = cold.meta_stats().get("gets", 0)
    if cold_names != entries:
        raise RuntimeError(f"cold readdir returned {cold_names} names, expected {entries}")
    return {
        "entries": entries,
        "names_ms": plain * 1000,
        "names_per_s": entries / plain,
        "with_attrs_ms": full * 1000,
        "with_attrs_per_s": entries / full,
        "cold_open_and_names_ms": cold_s * 1000,
        "cold_gets": gets,
    }


def run_sequential(place: Place, sub: str, variant: Variant, mb: int = SEQ_MB) -> dict[str, float]:
    """Write then read one `mb` MiB file; then the store's own put/get of the same 4 MiB objects."""
    piece = os.urandom(WRITE_PIECE)
    total = mb * MIB
    with fresh_volume(place, sub, variant) as vol:
        start = time.perf_counter()
        with vol.open_file("/seq", "w") as f:
            for _ in range(total // WRITE_PIECE):
                f.write(piece)
        written = time.perf_counter() - start
        start = time.perf_counter()
        got = 0
        with vol.open_file("/seq") as f:
            while data := f.read(READ_PIECE):
                got += len(data)
        read = time.perf_counter() - start
        if got != total or vol.stat("/seq").st_size != total:
            raise RuntimeError(f"read {got} bytes of a {total}-byte file")
        block = vol.settings.block_size
    store = open_store(f"file://{place.workdir / sub}/raw")
    try:
        obj = piece * (block // WRITE_PIECE)
        count = total // block
        start = time.perf_counter()
        for i in range(count):
            store.put(f"raw/{i}", obj)
        put = time.perf_counter() - start
        start = time.perf_counter()
        for i in range(count):
            store.get(f"raw/{i}")
        get = time.perf_counter() - start
    finally:
        store.close()
    return {
        "mb": mb,
        "write_MB_s": total / MIB / written,
        "read_MB_s": total / MIB / read,
        "store_put_MB_s": total / MIB / put,
        "store_get_MB_s": total / MIB / get,
    }


# --- all figures ---------------------------------------------------------------------------------


def figures(workdir: Path, s3: Any = None, files: int = FILES, mb: int = SEQ_MB, entries: int = READDIR_ENTRIES,
            rounds: int = ROUNDS) -> dict[str, Any]:  # fmt: skip
    """Every figure; mdtest and the blockmap variants alternate round by round (the s3 variants
    only with a server)."""
    place = Place(workdir, s3)
    variants = [v for v in VARIANTS if v.home != "s3" or s3 is not None]
    runs: dict[str, list[dict[str, float]]] = {"mdtest": [], **{v.name: [] for v in variants}}
    for r in range(rounds):
        runs["mdtest"].append(run_mdtest(workdir / f"mdtest-{r}", files=files))
        for v in variants:
            runs[v.name].append(run_blockmap_creates(place, f"{v.name}-{r}", v, files=files))
    best = {name: max(rs, key=lambda x: x["creates_per_s"]) for name, rs in runs.items()}
    mdtest_rate = best["mdtest"]["creates_per_s"]
    result: dict[str, Any] = {
        "files": best["mdtest"]["files"],
        "mdtest_creates_per_s": round(mdtest_rate),
        "mdtest_all": [round(x["creates_per_s"]) for x in runs["mdtest"]],
        "variants": {},
    }
    for v in variants:
        b = best[v.name]
        result["variants"][v.name] = {
            "creates_per_s": round(b["creates_per_s"]),
            "ratio": round(b["creates_per_s"] / mdtest_rate, 3),
            "stats_per_s": round(max(x["stats_per_s"] for x in runs[v.name])),
            "ltx_files": b["ltx_files"],
            "puts_per_create": round(b["puts_per_create"], 3),
            "all": [round(x["creates_per_s"]) for x in runs[v.name]],
        }
    result["readdir"] = {
        v.name: {k: round(x, 1) for k, x in run_readdir(place, f"readdir-{v.name}", v, entries, rounds).items()}
        for v in (SQLITE, LTXVFS_FILE)
    }
    result["sequential"] = {k: round(x, 1) for k, x in run_sequential(place, "seq", LTXVFS_FILE, mb).items()}
    result["target_ratio"] = TARGET_RATIO
    result["group_ratio"] = max(result["variants"][v.name]["ratio"] for v in variants if v.group)
    return result


def summary(r: dict[str, Any]) -> str:
    sq = r["sequential"]
    lines = [f"creates/s ({r['files']} files, mdtest tree): juicefs mdtest {r['mdtest_creates_per_s']} "
             f"(target for group commit >= {TARGET_RATIO:.0%} of it)"]
    for name, v in r["variants"].items():
        lines.append(f"  {name:<18} {v['creates_per_s']:>6} creates/s ({v['ratio']:.0%} of mdtest), "
                     f"{v['stats_per_s']:>6} stats/s, {v['ltx_files']} LTX files ({v['puts_per_create']} PUTs "
                     f"per create)")
    for name, rd in r["readdir"].items():
        lines.append(f"readdir of {rd['entries']:.0f} ({name}): names {rd['names_ms']} ms ({rd['names_per_s']:.0f}/s), "
                     f"with attributes {rd['with_attrs_ms']} ms ({rd['with_attrs_per_s']:.0f}/s), cold open + "
                     f"names {rd['cold_open_and_names_ms']} ms ({rd['cold_gets']:.0f} GETs)")
    lines.append(f"sequential {sq['mb']:.0f} MiB (ltxvfs-file): write {sq['write_MB_s']} MB/s, read "
                 f"{sq['read_MB_s']} MB/s (page cache) (store alone: put {sq['store_put_MB_s']} MB/s, get "
                 f"{sq['store_get_MB_s']} MB/s)")
    return "\n".join(lines)  # fmt: skip


# --- pytest-benchmark ----------------------------------------------------------------------------

if "pytest" in sys.modules:
    import pytest

    def test_blockmap_beside_mdtest(benchmark: Any, tmp_path: Path, s3_server: Any) -> None:
        measured = benchmark.pedantic(figures, args=(tmp_path, s3_server), rounds=1, iterations=1)
        benchmark.extra_info.update(measured)
        print(json.dumps(measured, indent=2))
        print(summary(measured))
        if measured["group_ratio"] < TARGET_RATIO:
            pytest.xfail(f"group commit creates/s at {measured['group_ratio']:.0%} of mdtest (target "
                         f"{TARGET_RATIO:.0%})")  # fmt: skip


# --- script mode ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=FILES, help="files per mdtest directory")
    parser.add_argument("--mb", type=int, default=SEQ_MB, help="size of the sequential file (MiB)")
    parser.add_argument("--entries", type=int, default=READDIR_ENTRIES, help="entries in the readdir directory")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--no-s3", action="store_true", help="skip the variants on the S3 server")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-blockmap-") as work:
        if args.no_s3:
            result = figures(Path(work), None, args.files, args.mb, args.entries, args.rounds)
        else:
            from tests.s3server import S3Server  # type: ignore[import-not-found]

            with S3Server(Path(work) / "s3") as server:
                result = figures(Path(work) / "runs", server, args.files, args.mb, args.entries, args.rounds)
    print(json.dumps(result, indent=2))
    print(summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
