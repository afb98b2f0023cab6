"""LTX codec figures: encode and decode throughput (MB/s of page data) and peak memory.

A database of seeded pages (half noise, half runs, about 2:1 under LZ4, like real pages) is
encoded as one snapshot to a temporary file and decoded back with full verification.

    .venv/bin/python -m pytest bench/bench_codec.py --benchmark-only   # pytest-benchmark
    .venv/bin/python bench/bench_codec.py [--mb 500] [--small-mb 50]     # print the figures

Peak memory is measured in a fresh subprocess per operation (ru_maxrss above the process's
baseline, and tracemalloc's peak of Python allocations) for a small and a large database, to
show it does not grow with the data (only the page index does, about 50 bytes a page).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ltx.decoder import Decoder  # noqa: E402
from ltx.encoder import Encoder  # noqa: E402
from ltx.header import Header  # noqa: E402

PAGE_SIZE = 4096
#: The database size the figures are quoted for, and the small one memory is compared against.
DEFAULT_DB_MB = 500
SMALL_DB_MB = 50
#: Distinct page images cycled through (LZ4 keeps no state across pages, so reuse is harmless).
POOL_PAGES = 1024
SEED = 20260101
MB = 1_000_000
TARGET_MB_S = 150
#: Memory allowed per page for page indexes (the decoder holds two, of 24 bytes an entry).
INDEX_BYTES_PER_PAGE = 64
#: Largest RSS difference accepted between the small and the large database.
RSS_SLACK_KIB = 16 * 1024


def page_pool(seed: int = SEED, page_size: int = PAGE_SIZE, count: int = POOL_PAGES) -> list[bytes]:
    """Seeded pages, each a random share of noise followed by a run of one byte."""
    rng = random.Random(seed)
    pool = []
    for _ in range(count):
        cut = rng.randrange(page_size + 1)
        pool.append(rng.randbytes(cut) + bytes([rng.randrange(256)]) * (page_size - cut))
    return pool


def page_count(db_mb: float, page_size: int = PAGE_SIZE) -> int:
    return int(db_mb * MB) // page_size


def encode_database(path: Path, pages: int, pool: list[bytes], page_size: int = PAGE_SIZE) -> int:
    """Encode `pages` pages as a snapshot into `path`; return the bytes of page data written."""
    header = Header(page_size=page_size, commit=pages, min_txid=1, max_txid=1, timestamp=1)
    lock = header.lock_pgno
    n = len(pool)
    written = 0
    with path.open("wb") as f:
        enc = Encoder(f, header, str(path))
        for pgno in range(1, pages + 1):
            if pgno != lock:
                enc.write_page(pgno, pool[pgno % n])
                written += page_size
        enc.close()
    return written


def decode_file(path: Path) -> int:
    """Decode and verify a whole file; return the bytes of page data read."""
    total = 0
    with path.open("rb") as f:
        for _, page in Decoder(f, str(path)).pages():
            total += len(page)
    return total


def timed(fn: Callable[[], int]) -> tuple[int, float]:
    start = time.perf_counter()
    n = fn()
    return n, time.perf_counter() - start


# --- subprocess worker: one operation, its time and memory, as JSON ----------------------------

def worker(op: str, path: Path, db_mb: float, trace: bool) -> dict[str, Any]:
    pool = page_pool()
    pages = page_count(db_mb)
    baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if trace:
        tracemalloc.start()
    if op == "encode":
        n, seconds = timed(lambda: encode_database(path, pages, pool))
    else:
        n, seconds = timed(lambda: decode_file(path))
    traced = tracemalloc.get_traced_memory()[1] if trace else None
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"op": op, "db_mb": db_mb, "page_bytes": n, "seconds": seconds, "mb_per_s": n / MB / seconds,
            "file_bytes": path.stat().st_size, "rss_baseline_kib": baseline_kib, "rss_peak_kib": peak_kib,
            "rss_growth_kib": peak_kib - baseline_kib, "tracemalloc_peak": traced}


def run_worker(op: str, path: Path, db_mb: float, trace: bool = False) -> dict[str, Any]:
    """Run one operation in a fresh interpreter so its peak memory is its own."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", op, "--path", str(path), "--mb", str(db_mb)]
    if trace:
        cmd.append("--trace")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def figures(db_mb: float, small_mb: float, workdir: Path) -> list[dict[str, Any]]:
    """Encode then decode at both sizes: once untraced (time, RSS), once under tracemalloc."""
    rows = []
    for size in (small_mb, db_mb):
        path = workdir / f"db-{size:g}mb.ltx"
        for op in ("encode", "decode"):
            row = run_worker(op, path, size)
            row["tracemalloc_peak"] = run_worker(op, path, size, trace=True)["tracemalloc_peak"] \
                if op == "decode" else None
            rows.append(row)
        # Encode under tracemalloc last: it rewrites the same file.
        rows[-2]["tracemalloc_peak"] = run_worker("encode", path, size, trace=True)["tracemalloc_peak"]
        path.unlink()
    return rows


def print_figures(rows: list[dict[str, Any]]) -> None:
    print(f"LTX codec, {PAGE_SIZE}-byte pages, seeded page data (~2:1 under LZ4), one snapshot file")
    print(f"{'op':<7}{'db MB':>7}{'file MB':>9}{'seconds':>9}{'MB/s':>8}{'RSS +MiB':>10}{'py peak MiB':>13}")
    for r in rows:
        print(f"{r['op']:<7}{r['db_mb']:>7g}{r['file_bytes'] / MB:>9.1f}{r['seconds']:>9.2f}{r['mb_per_s']:>8.0f}"
              f"{r['rss_growth_kib'] / 1024:>10.1f}{(r['tracemalloc_peak'] or 0) / 2**20:>13.2f}")
    print(f"target: >= {TARGET_MB_S} MB/s both ways; memory flat in database size")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=DEFAULT_DB_MB, help="database size in MB")
    parser.add_argument("--small-mb", type=float, default=SMALL_DB_MB, help="the small size memory is compared to")
    parser.add_argument("--worker", choices=["encode", "decode"], help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.path, args.mb, args.trace)))
        return
    with tempfile.TemporaryDirectory(prefix="bench-codec-") as tmp:
        print_figures(figures(args.mb, args.small_mb, Path(tmp)))


# --- pytest-benchmark ----------------------------------------------------------------------------

try:
    import pytest
except ImportError:  # script mode without pytest installed
    pytest = None  # type: ignore[assignment]

if pytest is not None:
    @pytest.fixture(scope="module")
    def pool() -> list[bytes]:
        return page_pool()

    @pytest.fixture(scope="module")
    def encoded(tmp_path_factory: pytest.TempPathFactory, pool: list[bytes]) -> Path:
        path = tmp_path_factory.mktemp("codec") / "db.ltx"
        encode_database(path, page_count(DEFAULT_DB_MB), pool)
        return path

    def _mb_per_s(benchmark: Any, page_bytes: int) -> None:
        mean = benchmark.stats.stats.mean
        benchmark.extra_info["page_MB"] = page_bytes / MB
        benchmark.extra_info["MB_per_s"] = round(page_bytes / MB / mean, 1)

    def test_encode_throughput(benchmark: Any, pool: list[bytes], tmp_path: Path) -> None:
        path = tmp_path / "enc.ltx"
        pages = page_count(DEFAULT_DB_MB)
        written = benchmark.pedantic(encode_database, args=(path, pages, pool), rounds=3, iterations=1)
        _mb_per_s(benchmark, written)

    def test_decode_throughput(benchmark: Any, encoded: Path) -> None:
        read = benchmark.pedantic(decode_file, args=(encoded,), rounds=3, iterations=1)
        assert read == page_count(DEFAULT_DB_MB) * PAGE_SIZE
        _mb_per_s(benchmark, read)

    def test_memory_does_not_grow_with_database_size(benchmark: Any, tmp_path: Path) -> None:
        """Encode and decode at 50 MB and 500 MB: the peaks differ by the page index only (held
        once by the encoder, twice by the decoder to compare it with the frames), not the data."""
        measured = benchmark.pedantic(figures, args=(DEFAULT_DB_MB, SMALL_DB_MB, tmp_path), rounds=1, iterations=1)
        rows = {(r["op"], r["db_mb"]): r for r in measured}
        print_figures(measured)
        for (op, size), r in rows.items():
            benchmark.extra_info[f"{op}_{size:g}MB"] = {k: r[k] for k in ("mb_per_s", "rss_growth_kib",
                                                                            "tracemalloc_peak")}
        extra_pages = page_count(DEFAULT_DB_MB) - page_count(SMALL_DB_MB)
        for op in ("encode", "decode"):
            small, large = rows[(op, SMALL_DB_MB)], rows[(op, DEFAULT_DB_MB)]
            assert large["tracemalloc_peak"] - small["tracemalloc_peak"] < INDEX_BYTES_PER_PAGE * extra_pages
            # RSS is coarser (allocator slack): far below the 450 MB of extra data is what matters.
            assert large["rss_growth_kib"] - small["rss_growth_kib"] < RSS_SLACK_KIB


if __name__ == "__main__":
    main()
