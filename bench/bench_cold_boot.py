"""Cold boot: ltxvfs against litestream-vfs, sqlite-s3vfs and `litestream restore` + SQLite, on a
real S3 server behind a proxy that imposes a round trip (default 20 ms) and a bandwidth cap.

For each replica (at ~50 and ~500 MB: `ltxctl import`'s snapshot with its hint; one
`litestream replicate -once`; a multi-level replica written by the real `litestream replicate`
while the database took writes; at the smallest size also: the database committed through the
ltxvfs writer with its defaults and then 3,000 one-row commits; the snapshot plus 1,000 level-0
files), each scenario (a new process to the first row of a point query; a 100-row range query; a
secondary-index query; 20 point queries at random keys; the warm repeat of the point query) and
each peer: time from the process start and from the open to the last row, requests, bytes and
round trips waited in sequence, every answer checked against a local reference. Results go to
bench/results/cold_boot.{md,json,png}.

    .venv/bin/python -m pytest bench/bench_cold_boot.py --benchmark-only
    BENCH_SIZES=50 BENCH_ROUNDS=1 BENCH_RTT_MS=20 BENCH_BANDWIDTH_MBPS=100 (environment knobs)
    BENCH_SHAPES=snapshot,litestream-once,litestream,commits,l0  BENCH_SCENARIOS=point,warm  (subsets)
    BENCH_LARGE=5000   (adds the 5 GB snapshot and `litestream replicate -once` shapes)
    BENCH_REPLICA_CACHE=0   (build Litestream's shapes afresh; by default they are kept between
                             sessions under $LTXVFS_BENCH_CACHE/replicas, bench/harness/replicacache.py)
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import replicacache  # noqa: E402
from bench.harness.databases import Database, database  # noqa: E402
from bench.harness.network import Network  # noqa: E402
from bench.harness.peers import LITESTREAM_VFS, LTXVFS, RESTORE, S3VFS  # noqa: E402
from bench.harness.replicas import (  # noqa: E402
    S3VFS_BLOCK_SIZE,
    SHAPE_COMMITS,
    SHAPE_L0,
    SHAPE_LITESTREAM,
    SHAPE_LITESTREAM_ONCE,
    SHAPE_SNAPSHOT,
    WRITER_COMMITS,
    Shape,
    upload_commits,
    upload_litestream,
    upload_litestream_once,
    upload_s3vfs,
    upload_snapshot,
    upload_snapshot_l0,
)
from bench.harness.report import Results  # noqa: E402
from bench.harness.runner import Child, Measurement  # noqa: E402
from bench.harness.scenarios import SCENARIOS, WARM, expected, workload  # noqa: E402
from tests.litestream import LITESTREAM  # noqa: E402
from tests.s3proxy import S3Proxy  # noqa: E402
from tests.s3server import S3Server  # noqa: E402

SIZES_MB = tuple(int(s) for s in os.environ.get("BENCH_SIZES", "50,500").split(",") if s)
#: Large sizes (BENCH_LARGE, e.g. 5000: about a minute each to build the database, import it and
#: replicate it; not measured unless asked): `ltxctl import`'s snapshot and one `litestream
#: replicate -once`, with the point, index and warm scenarios; no sqlite-s3vfs (its layout would
#: be 80,000 objects), and restore in the point scenario only (one run: ~50 s).
LARGE_MB = tuple(int(s) for s in os.environ.get("BENCH_LARGE", "").split(",") if s)
LARGE_SCENARIOS = ("point", "index", "warm")
#: New processes per cold cell (the median is reported), and timed warm repeats.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
WARM_REPEATS = int(os.environ.get("BENCH_WARM_REPEATS", "20"))
SMALL = min(SIZES_MB)
#: Shapes measured (BENCH_SHAPES, by these ids) and scenarios (BENCH_SCENARIOS).
SHAPE_IDS = {"snapshot": SHAPE_SNAPSHOT, "litestream-once": SHAPE_LITESTREAM_ONCE, "litestream": SHAPE_LITESTREAM,
             "commits": SHAPE_COMMITS, "l0": SHAPE_L0}
SHAPES = tuple(SHAPE_IDS[s] for s in os.environ.get("BENCH_SHAPES", ",".join(SHAPE_IDS)).split(",") if s)
RUN_SCENARIOS = tuple(s for s in os.environ.get("BENCH_SCENARIOS", ",".join(SCENARIOS)).split(",") if s)
#: (replica id, shape, size): the shapes a new user meets at every size; the writer's and the
#: 1,000 level-0 files on the smallest.
REPLICAS = [r for r in
            [(f"snapshot-{mb}mb", SHAPE_SNAPSHOT, mb) for mb in SIZES_MB]
            + [(f"litestream-once-{mb}mb", SHAPE_LITESTREAM_ONCE, mb) for mb in SIZES_MB]
            + [(f"litestream-{mb}mb", SHAPE_LITESTREAM, mb) for mb in SIZES_MB]
            + [(f"commits-{SMALL}mb", SHAPE_COMMITS, SMALL), (f"l0-{SMALL}mb", SHAPE_L0, SMALL)]
            + [(f"snapshot-{mb}mb", SHAPE_SNAPSHOT, mb) for mb in LARGE_MB]
            + [(f"litestream-once-{mb}mb", SHAPE_LITESTREAM_ONCE, mb) for mb in LARGE_MB]
            if r[1] in SHAPES]
#: Shapes the real Litestream writes: kept between sessions (bench/harness/replicacache.py).
CACHED_SHAPES = (SHAPE_LITESTREAM, SHAPE_LITESTREAM_ONCE)

REPLICA_NOTES = {
    SHAPE_SNAPSHOT: "`ltxctl import`: one snapshot (TXID 1 at levels 0 and 9) and the hint file; sqlite-s3vfs reads "
                    f"the same database in its own layout ({S3VFS_BLOCK_SIZE // 1024} KiB blocks)",
    SHAPE_L0: "the snapshot, then 1,000 level-0 files of one-row transactions (the hint stays at TXID 1: stale)",
    SHAPE_LITESTREAM: "written by the real `litestream replicate` while the database took 300 transactions; "
                      "levels 0-3 and 9, no hint",
    SHAPE_LITESTREAM_ONCE: "one `litestream replicate -once` of the database: one level-0 file holding all of it "
                           "(TXID 1), no hint, no page checksum sidecar",
    SHAPE_COMMITS: f"the database committed through the ltxvfs writer with its defaults (sync=commit, "
                   f"compaction on), then {WRITER_COMMITS:,} one-row UPDATEs, each a commit; the writer's own "
                   "compaction (levels 1-3 by file count, snapshot) and hint",
}


def _replica_note(shape: str, mb: int) -> str:
    if mb in LARGE_MB:
        note = REPLICA_NOTES[shape].split("; sqlite-s3vfs")[0]
        return f"{note}; scenarios {', '.join(LARGE_SCENARIOS)} only, restore once (point), no sqlite-s3vfs"
    return REPLICA_NOTES[shape]


def _rounds(replica_id: str, peer: str) -> int:
    """One run where a single cold run takes tens of seconds (litestream-vfs and restore on 1,000
    level-0 files; restores of the large snapshot); ROUNDS elsewhere."""
    _, shape, mb = next(r for r in REPLICAS if r[0] == replica_id)
    slow = (shape == SHAPE_L0 and peer in (LITESTREAM_VFS, RESTORE)) or (peer == RESTORE and mb > SMALL)
    return 1 if slow else ROUNDS


def _large(replica_id: str) -> bool:
    return next(r for r in REPLICAS if r[0] == replica_id)[2] in LARGE_MB


def _cases() -> list[tuple[str, str, str]]:
    cases = []
    for replica_id, shape, mb in REPLICAS:
        for scenario in RUN_SCENARIOS:
            if mb in LARGE_MB and scenario not in LARGE_SCENARIOS:
                continue
            for peer in (LTXVFS, LITESTREAM_VFS, S3VFS, RESTORE):
                if peer == S3VFS and (shape != SHAPE_SNAPSHOT or mb in LARGE_MB):
                    continue  # sqlite-s3vfs has one layout of its own, measured beside the snapshots
                if peer == RESTORE and mb in LARGE_MB and scenario != "point":
                    continue  # the same restore whatever the query: once
                cases.append((replica_id, scenario, peer))
    return cases


class Replicas:
    """Replica shapes, built on first use and kept for the session."""

    def __init__(self, server: S3Server, workdir: Path) -> None:
        self.server = server
        self.workdir = workdir
        self.shapes: dict[str, Shape] = {}
        self.s3vfs: dict[int, str] = {}

    def shape(self, replica_id: str) -> Shape:
        if replica_id not in self.shapes:
            _, shape, mb = next(r for r in REPLICAS if r[0] == replica_id)
            db = database(mb)
            url = self.server.url(f"cold-boot/{replica_id}")
            builders: dict[str, Callable[[], Shape]] = {
                SHAPE_SNAPSHOT: lambda: upload_snapshot(db, url, self.workdir),
                SHAPE_L0: lambda: upload_snapshot_l0(db, url, self.workdir),
                SHAPE_LITESTREAM: lambda: upload_litestream(db, url, self.workdir, self.server.env()),
                SHAPE_LITESTREAM_ONCE: lambda: upload_litestream_once(db, url, self.workdir, self.server.env()),
                SHAPE_COMMITS: lambda: upload_commits(db, url, self.workdir),
            }
            if shape in CACHED_SHAPES:
                reference = replicacache.cached_shape(
                    self.server.client(read_timeout=600), self.server.bucket, f"cold-boot/{replica_id}", replica_id,
                    lambda: builders[shape]().reference, keep_reference=True)
                self.shapes[replica_id] = Shape(shape, url, db, reference)
            else:
                self.shapes[replica_id] = builders[shape]()
        return self.shapes[replica_id]

    def s3vfs_prefix(self, db: Database) -> str:
        if db.size_mb not in self.s3vfs:
            self.s3vfs[db.size_mb] = upload_s3vfs(db, self.server.client(), self.server.bucket,
                                                  f"s3vfs/{db.name}.db")
        return self.s3vfs[db.size_mb]


@pytest.fixture(scope="session")
def replicas(s3_server: S3Server, bench_workdir: Path) -> Replicas:
    return Replicas(s3_server, bench_workdir)


@pytest.fixture(scope="session")
def results(network: Network) -> Iterator[Results]:
    collected = Results({
        "network": network.describe(),
        "note": f"Measured {datetime.now(UTC).strftime('%Y-%m-%d')} on {platform.machine()} "
                f"({os.cpu_count()} cores), SeaweedFS S3 on 127.0.0.1 behind the counting proxy; "
                f"{ROUNDS} new processes per cold cell (1 where one run takes tens of seconds: litestream-vfs and "
                f"restore on 1,000 level-0 files, restores above {SMALL} MB), {WARM_REPEATS} timed warm batches; "
                "bytecode cached as in an installed package.",
        "replicas": {f"{shape} {mb} MB": _replica_note(shape, mb) for _, shape, mb in REPLICAS},
    })
    yield collected
    for path in collected.write():
        print(f"\nwrote {path}")


def _config(peer: str, scenario: str, shape: Shape, proxy: S3Proxy, server: S3Server, replicas: Replicas,
            workdir: Path) -> dict[str, Any]:
    config: dict[str, Any] = {"peer": peer, "scenario": scenario, "t_rows": shape.db.t_rows,
                              "url": shape.url.replace(server.endpoint, proxy.url), "workdir": str(workdir),
                              "litestream": str(LITESTREAM)}
    if peer == S3VFS:
        config["s3vfs"] = {"endpoint": proxy.url, "bucket": server.bucket, "region": server.region,
                           "prefix": replicas.s3vfs_prefix(shape.db), "block_size": S3VFS_BLOCK_SIZE}
    return config


@pytest.mark.parametrize(("replica_id", "scenario", "peer"), _cases())
def test_cold_boot(benchmark: Any, replica_id: str, scenario: str, peer: str, replicas: Replicas,
                   bench_proxy: S3Proxy, s3_server: S3Server, bench_workdir: Path, results: Results) -> None:
    shape = replicas.shape(replica_id)
    reference = shape.db.path if peer == S3VFS else shape.reference
    want = expected(str(reference), workload(scenario, shape.db.t_rows))
    config = _config(peer, scenario, shape, bench_proxy, s3_server, replicas, bench_workdir)
    env = dict(s3_server.env(), LITESTREAM_REPLICA_URL=config["url"], LITESTREAM_LOG_LEVEL="ERROR")
    runs: list[Measurement] = []
    children: list[Child] = []

    def settle() -> None:
        for child in children:
            child.close()
        children.clear()
        bench_proxy.reset()

    if scenario == WARM:
        settle()
        child = Child(config, env, bench_proxy)
        children.append(child)
        child.cold()
        assert child.result["rows"] == want, f"{peer} answered {child.result['rows']!r}"
        child.warm()
        child.warm()
        benchmark.pedantic(lambda: runs.append(child.warm()), rounds=WARM_REPEATS, iterations=1)
    else:
        def cold() -> None:
            child = Child(config, env, bench_proxy)
            children.append(child)
            runs.append(child.cold())
            assert child.result["rows"] == want, f"{peer} answered {child.result['rows']!r}"

        benchmark.pedantic(cold, setup=settle, rounds=_rounds(replica_id, peer), iterations=1)
    settle()
    cell = results.add(f"{shape.name} {shape.db.size_mb} MB", scenario, peer, runs)
    summary = cell.summary()
    summary.pop("runs")
    benchmark.extra_info.update(summary)
