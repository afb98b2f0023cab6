"""Every reader and writer of a replica under S3 faults, through the fault-injecting proxy in front
of the real SeaweedFS server: reads through the VFS (open, queries, follow), restore, compaction
and hydration (plan, then follow).

- Transient faults (500, 503, SlowDown, resets, dropped answers, cut bodies, stalls) at a seeded
  rate, at most two in a row on one request: each retries with backoff and gets the right data.
- Every kind of fault, unbounded, including answers that name the wrong byte range: each either
  gets the right data or fails with an error that names the object; never wrong data.
- A store that answers nothing but SlowDown: each gives up after the store's retries with that
  reason, leaving nothing half-done behind.
- A stall longer than the read timeout is a retry, not a hang.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hydrator.errors import HydrationError
from hydrator.hydrator import Hydrator
from ltx import cli, compaction
from ltx.replica import Replica
from ltx.restore import restore
from ltx.store import StoreError, StoreUnavailableError
from ltx.store.retry import DEFAULT_MAX_RETRIES, RetryPolicy
from ltx.store.s3 import S3Store
from ltx.verify import verify
from tests.conftest import unique_prefix
from tests.litestream import wait_for
from tests.reliability import tally
from tests.reliability.agreement import Expected, agreed_state, same
from tests.reliability.conftest import build_levels
from tests.s3proxy import ALL_FAULTS, Fault, FaultSchedule, S3Proxy
from tests.s3server import S3Server
from tests.vfs.replicas import History, connect, pragma, run_queries, stats
from vfs.errors import PageCorruptError, PageReadError, ReplicaOpenError

COMPONENTS = ("vfs", "restore", "compaction", "hydrator", "vfs-hydrated")
#: Share of requests that get a fault in the transient runs.
TRANSIENT_RATE = 0.35
#: Share of requests that get a fault in the unbounded runs.
HOSTILE_RATE = 0.5
#: TXIDs compacted into level 1 and the snapshot; the rest form the level-0 tail.
COMPACTED = 8
#: TXIDs shipped after a follower opened (the follow part of the VFS and hydrator runs).
LATE = 4
#: Retention "now": far ahead, so compaction deletes every level-0 file level 1 covers.
FAR_AHEAD = timedelta(days=365 * 20)


def through(url: str, s3_server: S3Server, proxy: S3Proxy) -> str:
    return url.replace(s3_server.endpoint, proxy.url)


def compact_all(replica: Replica) -> None:
    """Compaction into levels 1 and 2, a snapshot, and retention with no grace period."""
    compaction.run(replica, [1, 2, 9], l0_retention=timedelta(microseconds=1),
                   snapshot_retention=timedelta(days=36500), now=lambda: datetime.now(UTC) + FAR_AHEAD)


def run_vfs(url: str, late: Callable[[], None], expected: Expected, workdir: Path, hydrated: bool = False) -> int:
    """Open and query through the VFS, then follow commits shipped meanwhile; return the retries.
    `hydrated`: with hydrate=PATH, reading while the local copy downloads, then from it (the
    connection and its hydration fetch the same objects: a fault meets either, so both count)."""
    options = {"hydrate": str(workdir / "local.db")} if hydrated else {}
    conn = connect(workdir / "vfs.db", url, poll=0.05, **options)
    try:
        first = int(pragma(conn, "litestream_txid"), 16)
        same(run_queries(conn), expected.rows(first), f"VFS at TXID {first:x}")
        if hydrated:
            wait_for(lambda: pragma(conn, "litestream_hydration_progress") == "100.0", "the local copy", 60.0)
        late()
        last = expected.history.last_txid
        wait_for(lambda: pragma(conn, "litestream_txid") == f"{last:016x}", "the follower to catch up", 60.0)
        same(run_queries(conn), expected.rows(last), f"VFS after following to TXID {last:x}")
        counters = stats(conn)
        return int(counters["retries"]) + int(counters.get("hydration_retries", 0))
    finally:
        conn.close()


def run_hydrator(url: str, late: Callable[[], None], expected: Expected, workdir: Path) -> int:
    """Hydrate, then follow commits shipped meanwhile (poll by poll); return the retries."""
    path = workdir / "hydrated.db"
    with Hydrator(url, path) as hydrator:
        hydrator.run()
        same(path.read_bytes(), expected.image(hydrator.txid), f"hydrated file at TXID {hydrator.txid:x}")
        late()
        last = expected.history.last_txid
        wait_for(lambda: hydrator.poll_once() >= 0 and hydrator.txid == last, "the hydrator to follow", 60.0)
        same(path.read_bytes(), expected.image(last), f"hydrated file after following to TXID {last:x}")
        return hydrator.stats["retries"]


def run_restore(url: str, expected: Expected, workdir: Path) -> int:
    out = workdir / "restored.db"
    replica = Replica.open(url)
    try:
        result = restore(replica, out)
        same(out.read_bytes(), expected.image(result.txid), f"restore at TXID {result.txid:x}")
        same(result.txid, expected.history.last_txid, "restored TXID")
        return replica.store.stats.retries
    finally:
        replica.close()


def run_compaction(url: str) -> int:
    replica = Replica.open(url)
    try:
        compact_all(replica)
        return replica.store.stats.retries
    finally:
        replica.close()


def run_component(component: str, url: str, direct: Replica, history: History, expected: Expected,
                  workdir: Path) -> int:
    """Run one component against `url` (through the proxy); `direct` ships late commits."""
    def late() -> None:
        history.ship(direct, history.last_txid - LATE + 1, history.last_txid)

    if component.startswith("vfs"):
        return run_vfs(url, late, expected, workdir, hydrated=component == "vfs-hydrated")
    if component == "hydrator":
        return run_hydrator(url, late, expected, workdir)
    late()
    if component == "restore":
        return run_restore(url, expected, workdir)
    return run_compaction(url)


def build(history: History, url: str) -> Replica:
    """The replica in its usual shape, missing the last LATE TXIDs (shipped during the run)."""
    replica = Replica.open(url)
    history.ship(replica, 1, COMPACTED)
    compaction.compact_level(replica, 1)
    compaction.snapshot(replica)
    history.ship(replica, COMPACTED + 1, history.last_txid - LATE)
    return replica


@pytest.mark.parametrize("component", COMPONENTS)
def test_transient_faults_are_retried_to_the_right_data(component: str, s3_server: S3Server, s3_url: str,
                                                        history: History, expected: Expected,
                                                        tmp_path: Path) -> None:
    direct = build(history, s3_url)
    schedule = FaultSchedule(seed=COMPONENTS.index(component) + 1, rate=TRANSIENT_RATE, max_in_a_row=2)
    try:
        with S3Proxy(s3_server.endpoint, schedule=schedule) as proxy:
            retries = run_component(component, through(s3_url, s3_server, proxy), direct, history, expected,
                                    tmp_path)
            injected = proxy.faults_injected
            kinds = proxy.fault_counts()
        tally.add(tally.FAULTS, injected)
        assert injected >= 1, kinds
        assert retries >= 1, f"{injected} faults injected ({kinds}) but no retry counted"
        if component == "compaction":
            agreed_state(s3_url, expected, tmp_path / "after", history.last_txid)
    finally:
        direct.close()


#: What a clear failure may be, per component: an error type that names the store's objects.
CLEAR_ERRORS: dict[str, tuple[type[BaseException], ...]] = {
    "vfs": (ReplicaOpenError, PageReadError, PageCorruptError),
    "vfs-hydrated": (ReplicaOpenError, PageReadError, PageCorruptError),
    "restore": (StoreError,),
    "compaction": (StoreError,),
    "hydrator": (StoreError, HydrationError),
}


@pytest.mark.parametrize("component", COMPONENTS)
def test_any_fault_gives_the_right_data_or_a_clear_error(component: str, s3_server: S3Server,
                                                         request: pytest.FixtureRequest, history: History,
                                                         expected: Expected, tmp_path: Path) -> None:
    outcomes: list[str] = []
    for seed in range(3):
        url = s3_server.url(f"{unique_prefix(request)}-{seed}")
        direct = build(history, url)
        schedule = FaultSchedule(seed=100 + seed, rate=HOSTILE_RATE, faults=ALL_FAULTS, max_in_a_row=None)
        workdir = tmp_path / str(seed)
        workdir.mkdir()
        try:
            with S3Proxy(s3_server.endpoint, schedule=schedule) as proxy:
                try:
                    run_component(component, through(url, s3_server, proxy), direct, history, expected, workdir)
                    outcomes.append("right data")
                except CLEAR_ERRORS[component] as exc:
                    message = str(exc)
                    assert "s3://" in message, f"the error does not name the store: {message}"
                    assert re.search(r"[0-9a-f]{16}-[0-9a-f]{16}\.ltx|000[0-9a]/", message), \
                        f"the error names no object: {message}"
                    outcomes.append(type(exc).__name__)
                tally.add(tally.FAULTS, proxy.faults_injected)
                assert proxy.faults_injected > 0
            if component == "compaction":  # whatever a failed compaction left must still read right
                agreed_state(url, expected, workdir / "after", history.last_txid)
        finally:
            direct.close()
    assert len(outcomes) == 3, outcomes


def wrong_range_on_ranged_gets(method: str, path: str, index: int) -> Fault:
    return Fault.wrong_range() if method == "GET" and "list-type" not in path else Fault.forward()


@pytest.mark.parametrize("component", ["vfs", "restore", "hydrator"])
def test_answers_naming_other_bytes_are_refused(component: str, s3_server: S3Server, s3_url: str,
                                                history: History, expected: Expected, tmp_path: Path) -> None:
    """Every ranged GET answered with a Content-Range one byte further on (and the bytes asked
    for): nobody takes those bytes as the ones asked for; each fails naming the object."""
    direct = build(history, s3_url)
    try:
        with S3Proxy(s3_server.endpoint, wrong_range_on_ranged_gets) as proxy:
            url = through(s3_url, s3_server, proxy)
            with pytest.raises(CLEAR_ERRORS[component]) as caught:
                run_component(component, url, direct, history, expected, tmp_path)
            tally.add(tally.FAULTS, proxy.faults_injected)
        assert proxy.faults_injected >= 1
        assert "server sent" in str(caught.value), str(caught.value)
        assert ".ltx" in str(caught.value)
    finally:
        direct.close()


def slow_down_always(method: str, path: str, index: int) -> Fault:
    return Fault.status(503, "SlowDown")


def test_a_store_that_only_says_slow_down_is_given_up_on(s3_server: S3Server, s3_url: str, history: History,
                                                          tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    """Every component retries with backoff, gives up after the store's retries with the reason,
    and leaves nothing half-done: no restored file, no hydrated file, no change to the replica.
    (The four run at once: each waits out its own backoff.)"""
    direct = Replica.open(s3_url)
    build_levels(history, direct, COMPACTED)
    before = sorted(f.key for files in direct.list_levels().values() for f in files)
    attempts = DEFAULT_MAX_RETRIES + 1
    gave_up = f"SlowDown.*gave up after {attempts} attempts"
    out = tmp_path / "restored.db"
    hydrated = tmp_path / "hydrated.db"

    def restore_cli(url: str) -> None:
        assert cli.main(["restore", url, "-o", str(out)]) == cli.EXIT_FAILURE

    def compact(url: str) -> None:
        with pytest.raises(StoreUnavailableError, match=gave_up):
            run_compaction(url)

    def hydrate(url: str) -> None:
        with Hydrator(url, hydrated) as hydrator, pytest.raises(StoreUnavailableError, match=gave_up):
            hydrator.run()

    def open_vfs(url: str) -> None:
        with pytest.raises(ReplicaOpenError, match=gave_up):
            connect(tmp_path / "vfs.db", url, poll=0, wait=0)

    try:
        with S3Proxy(s3_server.endpoint, slow_down_always) as proxy, ThreadPoolExecutor(4) as pool:
            url = through(s3_url, s3_server, proxy)
            for future in [pool.submit(f, url) for f in (restore_cli, compact, hydrate, open_vfs)]:
                future.result()
            tally.add(tally.FAULTS, proxy.faults_injected)
            per_request = Counter((r.method, r.path, r.range) for r in proxy.seen)
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and re.search(gave_up, err[0]), err
        assert not out.exists() and not Path(f"{out}.tmp").exists() and not hydrated.exists()
        assert max(per_request.values()) >= attempts, "no request was tried as often as the policy says"
        after = sorted(f.key for files in direct.list_levels().values() for f in files)
        assert after == before
        assert verify(direct) == []
    finally:
        direct.close()


def test_a_stall_past_the_read_timeout_is_retried(s3_server: S3Server, s3_url: str, history: History,
                                                  expected: Expected, tmp_path: Path) -> None:
    direct = Replica.open(s3_url)
    history.ship(direct, 1, history.last_txid)
    stalled: list[str] = []

    def plan(method: str, path: str, index: int) -> Fault:
        if method == "GET" and "list-type" not in path and not stalled:
            stalled.append(path)
            return Fault.stall(3.0)
        return Fault.forward()

    try:
        with S3Proxy(s3_server.endpoint, plan) as proxy:
            prefix = s3_url.split("?")[0].split("/", 3)[3]
            store = S3Store(s3_server.bucket, prefix, endpoint=proxy.url, force_path_style=True,
                            read_timeout=0.5, retry_policy=RetryPolicy(backoff_base_s=0.01))
            replica = Replica(store, "s3")
            try:
                result = restore(replica, tmp_path / "out.db")
            finally:
                replica.close()
            tally.add(tally.FAULTS, proxy.faults_injected)
        assert stalled and proxy.faults_injected == 1
        assert store.stats.retries == 1
        same((tmp_path / "out.db").read_bytes(), expected.image(result.txid), "restore after a stall")
    finally:
        direct.close()


def test_a_create_whose_answer_was_lost_is_ours_even_if_the_check_meets_a_fault(
        s3_server: S3Server, s3_url: str) -> None:
    """The create-if-absent reached the server but its answer was lost; the retry meets 412, and
    the HEAD that checks whose object it is meets a 503 once. The object is ours: the put must
    succeed (not be reported as another writer's, which would make a landed commit look lost)."""
    faults = [Fault.drop_after_forward(), Fault.forward(), Fault.status(503, "SlowDown")]

    def plan(method: str, path: str, index: int) -> Fault:
        return faults.pop(0) if faults else Fault.forward()

    with S3Proxy(s3_server.endpoint, plan) as proxy:
        prefix = s3_url.split("?")[0].split("/", 3)[3]
        store = S3Store(s3_server.bucket, prefix, endpoint=proxy.url, force_path_style=True,
                        retry_policy=RetryPolicy(backoff_base_s=0.0, backoff_max_s=0.0))
        try:
            store.put("0000/0000000000000001-0000000000000001.ltx", b"mine", if_absent=True)
            assert store.get("0000/0000000000000001-0000000000000001.ltx") == b"mine"
        finally:
            store.close()
        tally.add(tally.FAULTS, proxy.faults_injected)
        assert [(r.method, r.fault) for r in proxy.seen[:4]] == [
            ("PUT", "drop"), ("PUT", "forward"), ("HEAD", "status"), ("HEAD", "forward")]
